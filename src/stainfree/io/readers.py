"""Readers: one entry point, :func:`read_image`, for TIFF, OME-TIFF, CZI, ND2, LIF, OME-Zarr and slices.

Every reader returns the array in canonical ``(T)(C)ZYX`` order (singleton T, C and Z dropped) with an
:class:`~stainfree.types.ImageMeta`. Bad input raises :class:`~stainfree.errors.InputError` naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.io.arrays import (
    CANONICAL,
    RASTER_SUFFIXES,
    TIFF_SUFFIXES,
    _apply,
    _check_tiff_data,
    _finish,
    _short,
    as_czyx,
    canonicalize,
    check_image,
    image_stats,
    intensity_range,
    is_glob,
    natural_key,
    resolve_axes,
    select_channels,
    unit_to_um,
)
from stainfree.io.slices import _read_raster, _read_series
from stainfree.types import ImageMeta

# The format-independent helpers live in stainfree.io.arrays; they stay importable from here.
__all__ = [
    "CANONICAL",
    "RASTER_SUFFIXES",
    "SUPPORTED",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIXES",
    "as_czyx",
    "canonicalize",
    "check_image",
    "detect_format",
    "image_stats",
    "intensity_range",
    "is_glob",
    "natural_key",
    "read_image",
    "read_json",
    "resolve_axes",
    "select_channels",
    "unit_to_um",
]

ZARR_SUFFIXES = (".zarr", ".ome.zarr")
SUPPORTED = (
    ".tif, .tiff, .ome.tif, .czi, .nd2, .lif, .zarr / .ome.zarr, .png, .jpg (or a glob pattern of 2D slices)"
)

# vendor formats read through bioio: suffix -> (format name, reader plugin module, pip package)
VENDOR = {
    ".czi": ("czi", "bioio_czi", "bioio-czi"),
    ".nd2": ("nd2", "bioio_nd2", "bioio-nd2"),
    ".lif": ("lif", "bioio_lif", "bioio-lif"),
}
#: Screen/print resolutions that say nothing about the sample (TIFF inch resolution tags).
_DPI_DEFAULTS = {72.0, 96.0, 150.0, 300.0, 600.0, 1200.0}


# ----- format detection -------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of ``path`` from its suffix or folder layout.

    Returns one of ``"series"``, ``"ome-zarr"``, ``"ome-tiff"``, ``"tiff"``, ``"czi"``, ``"nd2"``, ``"lif"``,
    ``"png"``, ``"jpeg"``.

    Raises
    ------
    InputError
        When the file is missing or its format is unknown.
    """
    text = str(path)
    if is_glob(text) and not Path(text).exists():
        return "series"
    p = Path(text)
    name = p.name.lower()
    if not p.exists():
        raise InputError(path, "file not found")
    if p.is_dir():
        if (
            name.endswith(ZARR_SUFFIXES)
            or (p / ".zattrs").exists()
            or (p / "zarr.json").exists()
            or (p / ".zarray").exists()
        ):
            return "ome-zarr"
        raise InputError(path, f"is a folder, not an image (supported: {SUPPORTED})")
    if name.endswith((".ome.tif", ".ome.tiff", ".ome.btf")):
        return "ome-tiff"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    for suffix, (fmt, _, _) in VENDOR.items():
        if name.endswith(suffix):
            return fmt
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpeg"
    if name.endswith(("zarr.json", ".zattrs", ".zgroup")):
        return "ome-zarr"
    raise InputError(path, f"unknown image format {p.suffix or '(no extension)'!r}; supported: {SUPPORTED}")


def read_image(
    path: str | os.PathLike,
    *,
    lazy: bool = False,
    validate: bool = True,
    max_bytes: int | None = None,
    intensities: bool = False,
) -> tuple[Any, ImageMeta]:
    """Read an image in canonical ``(T)(C)ZYX`` order with its metadata.

    Parameters
    ----------
    path : path-like
        A TIFF / ImageJ hyperstack / OME-TIFF / CZI / ND2 / LIF file, an OME-Zarr folder, a PNG/JPEG file,
        or a glob pattern (e.g. ``"stack/slice_*.png"``) of 2D slices of equal shape stacked into Z in natural
        order.
    lazy : bool
        Return a dask array where the format allows it (OME-Zarr, TIFF, CZI, ND2, LIF); otherwise numpy.
    validate : bool
        Check dimensions (2D to 5D), size (> 0) and, for data read into memory, that floats are finite.
        Constant images are accepted here; use :func:`check_image` for that.
    max_bytes : int, optional
        Largest array (with ``lazy``: largest chunk) to read into memory, checked against the size the file's
        header claims before anything is allocated. Default: the memory available now.
    intensities : bool
        The image must hold intensities (a microscope image to predict from, not a mask): boolean pixels are
        refused.

    Returns
    -------
    array : ndarray or dask array
        Singleton T, C and Z axes dropped: a 2D single-channel image is ``YX``, a two-channel z-stack
        ``CZYX``.
    meta : ImageMeta
        Axes, shape, dtype, voxel size (z, y, x) in um (None where unknown), channel names (``ch0``, ``ch1``,
        ... when the file has none; one name also for single-channel images), and the path.
        ``meta.extra["format"]`` names the format.

    Raises
    ------
    InputError
        Missing file, unknown format, corrupt or truncated file, a header claiming more than ``max_bytes``,
        an unsupported pixel type (complex, object), too many channels, wrong number of dimensions,
        NaN/Inf values or size 0.
    """
    fmt = detect_format(path)
    kwargs: dict[str, Any] = {"lazy": lazy, "validate": validate, "max_bytes": max_bytes}
    with _quiet_readers():
        array, meta = _read_any(path, fmt, kwargs)
    if intensities and np.dtype(array.dtype).kind == "b":
        raise InputError(path, "boolean pixels (a mask?) where an intensity image is expected")
    return array, meta


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _quiet_readers() -> Iterator[list[str]]:
    """Hold back the reader libraries' log lines and yield them as a list (a damaged file becomes one
    InputError, not log noise)."""
    loggers = [logging.getLogger(name) for name in ("tifffile", "PIL", "zarr", "bioio", "numcodecs")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    collect = _Collect()
    for lg in loggers:
        lg.setLevel(logging.WARNING)
        lg.propagate = False
        lg.addHandler(collect)
    try:
        yield collect.messages
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(collect)
            lg.setLevel(level)
            lg.propagate = propagate


def _read_any(path: str | os.PathLike, fmt: str, kwargs: dict[str, Any]) -> tuple[Any, ImageMeta]:
    try:
        if fmt == "series":
            return _read_series(str(path), **kwargs)
        if fmt == "ome-zarr":
            return _read_zarr(Path(path), **kwargs)
        if fmt in ("tiff", "ome-tiff"):
            return _read_tiff(Path(path), **kwargs)
        if fmt in ("czi", "nd2", "lif"):
            return _read_vendor(Path(path), fmt, **kwargs)
        return _read_raster(Path(path), fmt, **kwargs)
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, "too large to read into memory; try lazy=True") from None
    except RecursionError:
        raise InputError(path, f"corrupt {fmt} file: nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any library failure while reading is the file's problem
        raise InputError(path, f"corrupt or unreadable {fmt} file: {_short(exc)}") from None


# ----- TIFF, ImageJ, OME-TIFF -------------------------------------------------------------------------------


def _ome_metadata(xml: str) -> tuple[tuple[float | None, float | None, float | None], list[str]]:
    """Voxel size (z, y, x) in um and channel names of the first image of an OME-XML document."""
    root = ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    pixels = None
    for el in root.iter():
        if el.tag.endswith("}Pixels") or el.tag == "Pixels":
            pixels = el
            break
    if pixels is None:
        return (None, None, None), []
    sizes: list[float | None] = []
    for ax in "ZYX":
        value = pixels.get(f"PhysicalSize{ax}")
        factor = unit_to_um(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        sizes.append(float(value) * factor if value is not None and factor is not None else None)
    names = [ch.get("Name") or "" for ch in pixels if ch.tag.endswith("}Channel") or ch.tag == "Channel"]
    return (sizes[0], sizes[1], sizes[2]), names


def _tiff_xy_um(page: Any, imagej: dict | None) -> tuple[float | None, float | None]:
    """Pixel size (y, x) in um from TIFF resolution tags (ImageJ unit when present)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, None
    unit_tag = tags.get("ResolutionUnit")
    unit_code = int(unit_tag.value) if unit_tag is not None else 2
    if imagej and imagej.get("unit"):
        per_unit = unit_to_um(imagej["unit"])
    elif unit_code == 3:
        per_unit = 1e4
    elif unit_code == 2:
        per_unit = 25400.0
    else:
        per_unit = None
    out: list[float | None] = []
    for name in ("YResolution", "XResolution"):
        num, den = tags[name].value
        res = num / den if den else 0.0
        if per_unit is None or res <= 0 or (unit_code == 2 and round(res, 6) in _DPI_DEFAULTS and not imagej):
            out.append(None)
        elif res == 1.0 and not (imagej and imagej.get("unit")):
            out.append(None)
        else:
            out.append(per_unit / res)
    return out[0], out[1]


def _read_tiff(path: Path, *, lazy: bool, validate: bool, max_bytes: int | None) -> tuple[Any, ImageMeta]:
    import tifffile

    with _quiet_readers() as messages:
        try:
            tif = tifffile.TiffFile(path)
            series = tif.series[0] if tif.series else None
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"corrupt or unreadable TIFF: {_short(exc)}") from None
    broken = [
        m for m in messages if "invalid page offset" in m or "invalid value offset" in m or "corrupt" in m
    ]
    if broken:  # the chain of pages points past the end of the file (or into garbage)
        tif.close()
        raise InputError(path, f"truncated or corrupt TIFF: {_short(Exception(broken[0]))}")
    with tif:
        if series is None:
            raise InputError(path, "TIFF file holds no image")
        shape, raw_axes = tuple(series.shape), series.axes
        voxel: list[float | None] = [None, None, None]
        names: list[str] = []
        fmt = "tiff"
        imagej = tif.imagej_metadata if tif.is_imagej else None
        if tif.is_ome and tif.ome_metadata:
            fmt = "ome-tiff"
            (vz, vy, vx), names = _ome_metadata(tif.ome_metadata)
            voxel = [vz, vy, vx]
        if voxel[1] is None and voxel[2] is None:
            voxel[1], voxel[2] = _tiff_xy_um(series.pages[0] if series.pages else tif.pages[0], imagej)
        if imagej:
            fmt = "imagej-tiff" if fmt == "tiff" else fmt
            if voxel[0] is None and imagej.get("spacing") and "Z" in raw_axes:
                factor = unit_to_um(imagej.get("unit"))
                voxel[0] = float(imagej["spacing"]) * factor if factor else None
        if any(s == 0 for s in shape):
            raise InputError(path, f"empty image: shape {shape} has size 0")
        if len(shape) < 2:
            raise InputError(path, f"wrong number of dimensions: {len(shape)}D; need 2D to 5D (TCZYX)")
        index, axes = resolve_axes(raw_axes, shape, path)
        _check_tiff_data(path, series, lazy=lazy, max_bytes=max_bytes)
        if not lazy:
            data = series.asarray()
    if lazy:  # the zarr store holds its own file handle, so it outlives the TiffFile above
        import dask.array as da
        import zarr

        store = tifffile.imread(path, aszarr=True, series=0)
        data = da.from_zarr(zarr.open(store, mode="r"))
    if tuple(data.shape) != shape:
        data = data.reshape(shape)
    data = _apply(data, index)
    return _finish(data, axes, path, fmt, voxel, names, lazy=lazy, validate=validate, max_bytes=max_bytes)


# ----- CZI, ND2, LIF (bioio) -------------------------------------------------------------------------------


def _read_vendor(
    path: Path, fmt: str, *, lazy: bool, validate: bool, max_bytes: int | None
) -> tuple[Any, ImageMeta]:
    """Zeiss CZI, Nikon ND2 and Leica LIF through their bioio reader plugins (first scene)."""
    import importlib

    _, module, package = next(v for v in VENDOR.values() if v[0] == fmt)
    label = fmt.upper()
    try:
        plugin = importlib.import_module(module)
        from bioio import BioImage
    except ImportError:
        raise InputError(
            path, f"reading {label} needs the {package} package (pip install {package})"
        ) from None
    if fmt == "lif":
        _check_lif_blocks(path)
    try:
        image = BioImage(path, reader=plugin.Reader)
        dims = image.dims.order
        data = image.dask_data
        pps = image.physical_pixel_sizes
        names = [str(n) for n in (image.channel_names or [])]
        n_scenes = len(image.scenes)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable {label} file: {_short(exc)}") from None
    index, axes = resolve_axes(dims, data.shape, path)
    data = _apply(data, index)
    voxel = (pps.Z, pps.Y, pps.X)
    return _finish(
        data,
        axes,
        path,
        fmt,
        voxel,
        names,
        lazy=lazy,
        validate=validate,
        max_bytes=max_bytes,
        extra={"scenes": n_scenes},
    )


def _check_lif_blocks(path: Path) -> None:
    """Refuse a LIF file whose XML does not parse or whose image data runs past the end of the file.

    liffile records memory blocks without reading them, so a file cut inside the pixel data would otherwise
    open fine and fail only when (lazily) read.
    """
    from liffile import LifFile

    size = path.stat().st_size
    try:
        with LifFile(path) as lif:
            blocks = list(lif.memory_blocks.values())
    except Exception as exc:  # noqa: BLE001 - LifFileError, struct/Unicode/XML errors: not a readable LIF
        raise InputError(path, f"corrupt or unreadable LIF file: {_short(exc)}") from None
    for block in blocks:
        if block.offset >= 0 and block.offset + block.size > size:
            raise InputError(
                path,
                f"truncated LIF file: memory block {block.id!r} needs {block.size} bytes from offset "
                f"{block.offset}, the file has {size} bytes",
            )


# ----- OME-Zarr ---------------------------------------------------------------------------------------------


def _zarr_image_attrs(group: Any) -> dict | None:
    """The NGFF image attributes (with ``multiscales``) of a group: 0.5 (under ``ome``) or 0.4 and older."""
    attrs = dict(group.attrs)
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]
    if "multiscales" in attrs:
        return attrs
    return None


def _read_zarr(path: Path, *, lazy: bool, validate: bool, max_bytes: int | None) -> tuple[Any, ImageMeta]:
    try:
        return _read_zarr_store(path, lazy=lazy, validate=validate, max_bytes=max_bytes)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else _short(exc)
        raise InputError(path, f"broken OME-Zarr metadata: {what}") from None


def _read_zarr_store(
    path: Path, *, lazy: bool, validate: bool, max_bytes: int | None
) -> tuple[Any, ImageMeta]:
    import dask.array as da
    import zarr

    root = path
    if path.name in ("zarr.json", ".zattrs", ".zgroup", ".zarray"):
        root = path.parent
    try:
        node = zarr.open(str(root), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable Zarr store: {_short(exc)}") from None
    if isinstance(node, zarr.Array):  # a bare array: axes from dimension names or by position
        dim_names = getattr(node.metadata, "dimension_names", None)
        shape = tuple(node.shape)
        raw = (
            "".join(str(n)[0].upper() for n in dim_names)
            if dim_names and all(dim_names)
            else "Q" * (len(shape) - 2) + "YX"
        )
        if len(shape) < 2:
            raise InputError(path, f"wrong number of dimensions: {len(shape)}D; need 2D to 5D (TCZYX)")
        index, axes = resolve_axes(raw, shape, path)
        data = _apply(da.from_zarr(node), index)
        return _finish(
            data,
            axes,
            path,
            "zarr",
            (None, None, None),
            None,
            lazy=lazy,
            validate=validate,
            max_bytes=max_bytes,
        )
    attrs = _zarr_image_attrs(node)
    if attrs is None and "0" in node and isinstance(node["0"], zarr.Group):  # bioformats2raw layout
        node = node["0"]
        attrs = _zarr_image_attrs(node)
    if attrs is None:
        raise InputError(path, "Zarr group without OME-NGFF 'multiscales' metadata")
    if not isinstance(attrs["multiscales"], list) or not attrs["multiscales"]:
        raise InputError(path, "broken OME-Zarr metadata: 'multiscales' is not a non-empty list")
    ms = attrs["multiscales"][0]
    if not isinstance(ms, dict) or not isinstance(ms.get("datasets"), list) or not ms["datasets"]:
        raise InputError(path, "broken OME-Zarr metadata: 'multiscales' names no datasets")
    version = str(attrs.get("version") or ms.get("version") or "")
    dataset = ms["datasets"][0]
    arr = node[dataset["path"]]
    if not isinstance(arr, zarr.Array):
        raise InputError(path, f"NGFF dataset {str(dataset['path'])!r} is a Zarr group, not an array")
    axes_meta = ms.get("axes") or ["t", "c", "z", "y", "x"][-arr.ndim :]
    names_axes = [str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta]
    units = [(a.get("unit") if isinstance(a, dict) else None) for a in axes_meta]
    types = [(a.get("type") if isinstance(a, dict) else None) for a in axes_meta]
    letters = ""
    for n, t in zip(names_axes, types, strict=True):
        if n in ("t", "c", "z", "y", "x"):
            letters += n.upper()
        elif t == "time":
            letters += "T"
        elif t == "channel":
            letters += "C"
        else:
            raise InputError(path, f"unsupported NGFF axis {n!r} (type {t}); stainfree reads t, c, z, y, x")
    if arr.ndim != len(letters):
        raise InputError(path, f"NGFF axes {names_axes} do not match the array of shape {arr.shape}")
    scale = np.ones(len(letters))
    for tr in list(dataset.get("coordinateTransformations") or []) + list(
        ms.get("coordinateTransformations") or []
    ):
        if tr.get("type") == "scale" and "scale" in tr:
            scale = scale * np.asarray(tr["scale"], dtype=float)
    voxel: list[float | None] = []
    for ax in "ZYX":
        if ax not in letters:
            voxel.append(None)
            continue
        i = letters.index(ax)
        factor = unit_to_um(units[i])
        if units[i] is None and scale[i] != 1.0:
            factor = 1.0  # NGFF scales without a unit are taken as micrometres
        voxel.append(float(scale[i]) * factor if factor is not None else None)
    names: list[str] = []
    omero = attrs.get("omero") or dict(node.attrs).get("omero")
    if isinstance(omero, dict):
        names = [str(ch.get("label") or "") for ch in omero.get("channels", [])]
    data = da.from_zarr(arr)
    extra = {"ngff_version": version, "dataset": str(dataset["path"]), "levels": len(ms["datasets"])}
    return _finish(
        data,
        letters,
        path,
        "ome-zarr",
        voxel,
        names,
        lazy=lazy,
        validate=validate,
        max_bytes=max_bytes,
        extra=extra,
    )


# ----- PNG / JPEG and slice series --------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; InputError when missing or malformed."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "file not found")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not valid JSON: {_short(exc)}") from None
