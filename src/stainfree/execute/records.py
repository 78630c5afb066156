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

#: Hidden folder, inside an output, of the records of finished blocks and positions.
RUN_DIR = ".stainfree-run"


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-able description of a run."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_stamp(path: str | os.PathLike) -> list[Any]:
    """What identifies a file's content cheaply: resolved path, size and modification time (a folder, e.g.
    a Zarr store: of its top-level entries)."""
    p = Path(path).resolve()
    if p.is_dir():
        entries = sorted(p.iterdir())
        return [str(p), [[e.name, e.stat().st_size, e.stat().st_mtime] for e in entries if e.is_file()]]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime]


def local_dask(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task's own lazy reads with dask's synchronous scheduler: inside a worker, ``.compute()`` would
    otherwise send the read's graph (a TIFF file handle...) back to the cluster."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        import dask

        with dask.config.set(scheduler="synchronous"):
            return fn(*args, **kwargs)

    return run
