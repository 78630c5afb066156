"""Summaries of the object table: per structure and per cell (counts, volumes, volume fractions).

Pure numpy/pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from stainfree.errors import InputError
from stainfree.quantify.maps import ObjectMap

STRUCTURE_COLUMNS: tuple[str, ...] = (
    "frame",
    "structure",
    "count",
    "total_volume_um3",
    "mean_volume_um3",
    "median_volume_um3",
    "mean_sphericity",
    "mean_ratio",
    "volume_fraction",
)

CELL_COLUMNS: tuple[str, ...] = (
    "frame",
    "cell_id",
    "structure",
    "count",
    "total_volume_um3",
    "mean_volume_um3",
    "cell_volume_um3",
    "volume_fraction",
)

__all__ = [
    "CELL_COLUMNS",
    "STRUCTURE_COLUMNS",
    "cell_structure_volumes",
    "cell_summary",
    "cell_volumes",
    "structure_summary",
]


def structure_summary(
    objects: pd.DataFrame,
    names: Sequence[str],
    *,
    cells_volume_um3: Mapping[int, float] | None = None,
    volume_in_cells: pd.Series | None = None,
    frames: Sequence[int] = (0,),
) -> pd.DataFrame:
    """Per frame and structure: count, total/mean/median volume, mean sphericity and ratio, volume fraction.

    Every structure of ``names`` gets a row in every frame (count 0 when it has no objects).
    ``volume_fraction`` is the structure's volume inside cells (``volume_in_cells``, indexed by frame and
    structure, e.g. summed from :func:`cell_structure_volumes`) over the volume of all cells of the frame
    (``cells_volume_um3``: frame -> um^3); NaN without cells.
    """
    frames = sorted(set(frames) | set(objects["frame"].unique().tolist()))
    index = pd.MultiIndex.from_product([frames, list(names)], names=["frame", "structure"])
    g = objects.groupby(["frame", "structure"])
    out = pd.DataFrame(
        {
            "count": g.size(),
            "total_volume_um3": g["volume_um3"].sum(),
            "mean_volume_um3": g["volume_um3"].mean(),
            "median_volume_um3": g["volume_um3"].median(),
            "mean_sphericity": g["sphericity"].mean(),
            "mean_ratio": g["mean_ratio"].mean(),
        }
    ).reindex(index)
    out["count"] = out["count"].fillna(0).astype("int64")
    out["total_volume_um3"] = out["total_volume_um3"].fillna(0.0)
    out = out.reset_index()
    if cells_volume_um3 and volume_in_cells is not None:
        inside = volume_in_cells.reindex(pd.MultiIndex.from_frame(out[["frame", "structure"]])).fillna(0.0)
        total = out["frame"].map(lambda f: cells_volume_um3.get(int(f), np.nan)).astype("float64")
        out["volume_fraction"] = inside.to_numpy() / total.replace(0.0, np.nan).to_numpy()
    else:
        out["volume_fraction"] = np.nan
    return out[list(STRUCTURE_COLUMNS)]


def cell_volumes(cells: np.ndarray, voxel_size_um: Sequence[float]) -> pd.Series:
    """Volume (um^3) of each cell id > 0 of a cell map."""
    counts = np.bincount(np.asarray(cells, dtype=np.int64).ravel())
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    return pd.Series(counts[ids] * float(np.prod(voxel_size_um)), index=pd.Index(ids, name="cell_id"))


def cell_structure_volumes(omap: ObjectMap, cells: np.ndarray, voxel_size_um: Sequence[float]) -> pd.Series:
    """Volume (um^3) of every structure inside every cell, counted voxel by voxel.

    Returns
    -------
    Series
        Indexed by (cell_id, structure); cells > 0 only, zero volumes left out.
    """
    cells = np.asarray(cells).astype(np.int64, copy=False)
    if cells.shape != omap.shape:
        raise InputError("cell map", f"shape {cells.shape} does not match the masks' shape {omap.shape}")
    n_s = len(omap.names)
    n_c = int(cells.max()) + 1 if cells.size else 1
    counts = np.zeros(n_c * n_s, dtype=np.int64)
    for li in range(len(omap.layers)):
        s = omap.structure_map(li).astype(np.int64)
        fg = (s >= 0) & (cells > 0)
        counts += np.bincount(cells[fg] * n_s + s[fg], minlength=n_c * n_s)
    nz = np.flatnonzero(counts)
    cid, sid = np.divmod(nz, n_s)
    index = pd.MultiIndex.from_arrays(
        [cid, np.array(omap.names, dtype=object)[sid]], names=["cell_id", "structure"]
    )
    return pd.Series(counts[nz] * float(np.prod(voxel_size_um)), index=index, dtype="float64")


def cell_summary(
    objects: pd.DataFrame,
    cell_volume: pd.Series,
    *,
    structure_volumes: pd.Series | None = None,
    frame: int | None = None,
) -> pd.DataFrame:
    """Per frame, cell and structure: count, total and mean volume, and volume fraction of the cell.

    ``count`` and ``mean_volume_um3`` are over the objects assigned to the cell (the cell holding most of an
    object's voxels). ``total_volume_um3`` and ``volume_fraction`` are voxel-wise when ``structure_volumes``
    (:func:`cell_structure_volumes`) is given -- an object spanning two touching cells (a shared cytosol) then
    counts in both -- else the sum over assigned objects. ``cell_volume`` maps cell id -> volume (um^3)
    (:func:`cell_volumes`); objects outside any cell (cell 0) get NaN fractions.
    """
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in CELL_COLUMNS}).astype(
        {"frame": "int64", "cell_id": "int64", "structure": "object", "count": "int64"}
    )
    if objects.empty and (structure_volumes is None or structure_volumes.empty):
        return empty
    g = objects.groupby(["cell_id", "structure"])
    out = pd.DataFrame(
        {
            "count": g.size(),
            "total_volume_um3": g["volume_um3"].sum(),
            "mean_volume_um3": g["volume_um3"].mean(),
        }
    )
    if structure_volumes is not None:
        out = out.reindex(out.index.union(structure_volumes.index))
        inside = structure_volumes.reindex(out.index)
        cell_ids = out.index.get_level_values("cell_id")
        out["total_volume_um3"] = np.where(cell_ids > 0, inside, out["total_volume_um3"])
        out["count"] = out["count"].fillna(0)
    out = out.reset_index()
    out["count"] = out["count"].astype("int64")
    out["cell_volume_um3"] = out["cell_id"].map(cell_volume).astype("float64")
    out["volume_fraction"] = out["total_volume_um3"] / out["cell_volume_um3"]
    if frame is not None:
        out["frame"] = int(frame)
    elif len(objects):
        out["frame"] = int(objects["frame"].iloc[0])
    else:
        out["frame"] = 0
    return out[list(CELL_COLUMNS)].astype({"frame": "int64", "cell_id": "int64"})
