"""The ``stainfree`` command line: a thin typer shell over :mod:`stainfree.api`.

Heavy libraries are imported inside the commands so that ``stainfree --help`` answers at once. Errors that are the
user's to fix (:class:`stainfree.errors.StainfreeError`) are printed as one line and exit with code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="stainfree",
    help="In-silico labeling of live cells: virtual staining, one-dye organelle segmentation, quantification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; a StainfreeError becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from stainfree.errors import StainfreeError

        try:
            return fn(*args, **kwargs)
        except StainfreeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


# ----- foundation: demo and the report (owner: lead) ---------------------------------------------------------
# <cli-foundation>

# ----- input/output: info (owner: io) ----------------------------------------------------------------------
# <cli-io>

# ----- digital cell: simulate (owner: simulate) ------------------------------------------------------------
# <cli-simulate>

# ----- virtual staining: manifest, train, predict, evaluate (owner: virtual staining) -------------------------
# (training: manifest, train; owner: training)
# <cli-training>

# (inference and evaluation: predict, evaluate; owner: inference)
# <cli-inference>

# ----- segmentation: make-masks, segment (owner: segmentation) ------------------------------------------------
# <cli-segmentation>

# ----- quantification: quantify (owner: quantify) -------------------------------------------------------------
# <cli-quantify>


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
