"""The ``stainfree`` command line: a thin typer shell over :mod:`stainfree.api`.

Heavy libraries are imported inside the commands so that ``stainfree --help`` answers at once. Errors that are
the user's to fix (:class:`stainfree.errors.StainfreeError`) are printed as one line and exit with code 2.
"""

from __future__ import annotations

# isort: off
from stainfree.cli._app import app, friendly, main, os_error_line

# the command modules register their commands on ``app``; help lists them in this order
from stainfree.cli import staining as _staining  # noqa: F401
from stainfree.cli import organelles as _organelles  # noqa: F401
from stainfree.cli import sharing as _sharing  # noqa: F401
from stainfree.cli import compose as _compose  # noqa: F401

# isort: on

__all__ = ["app", "friendly", "main", "os_error_line"]
