"""napari layer-data tuples from stainfree arrays and tables (no napari import: plain tuples and dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]

#: Channel colormaps by channel name (others: napari's defaults).
_CHANNEL_COLORMAPS = {
    "yellow": "yellow",
    "red": "red",
    "gfp": "green",
    "dna": "blue",
    "membrane": "magenta",
    "mitochondria": "red",
    "er": "cyan",
}


def compartment_rgba() -> dict[str, tuple[float, float, float, float]]:
    """Compartment name -> RGBA in 0..1 (the catalog's colours; extracellular transparent)."""
    from stainfree.api import compartment_colors

    return {
        name: (r / 255, g / 255, b / 255, 0.0 if name == "extracellular" else 1.0)
        for name, (r, g, b) in compartment_colors().items()
    }


def label_colormap() -> dict[int | None, tuple[float, float, float, float]]:
    """Label id (1..15) -> RGBA of its compartment; 0 and unknown ids transparent."""
    cmap: dict[int | None, tuple[float, float, float, float]] = {None: (0.0, 0.0, 0.0, 0.0), 0: (0, 0, 0, 0)}
    for i, rgba in enumerate(compartment_rgba().values(), start=1):
        cmap[i] = rgba
    return cmap


def spatial_scale(voxel_size_um: Sequence[float | None], ndim: int) -> tuple[float, ...]:
    """napari ``scale`` of the last ``ndim`` spatial axes from a (z, y, x) voxel size (1 where unknown)."""
    zyx = [1.0 if v is None else float(v) for v in voxel_size_um]
    return tuple(zyx[-ndim:]) if ndim <= 3 else (1.0,) * (ndim - 3) + tuple(zyx)


def image_layers(
    array: Any, axes: str, voxel_size_um: Sequence[float | None], channel_names: Sequence[str], name: str
) -> list[LayerData]:
    """An image as one Image layer per channel (named by channel, scaled to micrometres)."""
    spatial = sum(a in "ZYX" for a in axes)
    scale = (1.0,) * ("T" in axes) + spatial_scale(voxel_size_um, spatial)
    meta: dict[str, Any] = {"name": name, "scale": scale, "metadata": {"axes": axes}}
    if "C" in axes and array.shape[axes.index("C")] > 1:
        names = list(channel_names)
        meta.update(
            channel_axis=axes.index("C"),
            name=[f"{name} [{c}]" for c in names],
            colormap=[_CHANNEL_COLORMAPS.get(c.lower(), "gray") for c in names],
            blending="additive",
            metadata={"axes": axes, "channel_names": names},
        )
    elif "C" in axes:
        array = np.take(array, 0, axis=axes.index("C"))
        meta["metadata"] = {"axes": axes.replace("C", "")}
    return [(array, meta, "image")]


def label_map_layer(
    labels: Any, voxel_size_um: Sequence[float | None], name: str, *, compartments: bool = True
) -> LayerData:
    """A label map as a Labels layer; compartment label maps get the catalog colours and names."""
    arr = np.asarray(labels)
    meta: dict[str, Any] = {"name": name, "scale": spatial_scale(voxel_size_um, arr.ndim), "opacity": 0.6}
    if compartments:
        from stainfree.types import COMPARTMENTS

        meta["colormap"] = label_colormap()
        meta["features"] = {"index": list(range(len(COMPARTMENTS) + 1)), "compartment": ["", *COMPARTMENTS]}
    return (arr, meta, "labels")


def mask_layers(
    masks: Any, names: Sequence[str], voxel_size_um: Sequence[float | None], name: str
) -> list[LayerData]:
    """A stack of per-compartment masks (or instance maps) as one Labels layer per non-empty compartment."""
    colours = compartment_rgba()
    out: list[LayerData] = []
    arr = np.asarray(masks)
    for i, cname in enumerate(names):
        m = arr[i]
        if not m.any():
            continue
        binary = m.max() <= 1
        meta: dict[str, Any] = {
            "name": f"{name} [{cname}]",
            "scale": spatial_scale(voxel_size_um, m.ndim),
            "opacity": 0.6,
            "visible": False,
        }
        if binary and cname in colours:
            meta["colormap"] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: colours[cname]}
        out.append((m.astype(np.uint32) if not binary else m.astype(np.uint8), meta, "labels"))
    return out


def centroid_columns(columns: Sequence[str]) -> list[str] | None:
    """The centroid columns (z, y, x or y, x, in um) of an objects table, or None."""
    for cols in (["centroid_z_um", "centroid_y_um", "centroid_x_um"], ["centroid_y_um", "centroid_x_um"]):
        if all(c in columns for c in cols):
            return cols
    return None


def points_layer(table: Any, name: str) -> LayerData | None:
    """Object centroids (micrometres) as a Points layer coloured by class, the table as its features."""
    cols = centroid_columns(list(table.columns))
    if cols is None or len(table) == 0:
        return None
    coords = table[cols].to_numpy(dtype=float)
    colours = compartment_rgba()
    cls = table["structure"].astype(str).tolist() if "structure" in table.columns else ["object"] * len(table)
    face = np.array([colours.get(c, (1.0, 1.0, 1.0, 1.0))[:3] + (1.0,) for c in cls], dtype=float)
    meta = {
        "name": name,
        "features": table.reset_index(drop=True),
        "face_color": face,
        "size": 1.0,
        "metadata": {"units": "um"},
    }
    return (coords, meta, "points")
