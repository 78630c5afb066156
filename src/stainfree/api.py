"""The workflows of stainfree as short Python functions; the CLI only wraps these.

Each function wires the lower layers together and returns paths or tables. Heavy libraries are imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ----- foundation: info, simulate, demo ------------------------------------------------------------------------
# <api-foundation>

# ----- virtual staining: manifest, train, predict, evaluate ----------------------------------------------------
# <api-virtual-staining>

# ----- segmentation: make_masks, segment ------------------------------------------------------------------------
# <api-segmentation>

# ----- quantification: quantify --------------------------------------------------------------------------------
# <api-quantify>
