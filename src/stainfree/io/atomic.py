"""Atomic writes for the io layer: the helpers of :mod:`stainfree.atomic` (standard library only, so that
configuration, below io, writes atomically with the same code)."""

from stainfree.atomic import atomic_path, write_bytes, write_text

__all__ = ["atomic_path", "write_bytes", "write_text"]
