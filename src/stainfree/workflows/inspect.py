"""Looking at data: describe image files (``info``) and simulate digital cells (``simulate``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from stainfree.config import SimulationConfig


def info(paths: str | Path | Sequence[str | Path], *, max_bytes: int | None = None) -> pd.DataFrame:
    """Describe image files: format, axes, shape, dtype, voxel size, channels, intensity range, problems.

    Files are opened lazily where the format allows, so the intensity range of a large file is computed chunk
    by chunk. A file that cannot be used (missing, unreadable, NaN/Inf, size 0, every pixel equal) is not an
    error here: its row says what is wrong.

    Parameters
    ----------
    paths : path-like or sequence of path-likes
        Files, OME-Zarr folders or glob patterns of 2D slices.
    max_bytes : int, optional
        Largest chunk to read into memory at once (default: the memory available); a file whose header
        claims more is reported, not read.

    Returns
    -------
    pandas.DataFrame
        One row per path with columns ``path, format, axes, shape, dtype, voxel_size_um, channels, min, max,
        ok, problem`` (``problem`` is "" for usable files).
    """
    import os

    import pandas as pd

    from stainfree.errors import InputError
    from stainfree.io.readers import image_stats, read_image

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows = []
    for path in paths:
        row: dict[str, Any] = {"path": str(path), "format": "", "axes": "", "shape": None, "dtype": ""}
        row.update(voxel_size_um=None, channels=None, min=None, max=None, ok=False, problem="")
        try:
            array, meta = read_image(path, lazy=True, max_bytes=max_bytes)
            row.update(
                format=meta.extra.get("format", ""),
                axes=meta.axes,
                shape=meta.shape,
                dtype=meta.dtype,
                voxel_size_um=meta.voxel_size_um,
                channels=meta.channel_names,
            )
            try:  # lazy arrays read the file only now: a truncated or corrupt file fails here
                stats = image_stats(array)
            except MemoryError:
                raise InputError(path, "too large to compute the intensity range in memory") from None
            except Exception as exc:  # noqa: BLE001 - any failure while reading pixels is the file's problem
                text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise InputError(path, f"corrupt or unreadable file: {text}") from None
            row.update(min=stats["min"], max=stats["max"])
            if stats["nan"]:
                raise InputError(path, f"image contains {stats['nan']} NaN value(s)")
            if stats["inf"]:
                raise InputError(path, f"image contains {stats['inf']} infinite value(s)")
            if stats["min"] == stats["max"]:
                value = stats["min"]
                shown = str(int(value)) if float(value).is_integer() else f"{value:g}"
                raise InputError(path, f"empty image: every pixel is {shown}")
            row["ok"] = True
        except InputError as exc:
            row["problem"] = exc.problem
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


# ----- digital cell: simulate ------------------------------------------------------------------------------
def simulate(
    out_dir: str | Path,
    config: SimulationConfig | str | Path | None = None,
    *,
    progress: bool = False,
    **overrides: Any,
) -> Path:
    """Simulate a data set of digital cells (bright-field, fluorescence, Nile Red, exact masks).

    Parameters
    ----------
    out_dir : path
        Destination folder (one ``field_NNN/`` per field, ``manifest.csv``, ``simulation.json``).
    config : SimulationConfig or path to YAML, optional
        Settings; defaults to ``SimulationConfig()``.
    progress : bool
        Show a rich progress bar.
    **overrides
        Fields of :class:`stainfree.config.SimulationConfig` replacing those of ``config`` (e.g. ``seed=1``).

    Returns
    -------
    Path
        The manifest path.
    """
    from stainfree.config import SimulationConfig, resolve
    from stainfree.lock import output_lock

    cfg = resolve(SimulationConfig, config, source="simulate options", **overrides)
    with output_lock(out_dir):
        return _simulate(cfg, out_dir, progress)


def _simulate(cfg: SimulationConfig, out_dir: str | Path, progress: bool) -> Path:
    from stainfree.simulate import write_dataset

    if not progress:
        return write_dataset(cfg, out_dir)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("simulating fields"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("simulate", total=cfg.n_fields)
        return write_dataset(cfg, out_dir, progress=lambda done, total: bar.update(task, completed=done))
