"""The napari plugin of stainfree (optional extra ``napari``): reader, widgets and sample data.

An adapter beside the CLI: it calls :mod:`stainfree.api` and the readers of :mod:`stainfree.io` only. The
manifest ``napari.yaml`` is registered through the ``napari.manifest`` entry point; nothing here imports
napari or Qt at import time.
"""

from __future__ import annotations
