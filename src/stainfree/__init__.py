"""stainfree: in-silico labeling of live cells.

The public API lives in :mod:`stainfree.api` (workflows) and :mod:`stainfree.config` (configuration models).
"""

__version__ = "0.1.0"
