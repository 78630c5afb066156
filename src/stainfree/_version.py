"""The version of stainfree (one place, below every other module, so any layer may read it)."""

__version__ = "0.1.0"
