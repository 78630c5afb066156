"""The run records of resumable jobs: what identifies an input, a plan's fingerprint, where records live."""

from __future__ import annotations

import hashlib
import json
import os
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
