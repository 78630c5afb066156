"""stainfree: in-silico labeling of live cells.

The public API lives in :mod:`stainfree.api` (workflows) and :mod:`stainfree.config` (configuration models).
"""

from stainfree._version import __version__

__all__ = ["__version__"]
