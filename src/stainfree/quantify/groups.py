"""Statistics per group of cells (mitotic phase, or any manifest column): tables, voxel-wise distributions and
figures in the style of Zhanghao et al. Fig. 5h-i / S8 / S11.

Pure numpy/pandas (matplotlib Agg for the figures). A group is a label per cell (``cell_id``), e.g. the phase
of each simulated cell from its ``field.json`` or one value per field from a manifest column.

* :func:`group_table` -- per group and structure: cells, objects per cell, volume per cell, volume fraction,
  mean / median object volume, sphericity, ratio, distance to the nucleus, height above the coverslip;
* :func:`voxel_distances` -- voxel-wise histograms of the distance to the *own cell's* nucleus and of the
  height above the cell's lowest plane (the coverslip), per group and structure; :func:`distance_summary`
  turns them into quantiles. A cell without a nucleus (metaphase, anaphase) has no distance to it: its
  voxels are counted in ``no_nucleus_voxels`` only;
* :func:`group_figures` -- bars (counts, volumes, fractions), box plots per object (volume, sphericity) and
  box plots of the voxel-wise distributions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from stainfree.quantify.maps import NUCLEUS_STRUCTURES, ObjectMap

__all__ = [
    "DISTANCE_BINS_UM",
    "FIGURE_STRUCTURES",
    "GROUP_COLUMNS",
    "assign_groups",
    "cell_groups_from_field",
    "distance_summary",
    "empty_histograms",
    "group_figures",
    "group_table",
    "order_groups",
    "voxel_distances",
]

#: Bin edges (um) of the voxel-wise distance and height histograms: exact zeros (inside the nucleus, the
#: lowest plane) in a bin of their own, then 0.1 um bins; larger values fall in the last bin.
DISTANCE_BINS_UM: np.ndarray = np.concatenate([[0.0, 1e-6], np.round(np.arange(0.1, 40.0 + 1e-9, 0.1), 6)])

#: Order of the mitotic phases in tables and figures (other group values follow, sorted).
PHASE_ORDER: tuple[str, ...] = ("interphase", "prophase", "metaphase", "anaphase", "telophase")

#: Structures shown in the figures (those present).
FIGURE_STRUCTURES: tuple[str, ...] = (
    "nucleus",
    "er",
    "golgi",
    "mitochondria",
    "lipid_droplet",
    "plasma_membrane",
)

#: Columns of the groups table after the group column, with their meaning.
GROUP_COLUMNS: dict[str, str] = {
    "structure": "compartment name",
    "cells": "number of cells in the group (cells x frames for a time-lapse)",
    "cell_volume_um3": "mean cell volume",
    "objects_per_cell": "objects of the structure assigned to the group's cells / cells",
    "volume_per_cell_um3": "voxel-wise volume of the structure inside the group's cells / cells",
    "volume_fraction": "that volume / the cells' volume",
    "mean_volume_um3": "mean object volume",
    "median_volume_um3": "median object volume",
    "mean_sphericity": "mean object sphericity",
    "mean_ratio": "mean object emission ratio (NaN without a Nile Red image)",
    "mean_nearest_nucleus_distance_um": "mean per-object distance to the nearest nucleus of any cell",
    "mean_height_um": "mean per-object centroid height above its cell's lowest plane",
    "median_voxel_nucleus_distance_um": "median voxel distance to the own cell's nucleus (NaN: no nucleus)",
    "median_voxel_height_um": "median voxel height above the own cell's lowest plane",
}

_HIST_COLUMNS = ("frame", "structure", "quantity", "bin_lo_um", "bin_hi_um", "voxels")


def order_groups(values: Iterable[Any]) -> list[str]:
    """Distinct group values: mitotic phases in their order first, then the others sorted."""
    vals = {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    return [p for p in PHASE_ORDER if p in vals] + sorted(vals - set(PHASE_ORDER))


def cell_groups_from_field(meta: Mapping[str, Any], key: str) -> dict[int, str] | None:
    """``{cell id: group}`` from a simulator ``field.json``: each cell's ``key`` entry; for ``"phase"`` a
    field simulated without phases is all "interphase". None when the field does not say."""
    cells = meta.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) and "cell" in c for c in cells):
        return None
    if cells and all(key in c for c in cells):
        return {int(c["cell"]): str(c[key]) for c in cells}
    if key == "phase" and "mitosis" not in meta:
        return {int(c["cell"]): "interphase" for c in cells}
    return None


def assign_groups(table: pd.DataFrame, groups: Mapping[int, str] | str, column: str) -> pd.DataFrame:
    """``table`` (with ``cell_id``) plus a ``column`` holding each row's group (None outside cells or for
    cells without a group); ``groups`` maps cell id -> group, or is one group for every cell."""
    out = table.copy()
    ids = out["cell_id"]
    if isinstance(groups, str):
        out[column] = ids.map(lambda c: groups if int(c) > 0 else None).astype(object)
    else:
        out[column] = ids.map(lambda c: groups.get(int(c))).astype(object)
    return out


def empty_histograms(group_by: str) -> pd.DataFrame:
    """An empty voxel-histogram table."""
    cols = {c: pd.Series(dtype="float64") for c in ("frame", group_by, *_HIST_COLUMNS[1:])}
    df = pd.DataFrame(cols)
    return df.astype(
        {"frame": "int64", group_by: object, "structure": object, "quantity": object, "voxels": "int64"}
    )


def voxel_distances(
    omap: ObjectMap,
    cells: np.ndarray,
    voxel_size_um: Sequence[float],
    groups: Mapping[int, str] | str,
    *,
    frame: int = 0,
    group_by: str = "group",
    bins: np.ndarray = DISTANCE_BINS_UM,
    nucleus_structures: Sequence[str] = NUCLEUS_STRUCTURES,
) -> pd.DataFrame:
    """Voxel-wise histograms of the distance to the own cell's nucleus and of the height above the coverslip.

    For every cell with a group, every voxel of every structure inside it is binned by (a) its Euclidean
    distance (um, ``sampling`` = voxel size) to the nearest nucleus voxel of the same cell (0 inside the
    nucleus; cells without nucleus voxels give ``quantity="no_nucleus"`` rows counting their voxels) and (b)
    its height ``(z - first plane of the cell) x voxel z`` (3D only).

    Returns
    -------
    DataFrame
        ``frame, <group_by>, structure, quantity ("nucleus_distance", "height", "no_nucleus"), bin_lo_um,
        bin_hi_um, voxels``; empty bins are left out.
    """
    vox = np.asarray(voxel_size_um, float)[-omap.layers[0].ndim :]
    cells = np.asarray(cells)
    nuc = omap.structure_mask(nucleus_structures)
    n_s, nb = len(omap.names), len(bins) - 1
    rows: list[pd.DataFrame] = []
    is3d = cells.ndim == 3
    smaps = [omap.structure_map(li) for li in range(len(omap.layers))]
    for cid, sl in enumerate(ndi.find_objects(cells.astype(np.int64, copy=False)), start=1):
        group = groups if isinstance(groups, str) else groups.get(cid)
        if sl is None or group is None:
            continue
        incell = cells[sl] == cid
        nuc_c = nuc[sl] & incell
        dist = ndi.distance_transform_edt(~nuc_c, sampling=vox) if nuc_c.any() else None
        quantities: dict[str, np.ndarray] = {}
        if dist is not None:
            quantities["nucleus_distance"] = dist[incell]
        if is3d:
            z = (np.arange(sl[0].stop - sl[0].start, dtype=float) * vox[0])[:, None, None]
            quantities["height"] = np.broadcast_to(z, incell.shape)[incell]
        counts: dict[str, np.ndarray] = {}
        no_nuc = np.zeros(n_s, np.int64)
        for smap in smaps:
            s = smap[sl][incell].astype(np.int64)
            ok = s >= 0
            if not ok.any():
                continue
            if dist is None:
                no_nuc += np.bincount(s[ok], minlength=n_s)
            for q, values in quantities.items():
                b = np.clip(np.searchsorted(bins, values[ok], side="right") - 1, 0, nb - 1)
                c = np.bincount(s[ok] * nb + b, minlength=n_s * nb).reshape(n_s, nb)
                counts[q] = counts.get(q, 0) + c
        for q, c in counts.items():
            si, bi = np.nonzero(c)
            rows.append(
                pd.DataFrame(
                    {
                        "structure": np.asarray(omap.names, object)[si],
                        "quantity": q,
                        "bin_lo_um": bins[bi],
                        "bin_hi_um": bins[bi + 1],
                        "voxels": c[si, bi].astype(np.int64),
                        group_by: group,
                    }
                )
            )
        if no_nuc.any():
            si = np.flatnonzero(no_nuc)
            rows.append(
                pd.DataFrame(
                    {
                        "structure": np.asarray(omap.names, object)[si],
                        "quantity": "no_nucleus",
                        "bin_lo_um": np.nan,
                        "bin_hi_um": np.nan,
                        "voxels": no_nuc[si],
                        group_by: group,
                    }
                )
            )
    if not rows:
        return empty_histograms(group_by)
    stacked = pd.concat(rows, ignore_index=True)
    keys = [group_by, "structure", "quantity", "bin_lo_um", "bin_hi_um"]
    out = stacked.groupby(keys, dropna=False, sort=False)["voxels"].sum().reset_index()
    out.insert(0, "frame", int(frame))
    return out[["frame", group_by, *_HIST_COLUMNS[1:]]]


def _hist_quantiles(lo: np.ndarray, hi: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of binned data (linear within a bin; rows of the same bin are pooled first)."""
    edges, inverse = np.unique(lo, return_inverse=True)
    w = np.bincount(inverse, weights=w.astype(float))
    upper = dict(zip(lo.tolist(), hi.tolist(), strict=True))
    lo, hi = edges, np.array([upper[e] for e in edges.tolist()])
    cum = np.cumsum(w)
    total = cum[-1]
    out = []
    for q in qs:
        target = q * total
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, len(w) - 1)
        before = cum[i] - w[i]
        frac = (target - before) / w[i] if w[i] > 0 else 0.0
        out.append(float(lo[i] + np.clip(frac, 0, 1) * (hi[i] - lo[i])))
    return out


def distance_summary(hist: pd.DataFrame, group_by: str = "group") -> pd.DataFrame:
    """Per group, structure and quantity: voxels, mean, and the 5/25/50/75/95 % quantiles (um) of the voxel
    histograms of :func:`voxel_distances` (pooled over frames and fields); ``no_nucleus_voxels`` counts the
    voxels of cells without a nucleus."""
    cols = [group_by, "structure", "quantity", "voxels", "no_nucleus_voxels", "mean_um"]
    cols += ["q05_um", "q25_um", "median_um", "q75_um", "q95_um"]
    if hist.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    no_nuc = hist[hist["quantity"] == "no_nucleus"].groupby([group_by, "structure"])["voxels"].sum()
    rows = []
    binned = hist[hist["quantity"] != "no_nucleus"]
    for (g, s, q), d in binned.groupby([group_by, "structure", "quantity"], sort=False):
        lo, hi, w = (d[c].to_numpy(float) for c in ("bin_lo_um", "bin_hi_um", "voxels"))
        qv = _hist_quantiles(lo, hi, w, (0.05, 0.25, 0.5, 0.75, 0.95))
        rows.append(
            {
                group_by: g,
                "structure": s,
                "quantity": q,
                "voxels": int(w.sum()),
                "no_nucleus_voxels": int(no_nuc.get((g, s), 0)) if q == "nucleus_distance" else 0,
                "mean_um": float((w * 0.5 * (lo + hi)).sum() / w.sum()),
                "q05_um": qv[0],
                "q25_um": qv[1],
                "median_um": qv[2],
                "q75_um": qv[3],
                "q95_um": qv[4],
            }
        )
    for key, n in no_nuc.items():
        g, s = key  # type: ignore[misc]
        if not (
            (binned[group_by] == g) & (binned["structure"] == s) & (binned["quantity"] == "nucleus_distance")
        ).any():
            rows.append(
                {
                    group_by: g,
                    "structure": s,
                    "quantity": "nucleus_distance",
                    "voxels": 0,
                    "no_nucleus_voxels": int(n),
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    rank = {g: i for i, g in enumerate(order_groups(out[group_by]))}
    out = out.sort_values(
        [group_by, "quantity", "structure"], key=lambda c: c.map(rank) if c.name == group_by else c
    )
    return out.reset_index(drop=True)


def group_table(
    objects: pd.DataFrame,
    cells: pd.DataFrame,
    *,
    group_by: str = "group",
    distances: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per group and structure: the columns of :data:`GROUP_COLUMNS`.

    ``objects`` and ``cells`` are quantify's tables with a ``group_by`` column (:func:`assign_groups`); a cell
    is one (field, frame, cell_id). ``distances`` (:func:`distance_summary`) adds the voxel medians.
    """
    key = [c for c in ("field", "frame", "cell_id") if c in cells.columns]
    cl = cells[cells[group_by].notna() & (cells["cell_id"] > 0)]
    per_cell = cl.drop_duplicates(key)
    n_cells = per_cell.groupby(group_by)["cell_id"].size()
    cell_vol = per_cell.groupby(group_by)["cell_volume_um3"].sum()
    vol = cl.groupby([group_by, "structure"])["total_volume_um3"].sum()
    ob = objects[objects[group_by].notna() & (objects["cell_id"] > 0)]
    g = ob.groupby([group_by, "structure"])
    stats = pd.DataFrame(
        {
            "n_objects": g.size(),
            "mean_volume_um3": g["volume_um3"].mean(),
            "median_volume_um3": g["volume_um3"].median(),
            "mean_sphericity": g["sphericity"].mean(),
            "mean_ratio": g["mean_ratio"].mean(),
            "mean_nearest_nucleus_distance_um": g["nucleus_distance_um"].mean(),
            "mean_height_um": g["height_um"].mean(),
        }
    )
    index = vol.index.union(stats.index)
    out = stats.reindex(index)
    out["volume_total"] = vol.reindex(index).fillna(0.0)
    out = out.reset_index()
    out["cells"] = out[group_by].map(n_cells).fillna(0).astype("int64")
    out["cell_volume_um3"] = out[group_by].map(cell_vol) / out["cells"].where(out["cells"] > 0)
    out["objects_per_cell"] = out["n_objects"].fillna(0) / out["cells"].where(out["cells"] > 0)
    out["volume_per_cell_um3"] = out["volume_total"] / out["cells"].where(out["cells"] > 0)
    out["volume_fraction"] = out["volume_total"] / out[group_by].map(cell_vol)
    for q, col in (
        ("nucleus_distance", "median_voxel_nucleus_distance_um"),
        ("height", "median_voxel_height_um"),
    ):
        out[col] = np.nan
        if distances is not None and not distances.empty:
            d = distances[distances["quantity"] == q].set_index([group_by, "structure"])["median_um"]
            out[col] = pd.MultiIndex.from_frame(out[[group_by, "structure"]]).map(d.to_dict()).astype(float)
    rank = {v: i for i, v in enumerate(order_groups(out[group_by]))}
    out = out.sort_values([group_by, "structure"], key=lambda c: c.map(rank) if c.name == group_by else c)
    return out[[group_by, *GROUP_COLUMNS]].reset_index(drop=True)


# ----- figures ------------------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from stainfree.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _panel_grid(n_rows: int, n_cols: int) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.3 * n_cols + 0.5, 2.2 * n_rows + 0.4), squeeze=False)
    return fig, axes


def group_figures(
    tables: Mapping[str, pd.DataFrame], out_dir: str | os.PathLike, *, group_by: str
) -> dict[str, Path]:
    """``groups_bars.png`` (objects per cell, volume per cell, volume fraction), ``groups_boxes.png`` (object
    volume and sphericity) and ``groups_distances.png`` (voxel-wise distance to the nucleus and height) for
    the structures of :data:`FIGURE_STRUCTURES` present. Returns ``{file name: path}``."""
    out = Path(out_dir)
    groups, objects = tables["groups"], tables["objects"]
    dist = tables.get("group_distances")
    order = order_groups(groups[group_by])
    structs = [s for s in FIGURE_STRUCTURES if s in set(groups["structure"])]
    written: dict[str, Path] = {}
    if not order or not structs:
        return written
    colors = [f"C{i}" for i in range(len(order))]
    x = np.arange(len(order))

    fig, axes = _panel_grid(3, len(structs))
    metrics = (
        ("objects_per_cell", "objects / cell"),
        ("volume_per_cell_um3", "volume / cell (µm³)"),
        ("volume_fraction", "fraction of cell"),
    )
    for j, s in enumerate(structs):
        d = groups[groups["structure"] == s].set_index(group_by).reindex(order)
        for i, (col, label) in enumerate(metrics):
            ax = axes[i, j]
            ax.bar(x, d[col].fillna(0).to_numpy(), color=colors)
            ax.set_xticks(x, order, rotation=45, ha="right", fontsize=7)
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(s)
    fig.suptitle(f"Per {group_by}: counts and volumes per cell")
    fig.tight_layout()
    written["groups_bars.png"] = _save(fig, out / "groups_bars.png")

    ob = objects[objects[group_by].notna()]
    fig, axes = _panel_grid(2, len(structs))
    for j, s in enumerate(structs):
        for i, (col, label) in enumerate(
            (("volume_um3", "object volume (µm³)"), ("sphericity", "sphericity"))
        ):
            ax = axes[i, j]
            data = [
                ob.loc[(ob["structure"] == s) & (ob[group_by] == g), col].dropna().to_numpy() for g in order
            ]
            ax.boxplot([d if d.size else [np.nan] for d in data], tick_labels=order, showfliers=False)
            if col == "volume_um3" and any(d.size and (d > 0).all() for d in data):
                ax.set_yscale("log")
            ax.tick_params(axis="x", rotation=45, labelsize=7)
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(s)
    fig.suptitle(f"Per {group_by}: objects")
    fig.tight_layout()
    written["groups_boxes.png"] = _save(fig, out / "groups_boxes.png")

    if dist is not None and not dist.empty:
        fig, axes = _panel_grid(2, len(structs))
        quantities = (
            ("nucleus_distance", "distance to own nucleus (µm)"),
            ("height", "height above coverslip (µm)"),
        )
        for j, s in enumerate(structs):
            for i, (q, label) in enumerate(quantities):
                ax = axes[i, j]
                d = dist[(dist["structure"] == s) & (dist["quantity"] == q) & (dist["voxels"] > 0)]
                d = d.set_index(group_by)
                stats, pos = [], []
                for k, g in enumerate(order):
                    if g in d.index:
                        r = d.loc[g]
                        stats.append(
                            {
                                "med": r["median_um"],
                                "q1": r["q25_um"],
                                "q3": r["q75_um"],
                                "whislo": r["q05_um"],
                                "whishi": r["q95_um"],
                                "label": g,
                            }
                        )
                        pos.append(k)
                if stats:
                    ax.bxp(stats, positions=pos, showfliers=False)
                ax.set_xticks(x, order, rotation=45, ha="right", fontsize=7)
                if j == 0:
                    ax.set_ylabel(label)
                if i == 0:
                    ax.set_title(s)
        fig.suptitle(f"Per {group_by}: voxel-wise distributions (whiskers 5-95 %)")
        fig.tight_layout()
        written["groups_distances.png"] = _save(fig, out / "groups_distances.png")
    return written
