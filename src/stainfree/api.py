"""The workflows of stainfree as short Python functions; the CLI only wraps these.

Each function wires the lower layers together and returns paths or tables. Heavy libraries are imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ----- foundation: demo and the report (owner: lead) ---------------------------------------------------------
# <api-foundation>

# ----- input/output: info (owner: io) ----------------------------------------------------------------------
# <api-io>

# ----- digital cell: simulate (owner: simulate) ------------------------------------------------------------
# <api-simulate>

# ----- virtual staining: manifest, train, predict, evaluate ----------------------------------------------------
# (training: manifest, train; owner: training)
# <api-training>

# (inference and evaluation: predict, evaluate; owner: inference)
# <api-inference>

# ----- segmentation: make_masks, segment ------------------------------------------------------------------------
# <api-segmentation>

# ----- quantification: quantify --------------------------------------------------------------------------------
# <api-quantify>
