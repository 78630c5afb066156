"""Readers of images stored as single planes: PNG / JPEG rasters and series of slices (a glob or a folder of
TIFF or PNG planes, stacked along Z), with the same checks and metadata as every other reader."""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.io.arrays import (
    RASTER_SUFFIXES,
    TIFF_SUFFIXES,
    _check_tiff_data,
    _finish,
    _short,
    check_size,
    natural_key,
)
from stainfree.types import ImageMeta


def _read_plane(path: Path, max_bytes: int | None = None) -> np.ndarray:
    """One 2D plane (Y, X) or colour plane (Y, X, S) from PNG, JPEG or TIFF, size checked before decoding."""
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(path, "TIFF file holds no image")
            _check_tiff_data(path, tif.series[0], lazy=False, max_bytes=max_bytes)
            return np.asarray(tif.series[0].asarray())
    if not name.endswith(RASTER_SUFFIXES):
        raise InputError(path, f"unknown slice format {path.suffix!r}; slices must be PNG, JPEG or TIFF")
    from PIL import Image

    with Image.open(path) as im:
        bands = max(len(im.getbands()), 4 if im.mode == "P" else 1)
        check_size(
            (im.size[1], im.size[0], bands),
            np.uint8 if im.mode in ("L", "P", "RGB", "RGBA", "LA") else np.int32,
            path,
            max_bytes,
        )
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(im).astype(np.uint16)
        plane: Image.Image = im
        if plane.mode == "P":
            plane = plane.convert("RGBA" if "transparency" in plane.info else "RGB")
        if plane.mode == "LA":
            plane = plane.convert("L")
        arr = np.asarray(plane)
    if arr.dtype == np.int32:  # 16-bit PNGs opened as mode "I"
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr
    return arr


def _plane_axes(plane: np.ndarray, source: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Axes of one raster plane; grey images saved as RGB(A) collapse to one channel, alpha is dropped."""
    if plane.ndim == 2:
        return plane, "YX"
    if plane.ndim == 3 and plane.shape[-1] in (3, 4):
        rgb = plane[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0], "YX"
        return rgb, "YXC"
    raise InputError(source, f"expected a 2D slice, got shape {plane.shape}")


def _read_raster(
    path: Path, fmt: str, *, lazy: bool, validate: bool, max_bytes: int | None
) -> tuple[Any, ImageMeta]:
    try:
        plane = _read_plane(path, max_bytes)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable {fmt.upper()} file: {_short(exc)}") from None
    data, axes = _plane_axes(plane, path)
    names = ["red", "green", "blue"] if axes == "YXC" else None
    return _finish(data, axes, path, fmt, (None, None, None), names, lazy=False, validate=validate)


def _read_series(pattern: str, *, lazy: bool, validate: bool, max_bytes: int | None) -> tuple[Any, ImageMeta]:
    files = sorted(_glob.glob(pattern), key=lambda f: natural_key(os.path.basename(f)))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise InputError(pattern, "no files match this pattern")
    planes: list[np.ndarray] = []
    axes = ""
    for f in files:
        try:
            plane = _read_plane(Path(f), max_bytes)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f, f"corrupt or unreadable slice: {_short(exc)}") from None
        plane, plane_axes = _plane_axes(plane, f)
        if planes and (plane.shape != planes[0].shape or plane.dtype != planes[0].dtype):
            raise InputError(
                f,
                f"slice of shape {plane.shape} {plane.dtype} differs from the first slice "
                f"({os.path.basename(files[0])}: {planes[0].shape} {planes[0].dtype}); all slices must match",
            )
        axes = axes or plane_axes
        planes.append(plane)
        if len(planes) == 1:  # every slice matches the first: refuse the stack before reading the rest
            check_size((len(files), *plane.shape), plane.dtype, pattern, max_bytes)
    data = np.stack(planes)
    axes = "Z" + axes
    names = ["red", "green", "blue"] if "C" in axes else None
    extra = {"files": [str(f) for f in files]}
    return _finish(
        data, axes, pattern, "series", (None, None, None), names, lazy=False, validate=validate, extra=extra
    )
