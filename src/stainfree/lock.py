"""An output-folder lock, so that two runs never write into the same place at once.

The lock is an ``fcntl.flock`` on ``<folder>/.stainfree.lock``: the kernel releases it when the process ends,
however it ends, so a run killed with SIGKILL leaves no stale lock behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stainfree.atomic import PARTIAL_SUFFIX
from stainfree.errors import InputError

LOCK_NAME = ".stainfree.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "?"
    return text if text.isdigit() else "?"


def _remove_stale(folder: Path, pattern: str) -> None:
    """Remove the temporaries of killed runs (only stainfree's own, by their suffix)."""
    import shutil

    for leftover in folder.glob(pattern):
        if not leftover.name.endswith(PARTIAL_SUFFIX):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def output_lock(
    folder: str | os.PathLike, *, name: str = LOCK_NAME, stale: str = f"**/.*{PARTIAL_SUFFIX}"
) -> Iterator[Path]:
    """Hold the lock of an output folder for the duration of a ``with`` block.

    The folder is created when missing. Once the lock is held, the hidden temporaries that a killed run left
    (``.<name>.<random>.stainfree-partial``) are removed. Taking the lock again in the process that holds it
    is allowed (a workflow that calls another on the same folder).

    Parameters
    ----------
    folder : path-like
        The output folder.
    name : str
        File name of the lock inside ``folder`` (one folder may hold several single-file outputs, each with
        its own lock).
    stale : str
        Glob (relative to ``folder``) of the leftover temporaries to remove.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    InputError
        When another live process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield Path(folder) / name
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            if holder == str(os.getpid()):
                yield path
                return
            raise InputError(
                folder,
                f"is in use by another stainfree run (pid {holder}); wait for it to end or choose another "
                "output folder",
            ) from None
        try:  # the holder before us may have removed the file between our open and our lock: start again
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        _remove_stale(folder, stale)
        yield path
    finally:
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)
