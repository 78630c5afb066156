"""The typer app of the command line, and what every command shares: one-line errors, start-up."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any

import typer

app = typer.Typer(
    name="stainfree",
    help="In-silico labeling of live cells: virtual staining, organelles from one dye, quantification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _start() -> None:
    """In-silico labeling of live cells: virtual staining, organelles from one dye, quantification."""
    from stainfree.runtime import keep_freed_memory

    keep_freed_memory()  # large tensors reused instead of faulted in again for every tile and batch


#: errno -> what it means for the place written to (a full disk, a read-only place, a file size limit).
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device; nothing was written under the final name",
    errno.EDQUOT: "disk quota exceeded; nothing was written under the final name",
    errno.EFBIG: "file too large for this place (file size limit); nothing was written under the final name",
    errno.EROFS: "read-only file system; choose another output place",
    errno.EACCES: "permission denied; choose a place you can write to",
    errno.EPERM: "operation not permitted; choose a place you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
}


def os_error_line(exc: OSError) -> str | None:
    """One line naming the path and the problem for the OS errors a user can act on, else None."""
    problem = _WRITE_ERRNOS.get(exc.errno or -1)
    if problem is None:
        return None
    where = exc.filename if exc.filename is not None else "output"
    return f"{where}: {problem}"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; a StainfreeError, a full disk, a read-only place or too little memory becomes one line
    on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from stainfree.errors import StainfreeError

        try:
            return fn(*args, **kwargs)
        except StainfreeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            line = os_error_line(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code=2) from None
        except MemoryError:
            typer.echo("error: out of memory; try a smaller image, smaller tiles or --batch 1", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def main() -> None:
    """Console entry point."""
    app()


#: Options of the commands that run as jobs on Dask (predict, segment, quantify).
SCHEDULER = typer.Option(
    "--scheduler", help="Address of a running dask scheduler (e.g. tcp://10.0.0.5:8786) to run the job on."
)
CLUSTER = typer.Option(
    "--cluster", help="local:N: a local Dask cluster of N worker processes with one thread each."
)


def echo_job(result: dict[str, Any]) -> None:
    """Print what a job wrote: one image, or the output folder, its summary and the count per status."""
    if "table" not in result:
        unit = "frames" if "frames" in result else "blocks"  # a time-lapse runs one task per time point
        run = result.get(unit)
        if run is not None:
            typer.echo(f"{unit}: {run.computed} computed, {run.skipped} already done, of {run.total}")
        image = result.get("image", result.get("masks", run.path if run is not None else None))
        typer.echo(str(image) if image is not None else "stopped before the last block")
        return
    counts = result["table"]["status"].value_counts().to_dict()
    typer.echo(f"output: {result['output']}")
    typer.echo(f"summary: {result['summary']}")
    typer.echo("positions: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "skipped", "failed")))
