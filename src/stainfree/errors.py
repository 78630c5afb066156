"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from os import PathLike


class StainfreeError(Exception):
    """Base class of every error that is the user's to fix (bad input, bad configuration)."""


class InputError(StainfreeError):
    """A file or array that cannot be used, with the file named.

    Parameters
    ----------
    source : path-like or str
        The file (or a short description of an in-memory input) that is wrong.
    problem : str
        What is wrong, in words a microscopist understands.
    """

    def __init__(self, source: str | PathLike, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(StainfreeError):
    """A configuration that cannot be used."""


class InputErrors(StainfreeError):
    """Several input problems found together (e.g. every bad row of a manifest), reported at once."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = list(errors)
        lines = "; ".join(str(e) for e in self.errors)
        super().__init__(f"{len(self.errors)} problem(s): {lines}")
