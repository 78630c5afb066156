"""What every benchmark shares: the repository paths, the one-thread setting, the summary and its JSON.

Each benchmark ends with ``name: value`` lines and writes ``benchmarks/results/<name>.json``
(``<name>_quick.json`` for ``--quick``, which is not tracked).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"

if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def format_value(value: Any) -> str:
    """A figure as printed in the summary (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def finish(name: str, results: Mapping[str, Any], *, quick: bool, skip: tuple[str, ...] = ()) -> Path:
    """Print the ``name: value`` summary and write ``benchmarks/results/<name>[_quick].json``.

    Parameters
    ----------
    name : str
        The benchmark's name (its file name without ``.py``).
    results : mapping
        Every figure; written to JSON as is (sorted keys).
    quick : bool
        A ``--quick`` smoke run (written as ``<name>_quick.json``).
    skip : tuple of str
        Keys left out of the printed summary (nested settings, for instance); they stay in the JSON.

    Returns
    -------
    Path
        The JSON file.
    """
    from stainfree.io.writers import write_json

    print("summary:")
    for key, value in results.items():
        if key not in skip:
            print(f"{key}: {format_value(value)}")
    return write_json(RESULTS / f"{name}{'_quick' if quick else ''}.json", dict(results))


def set_threads(n: int = 1) -> None:
    """Torch intra-op threads (one per process on a 2-core machine avoids OpenMP oversubscription), and the
    allocator setting the CLI uses (:func:`stainfree.runtime.keep_freed_memory`)."""
    import torch

    from stainfree.runtime import keep_freed_memory

    torch.set_num_threads(n)
    keep_freed_memory()
