"""The npe2 reader: stainfree outputs as napari layers with the right types, names and physical scale.

- images (``*.ome.tif``, ``*.tif``, ``*.ome.zarr``; predictions, bright-field, Nile Red): Image layers, one
  per channel, named by channel, scaled by the voxel size;
- compartment label maps (``labels.ome.tif``, ``<name>_labels.ome.tif``): a Labels layer in the catalog's
  colours; an OME-Zarr from ``segment`` also gives its NGFF label image ``labels/compartments``;
- mask stacks (15 channels named by compartment: ``<name>_masks.ome.tif``, ``instances.ome.tif``), binary
  masks (``*_mask.ome.tif``) and cell maps (``cells.ome.tif``): Labels layers;
- quantification tables (``objects.csv`` / ``.parquet``, any table with ``centroid_*_um`` columns): object
  centroids as a Points layer coloured by compartment, the table as the layer's features;
- a folder (a ``segment``, ``predict`` or ``quantify`` output folder, a simulated field): every file above
  in it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stainfree.napari._layers import (
    LayerData,
    centroid_columns,
    image_layers,
    label_map_layer,
    mask_layers,
    points_layer,
)

PathOrPaths = str | list[str]
ReaderFunction = Callable[[PathOrPaths], list[LayerData]]

_IMAGE_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".ome.zarr", ".zarr")
_TABLE_SUFFIXES = (".csv", ".parquet")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (*_IMAGE_SUFFIXES, *_TABLE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _kind(path: Path) -> str | None:
    """``"image"``, ``"table"``, ``"folder"`` or None (not ours)."""
    low = path.name.lower()
    if low.endswith((".ome.zarr", ".zarr")):
        return "image" if path.exists() else None
    if path.is_dir():
        return "folder" if not low.endswith(".stainfree") and _folder_files(path) else None
    if low.endswith(_TABLE_SUFFIXES):
        return "table"
    if low.endswith(_IMAGE_SUFFIXES):
        return "image"
    return None


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(_IMAGE_SUFFIXES))
    objects = [folder / f"objects{s}" for s in _TABLE_SUFFIXES if (folder / f"objects{s}").is_file()]
    return files + objects[:1]


def get_reader(path: PathOrPaths) -> ReaderFunction | None:
    """npe2 reader hook: a reader function when every path is a stainfree output, else None."""
    paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
    if not paths or any(_kind(p) is None for p in paths):
        return None
    if any(_kind(p) == "table" and not _is_objects_table(p) for p in paths):
        return None
    return read_layers


def _is_objects_table(path: Path) -> bool:
    try:
        columns = _read_table(path, nrows=1).columns
    except Exception:  # noqa: BLE001 - a table we cannot read is not ours
        return False
    return centroid_columns(list(columns)) is not None


def _read_table(path: Path, nrows: int | None = None) -> Any:
    import pandas as pd

    if path.name.lower().endswith(".parquet"):
        table = pd.read_parquet(path)
        return table if nrows is None else table.head(nrows)
    return pd.read_csv(path, nrows=nrows)


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """Read stainfree outputs (files or folders) as napari layer-data tuples."""
    paths = [Path(p) for p in ([path] if isinstance(path, str | Path) else path)]
    layers: list[LayerData] = []
    for p in paths:
        kind = _kind(p)
        if kind == "folder":
            for f in _folder_files(p):
                layers.extend(_read_file(f))
        elif kind is not None:
            layers.extend(_read_file(p))
    return layers


def _read_file(path: Path) -> list[LayerData]:
    if path.name.lower().endswith(_TABLE_SUFFIXES):
        layer = points_layer(_read_table(path), _stem(path))
        return [layer] if layer is not None else []
    return _read_image_layers(path)


def _read_image_layers(path: Path) -> list[LayerData]:
    import numpy as np

    from stainfree.io.readers import read_image
    from stainfree.types import COMPARTMENTS

    array, meta = read_image(path, lazy=True)
    stem = _stem(path)
    names = list(meta.channel_names)
    integer = np.issubdtype(np.dtype(meta.dtype), np.integer)
    layers: list[LayerData]
    if integer and "C" in meta.axes and tuple(names) == tuple(COMPARTMENTS):
        data = np.asarray(array)
        if "T" in meta.axes:  # time-lapse masks: the first frame
            data = data[0]
        layers = mask_layers(data, names, meta.voxel_size_um, stem)
        for layer in layers[:1]:
            layer[1]["visible"] = True
    elif integer and "C" not in meta.axes and (stem == "labels" or stem.endswith("_labels")):
        layers = [label_map_layer(np.asarray(array), meta.voxel_size_um, stem)]
    elif integer and "C" not in meta.axes and (stem in ("cells", "mask") or stem.endswith("_mask")):
        layers = [label_map_layer(np.asarray(array), meta.voxel_size_um, stem, compartments=False)]
    else:
        layers = image_layers(array, meta.axes, meta.voxel_size_um, names, stem)
    if path.name.lower().endswith((".ome.zarr", ".zarr")):
        layers.extend(_ngff_labels(path))
    return layers


def _ngff_labels(path: Path) -> list[LayerData]:
    """The NGFF label images of an OME-Zarr (``labels/<name>``), compartment maps in the catalog colours."""
    import numpy as np

    from stainfree.io.readers import read_image

    out: list[LayerData] = []
    labels_dir = path / "labels"
    if not labels_dir.is_dir():
        return out
    for sub in sorted(p for p in labels_dir.iterdir() if p.is_dir()):
        try:
            array, meta = read_image(sub)
        except Exception:  # noqa: BLE001 - an unreadable label image is skipped, the image still opens
            continue
        arr = np.asarray(array)
        out.append(
            label_map_layer(
                arr, meta.voxel_size_um, f"{_stem(path)} [{sub.name}]", compartments=arr.max() <= 15
            )
        )
    return out
