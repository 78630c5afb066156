"""What quantification reads: label maps, named mask stacks, instance maps, simulator field folders.

A :class:`MaskSource` holds the masks of all frames in one of three kinds:

* ``"labels"``: a semantic label map, value i = ``names[i-1]`` (0 = none), shape ``(T, [Z,] Y, X)``;
* ``"masks"``: one binary mask per structure (may overlap), shape ``(T, C, [Z,] Y, X)``;
* ``"instances"``: one instance-id map per structure (ids > 0 are objects), shape ``(T, C, [Z,] Y, X)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.quantify.maps import ObjectMap, build_object_map, object_map_from_label_map
from stainfree.types import COMPARTMENTS

__all__ = [
    "MaskSource",
    "dataset_fields",
    "field_files",
    "frame_interval_from_json",
    "load_frames_image",
    "load_masks",
    "segment_masks_file",
    "voxel_size_from_json",
]

#: Channel names of a mask stack that are not structures (ignored).
_IGNORED_CHANNELS = ("labels", "label_map", "label", "background")


def _lazy_equal(data: np.ndarray, value: int) -> Callable[[], np.ndarray]:
    """``data == value``, computed when called (a mask built only when its structure is measured)."""
    return lambda: data == value


def _lazy_above(data: np.ndarray, channel: int, thresh: float) -> Callable[[], np.ndarray]:
    """``data[channel] > thresh``, computed when called."""
    return lambda: data[channel] > thresh


@dataclass
class MaskSource:
    """Masks of every frame of one field (see the module docstring for the kinds)."""

    kind: str
    array: Any
    names: tuple[str, ...]
    voxel_size_um: tuple[float | None, float | None, float | None] = (None, None, None)
    source: str = "masks"
    extras: dict[str, Path] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of time points."""
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial shape ([Z,] Y, X)."""
        return tuple(self.array.shape[1:] if self.kind == "labels" else self.array.shape[2:])

    def object_map(
        self,
        frame: int,
        *,
        connectivity: int = 3,
        min_size: int = 10,
        structures: Sequence[str] | None = None,
    ) -> ObjectMap:
        """Objects of one frame (optionally only the named structures)."""
        wanted = list(self.names) if structures is None else list(structures)
        unknown = [s for s in wanted if s not in self.names]
        if unknown:
            raise InputError(self.source, f"unknown structure(s) {unknown}; the input has {list(self.names)}")
        data = np.asarray(self.array[frame])
        if self.kind == "labels":
            if structures is None:
                return object_map_from_label_map(
                    data, self.names, connectivity=connectivity, min_size=min_size
                )
            ids = {n: i + 1 for i, n in enumerate(self.names)}
            return build_object_map(
                {s: _lazy_equal(data, ids[s]) for s in wanted},
                connectivity=connectivity,
                min_size=min_size,
            )
        index = {n: i for i, n in enumerate(self.names)}
        if self.kind == "instances":
            return build_object_map(
                {s: data[index[s]] for s in wanted},
                instances=True,
                connectivity=connectivity,
                min_size=min_size,
            )
        thresh = 0.5 if np.issubdtype(data.dtype, np.floating) else 0
        return build_object_map(
            {s: _lazy_above(data, index[s], thresh) for s in wanted},
            connectivity=connectivity,
            min_size=min_size,
        )


def frame_interval_from_json(path: str | os.PathLike) -> float | None:
    """The top-level ``frame_interval_s`` of a JSON file (e.g. a simulator ``field.json``), if any."""
    try:
        value = json.loads(Path(path).read_text()).get("frame_interval_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def voxel_size_from_json(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The first ``voxel_size_um`` (z, y, x) found anywhere in a JSON file (e.g. a simulator
    ``field.json``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

    def find(obj: Any) -> Any:
        if isinstance(obj, dict):
            v = obj.get("voxel_size_um")
            if isinstance(v, (list, tuple)) and len(v) == 3:
                return tuple(float(x) for x in v)
            for value in obj.values():
                hit = find(value)
                if hit is not None:
                    return hit
        elif isinstance(obj, list):
            for value in obj:
                hit = find(value)
                if hit is not None:
                    return hit
        return None

    return find(data)


def dataset_fields(path: str | os.PathLike) -> list[tuple[str, Path]] | None:
    """The field folders of a simulated data set (a folder holding ``manifest.csv``, or the manifest itself).

    Returns
    -------
    list of (field name, folder), or None when ``path`` is not a data set
    """
    p = Path(path)
    manifest = p / "manifest.csv" if p.is_dir() else p
    if manifest.name != "manifest.csv" or not manifest.is_file():
        return None
    import pandas as pd

    try:
        table = pd.read_csv(manifest)
    except (OSError, ValueError) as exc:
        raise InputError(manifest, f"unreadable manifest ({exc})") from None
    column = next((c for c in ("instances", "labels") if c in table.columns), None)
    if column is None or "field" not in table.columns:
        return None
    out = []
    for name, rel in zip(table["field"], table[column], strict=True):
        folder = (manifest.parent / str(rel)).parent
        if not folder.is_dir():
            raise InputError(manifest, f"field folder {folder} of {name} not found")
        out.append((str(name), folder))
    return out or None


def field_files(folder: Path) -> dict[str, Path]:
    """The files of a simulator field folder that quantification uses (those present)."""
    names = {
        "instances": "instances.ome.tif",
        "labels": "labels.ome.tif",
        "cells": "cells.ome.tif",
        "nilered": "nilered.ome.tif",
        "json": "field.json",
    }
    return {k: folder / v for k, v in names.items() if (folder / v).is_file()}


def segment_masks_file(folder: str | os.PathLike) -> Path:
    """The mask stack of a ``stainfree segment`` output folder: its one ``*_masks.ome.tif`` (else
    ``*_masks.ome.zarr``)."""
    folder = Path(folder)
    for pattern in ("*_masks.ome.tif", "*_masks.ome.zarr"):
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InputError(folder, f"{len(found)} segment outputs ({pattern}); pass one file")
    raise InputError(folder, "no masks here (a simulator field folder or a segment output folder expected)")


def _default_axes(shape: tuple[int, ...], names: Sequence[str] | None) -> str:
    nd = len(shape)
    if nd == 2:
        return "YX"
    if nd == 3:
        return "ZYX"
    if nd == 4:
        n = len(names) if names is not None else len(COMPARTMENTS)
        return "CZYX" if shape[0] == n else "TZYX"
    if nd == 5:
        return "TCZYX"
    raise InputError("masks", f"expected a 2D to 5D array, got {nd} dimensions")


def _from_array(
    array: Any,
    axes: str,
    names: Sequence[str] | None,
    channel_names: Sequence[str],
    source: str,
    kind: str | None = None,
) -> MaskSource:
    if len(axes) != array.ndim:
        raise InputError(source, f"axes {axes!r} do not match an array of {array.ndim} dimensions")
    if kind not in (None, "labels", "masks", "instances"):
        raise InputError(source, f"unknown mask kind {kind!r}; use 'labels', 'masks' or 'instances'")
    if "T" not in axes:
        array = array[None]
        axes = "T" + axes
    if "C" not in axes and kind in ("instances", "masks"):  # one structure's instance map or mask
        if names is not None and len(names) != 1:
            raise InputError(source, f"a single-channel {kind} image needs one name, got {len(names)}")
        array = np.asarray(array)[:, None]
        axes = axes[0] + "C" + axes[1:]
        names = list(names) if names is not None else ["objects"]
    if "C" not in axes:
        if names is None:
            names = COMPARTMENTS
        arr = np.asarray(array)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise InputError(source, "a label map must hold integer label ids")
            arr = arr.astype(np.int32)
        top = int(arr.max()) if arr.size else 0
        if top > len(names) or (arr.size and int(arr.min()) < 0):
            raise InputError(
                source,
                f"label values must lie in 0..{len(names)} (one per structure name); found up to {top}",
            )
        return MaskSource("labels", arr, tuple(names), source=source)
    # a stack of channels: masks or instance maps
    chans = list(names) if names is not None else list(channel_names)
    n_c = array.shape[1]
    if len(chans) != n_c:
        if n_c == len(COMPARTMENTS) and names is None:
            chans = list(COMPARTMENTS)
        else:
            raise InputError(
                source, f"{n_c} channels but {len(chans)} channel names; pass one name per channel"
            )
    keep = [i for i, c in enumerate(chans) if c.lower() not in _IGNORED_CHANNELS]
    if not keep:
        raise InputError(source, "no structure channels (only label/background channels)")
    if len(set(chans)) != len(chans):
        raise InputError(source, f"duplicate channel names {chans}")
    arr = np.asarray(array)[:, keep]
    chans = [chans[i] for i in keep]
    if kind in ("masks", "instances"):
        return MaskSource(kind, arr, tuple(chans), source=source)
    if kind == "labels":
        raise InputError(source, f"a label map has one channel, this image has {arr.shape[1]}")
    kind = "masks"
    if np.issubdtype(arr.dtype, np.integer) and arr.size and int(arr.max()) > 1:
        # 0/255 masks are masks; several ids per channel are instance maps
        per_channel = [np.unique(arr[:, i]) for i in range(arr.shape[1])]
        if any(u.size > 2 for u in per_channel):
            kind = "instances"
    return MaskSource(kind, arr, tuple(chans), source=source)


def load_masks(
    masks: str | os.PathLike | np.ndarray,
    *,
    axes: str | None = None,
    names: Sequence[str] | None = None,
    kind: str | None = None,
) -> MaskSource:
    """Read masks from a file, a simulator field folder or an array.

    Parameters
    ----------
    masks : path or ndarray
        A label-map image (one channel, integer values 1..len(names)), a mask stack with named channels (15
        compartment masks as written by ``stainfree segment``; a channel named "labels" is ignored), an
        instance stack (integer ids per channel, like the simulator's ``instances.ome.tif``), a simulator
        field folder (its ``instances.ome.tif``, else ``labels.ome.tif``; ``cells.ome.tif``,
        ``nilered.ome.tif`` and the voxel size of ``field.json`` are picked up too), a ``stainfree segment``
        output folder (its ``*_masks.ome.tif``; time-lapses too), or an array.
    axes : str, optional
        Axes of an array (default from its number of dimensions: YX, ZYX, CZYX when the first axis has one
        entry per name (15 by default) else TZYX, TCZYX).
    names : sequence of str, optional
        Structure names: of label values 1..n (default :data:`COMPARTMENTS`) or of the channels.
    kind : {"labels", "masks", "instances"}, optional
        Force the interpretation (default: a single channel is a label map; channels holding more than one id
        are instance maps, else masks). ``"instances"`` on a single-channel image reads one structure's
        instance map (named by ``names``, default "objects").

    Returns
    -------
    MaskSource
    """
    if isinstance(masks, np.ndarray):
        ax = axes or _default_axes(masks.shape, names)
        return _from_array(masks, ax, names, (), "masks array", kind)
    from stainfree.io.readers import read_image

    path = Path(masks)
    extras: dict[str, Path] = {}
    voxel: tuple[float | None, float | None, float | None] = (None, None, None)
    if path.is_dir() and field_files(path).keys() & {"instances", "labels"}:
        extras = field_files(path)
        image_path = extras.pop("instances", None) or extras["labels"]
        extras.pop("labels", None)
        if "json" in extras:
            voxel = voxel_size_from_json(extras["json"]) or voxel
    elif not path.exists() and "*" not in str(path):
        raise InputError(path, "masks not found")
    elif path.is_dir() and not path.name.endswith(".zarr"):
        image_path = segment_masks_file(path)
    else:
        image_path = path
    array, meta = read_image(image_path)
    src = _from_array(np.asarray(array), meta.axes, names, meta.channel_names, str(image_path), kind)
    src.extras = extras
    merged = [v if v is not None else w for v, w in zip(meta.voxel_size_um, voxel, strict=True)]
    src.voxel_size_um = (merged[0], merged[1], merged[2])
    return src


def load_frames_image(
    path: str | os.PathLike, n_frames: int, spatial: tuple[int, ...]
) -> tuple[np.ndarray, Any]:
    """Read an auxiliary image (cells, intensity, Nile Red) as ``(T, [C,] spatial)`` matching the masks."""
    from stainfree.io.readers import read_image

    array, meta = read_image(path)
    arr = np.asarray(array)
    if "T" not in meta.axes:
        arr = arr[None]
    if arr.shape[0] != n_frames and arr.shape[0] != 1:
        raise InputError(path, f"{arr.shape[0]} time points but the masks have {n_frames}")
    if tuple(arr.shape[-len(spatial) :]) != tuple(spatial):
        raise InputError(
            path, f"spatial shape {arr.shape[-len(spatial) :]} does not match the masks' {spatial}"
        )
    return arr, meta
