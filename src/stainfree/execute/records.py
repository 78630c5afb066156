"""What the engine's tasks share without dask.distributed: run records of resumable jobs (what identifies an
input, a plan's fingerprint, where records live) and the task wrapper :func:`local_dask`."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stainfree.errors import InputError

#: Hidden folder, inside an output, of the records of finished blocks and positions.
RUN_DIR = ".stainfree-run"


def parse_cluster(spec: str | None) -> int | None:
    """Worker processes of ``local:N`` (``None`` for no cluster); anything else is an InputError."""
    if spec is None:
        return None
    kind, _, n = spec.partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise InputError(spec, "--cluster must be local:N (N worker processes of one thread each)")
    return int(n)


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-able description of a run."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_stamp(path: str | os.PathLike) -> list[Any]:
    """What identifies a file's content cheaply: resolved path, size, inode and modification time (a folder,
    e.g. a Zarr store: its own inode and time and those of its top-level entries; a store rewritten atomically
    is a new folder)."""
    p = Path(path).resolve()
    st = p.stat()
    if p.is_dir():
        entries = sorted(p.iterdir())
        top = [[e.name, e.stat().st_size, e.stat().st_mtime] for e in entries if e.is_file()]
        return [str(p), st.st_ino, st.st_mtime, top]
    return [str(p), st.st_size, st.st_ino, st.st_mtime]


def local_dask(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task's own lazy reads with dask's synchronous scheduler: inside a worker, ``.compute()`` would
    otherwise send the read's graph (a TIFF file handle...) back to the cluster."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        import dask

        with dask.config.set(scheduler="synchronous"):
            return fn(*args, **kwargs)

    return run
