"""Readers: one entry point, :func:`read_image`, for TIFF, ImageJ, OME-TIFF, CZI, OME-Zarr and slice series.

Every reader returns the array in canonical ``(T)(C)ZYX`` order (singleton T, C and Z dropped) with an
:class:`~stainfree.types.ImageMeta`. Bad input raises :class:`~stainfree.errors.InputError` naming the file.
"""

from __future__ import annotations

import glob as _glob
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.types import ImageMeta

CANONICAL = "TCZYX"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
ZARR_SUFFIXES = (".zarr", ".ome.zarr")
SUPPORTED = ".tif, .tiff, .ome.tif, .czi, .zarr / .ome.zarr, .png, .jpg (or a glob pattern of 2D slices)"

#: Length units (as written by OME, NGFF, ImageJ and others) -> micrometres per unit.
_UNIT_TO_UM: dict[str, float] = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "å": 1e-4,
    "angstrom": 1e-4,
}
#: Screen/print resolutions that say nothing about the sample (TIFF inch resolution tags).
_DPI_DEFAULTS = {72.0, 96.0, 150.0, 300.0, 600.0, 1200.0}


# ----- small pure helpers -----------------------------------------------------------------------------------


def unit_to_um(unit: str | None) -> float | None:
    """Micrometres per ``unit`` (e.g. ``"nm"`` -> 0.001); None for pixels, empty or unknown units."""
    if unit is None:
        return None
    key = str(unit).strip().lower()
    return _UNIT_TO_UM.get(key)


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value (``slice_2`` before ``slice_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def is_glob(path: str | os.PathLike) -> bool:
    """True when ``path`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(ch in str(path) for ch in "*?[")


def canonicalize(array: Any, axes: str, source: str | os.PathLike) -> tuple[Any, str]:
    """Reorder an array to canonical ``(T)(C)ZYX`` and drop singleton T, C and Z axes.

    Parameters
    ----------
    array : ndarray or dask array
        Image data.
    axes : str
        One letter per axis, each of ``TCZYX`` at most once.
    source : path-like or str
        Named in errors.

    Returns
    -------
    array, axes
        The reordered array (numpy or dask, as given) and its axis letters.
    """
    if len(axes) != array.ndim or len(set(axes)) != len(axes) or any(a not in CANONICAL for a in axes):
        raise InputError(source, f"cannot interpret axes {axes!r} of an array of shape {tuple(array.shape)}")
    if "Y" not in axes or "X" not in axes:
        raise InputError(
            source, f"wrong number of dimensions: {array.ndim}D (axes {axes}); need at least Y and X"
        )
    order = [axes.index(a) for a in CANONICAL if a in axes]
    if order != list(range(len(order))):
        array = array.transpose(order)
    new_axes = "".join(a for a in CANONICAL if a in axes)
    drop = tuple(i for i, a in enumerate(new_axes) if a in "TCZ" and array.shape[i] == 1)
    if drop:
        index = tuple(0 if i in drop else slice(None) for i in range(array.ndim))
        array = array[index]
        new_axes = "".join(a for i, a in enumerate(new_axes) if i not in drop)
    return array, new_axes


def resolve_axes(axes: str, shape: Sequence[int], source: str | os.PathLike) -> tuple[tuple, str]:
    """Map file axis letters (tifffile, bioio) to letters of ``TCZYX``.

    ``S`` (samples, e.g. RGB) becomes C. Singleton axes with unknown letters are dropped, and so is a
    singleton C or S beside the other. Remaining unknown letters (``Q``, ``I``, ...) take Z, then C, then T,
    from right to left, so an unlabelled 3D stack is ZYX, 4D is CZYX and 5D is TCZYX.

    Returns
    -------
    index : tuple
        Index to apply to the raw array (0 for dropped axes, ``slice(None)`` for kept ones).
    axes : str
        Letters of the kept axes.
    """
    letters = axes.upper()
    known = {"T": "T", "C": "C", "Z": "Z", "Y": "Y", "X": "X", "S": "C"}
    if len(letters) != len(shape):
        raise InputError(source, f"axes {axes!r} do not match shape {tuple(shape)}")
    drop = {i for i, a in enumerate(letters) if shape[i] == 1 and a not in known}
    if "C" in letters and "S" in letters:
        c, s = letters.index("C"), letters.index("S")
        if shape[s] == 1:
            drop.add(s)
        elif shape[c] == 1:
            drop.add(c)
        else:
            raise InputError(
                source, f"both channels and colour samples in axes {axes}; save one channel axis"
            )
    kept = [i for i in range(len(letters)) if i not in drop]
    mapped = [known.get(letters[i]) for i in kept]
    used = [m for m in mapped if m]
    if len(set(used)) != len(used):
        raise InputError(source, f"repeated axis in {axes!r}")
    free = [a for a in "ZCT" if a not in used]
    unknown = [j for j, m in enumerate(mapped) if m is None]
    if len(unknown) > len(free):
        raise InputError(
            source,
            f"wrong number of dimensions: {len(kept)}D (axes {axes}); stainfree reads at most 5 (TCZYX)",
        )
    for j, letter in zip(reversed(unknown), free, strict=False):
        mapped[j] = letter
    index = tuple(0 if i in drop else slice(None) for i in range(len(letters)))
    return index, "".join(mapped)  # type: ignore[arg-type]


def _apply(array: Any, index: tuple) -> Any:
    return array[index] if any(isinstance(i, int) for i in index) else array


def _is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask")


def _check_array(array: Any, source: str | os.PathLike, *, values: bool) -> None:
    """Dimensions and size checks; NaN/Inf too when ``values`` (reads the data)."""
    if array.ndim < 2 or array.ndim > 5:
        raise InputError(source, f"wrong number of dimensions: {array.ndim}D; need 2D to 5D (TCZYX)")
    if int(np.prod(array.shape)) == 0:
        raise InputError(source, f"empty image: shape {tuple(array.shape)} has size 0")
    if not values:
        return
    dtype = np.dtype(array.dtype)
    if dtype.kind == "b" or dtype.kind not in "uifc":
        if dtype.kind != "b":
            raise InputError(source, f"unsupported pixel type {dtype}")
        return
    if dtype.kind in "fc":
        if _is_dask(array):
            import dask.array as da

            n_nan, n_inf = da.compute(da.isnan(array).sum(), da.isinf(array).sum())
        else:
            n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if n_nan:
            raise InputError(source, f"image contains {int(n_nan)} NaN value(s)")
        if n_inf:
            raise InputError(source, f"image contains {int(n_inf)} infinite value(s)")


def check_image(array: Any, source: str | os.PathLike, *, allow_constant: bool = False) -> None:
    """Check that an image is usable: 2D-5D, not empty, finite, and (unless allowed) not constant.

    Parameters
    ----------
    array : ndarray or dask array
        The image.
    source : path-like or str
        Named in the error.
    allow_constant : bool
        Accept an image whose pixels are all equal (e.g. an all-zero mask).

    Raises
    ------
    InputError
        With a one-line description of the first problem found.
    """
    _check_array(array, source, values=True)
    if allow_constant:
        return
    lo, hi = intensity_range(array)
    if lo == hi:
        raise InputError(source, f"empty image: every pixel is {_fmt_value(lo)}")


def intensity_range(array: Any) -> tuple[float, float]:
    """(min, max) of an image; computed chunk by chunk for dask arrays."""
    if _is_dask(array):
        import dask.array as da

        lo, hi = da.compute(array.min(), array.max())
    else:
        arr = np.asarray(array)
        lo, hi = arr.min(), arr.max()
    return float(lo), float(hi)


def image_stats(array: Any) -> dict[str, Any]:
    """Minimum and maximum (ignoring NaN/Inf) and counts of NaN and infinite values; chunked for dask.

    Returns
    -------
    dict
        ``{"min": float, "max": float, "nan": int, "inf": int}``; min and max are NaN when no value is finite.
    """
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "fc":
        lo, hi = intensity_range(array)
        return {"min": lo, "max": hi, "nan": 0, "inf": 0}
    if _is_dask(array):
        import dask.array as da

        finite = da.isfinite(array)
        lo, hi, n_nan, n_inf = da.compute(
            da.where(finite, array, np.inf).min(),
            da.where(finite, array, -np.inf).max(),
            da.isnan(array).sum(),
            da.isinf(array).sum(),
        )
    else:
        arr = np.asarray(array)
        finite = np.isfinite(arr)
        lo = arr[finite].min() if finite.any() else np.nan
        hi = arr[finite].max() if finite.any() else np.nan
        n_nan, n_inf = np.isnan(arr).sum(), np.isinf(arr).sum()
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi):
        lo = hi = float("nan")
    return {"min": lo, "max": hi, "nan": int(n_nan), "inf": int(n_inf)}


def _fmt_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def as_czyx(array: Any, axes: str) -> Any:
    """Return one time point as (C, Z, Y, X), inserting singleton axes.

    Parameters
    ----------
    array : ndarray or dask array
        Image in canonical order described by ``axes`` (a subsequence of ``"TCZYX"``).
    axes : str
        Axis letters of ``array``.

    Returns
    -------
    ndarray or dask array
        Four-dimensional (C, Z, Y, X) view of the same type.

    Raises
    ------
    InputError
        When the image has more than one time point.
    """
    if len(axes) != array.ndim or any(a not in CANONICAL for a in axes):
        raise InputError("array", f"axes {axes!r} do not describe an array of shape {tuple(array.shape)}")
    array, axes = canonicalize(array, axes, "array")
    if "T" in axes:
        raise InputError("array", f"{array.shape[0]} time points; expected one (select a time point first)")
    index = tuple(slice(None) if a in axes else None for a in "CZYX")
    return array[index]


def select_channels(
    array: Any, meta: ImageMeta, channels: Sequence[str | int] | str | int
) -> tuple[Any, ImageMeta]:
    """Keep only some channels, given by name or index, in the order asked.

    Parameters
    ----------
    array : ndarray or dask array
        Image in canonical order (as returned by :func:`read_image`).
    meta : ImageMeta
        Its metadata.
    channels : str, int or sequence of them
        Channel names or 0-based indices.

    Returns
    -------
    array, ImageMeta
        The selection; the C axis is dropped when a single channel is kept (its name stays in
        ``channel_names``).
    """
    if isinstance(channels, (str, int, np.integer)):
        channels = [channels]
    n_channels = meta.shape[meta.axes.index("C")] if "C" in meta.axes else 1
    names = (
        list(meta.channel_names)
        if len(meta.channel_names) == n_channels
        else list(_default_names(n_channels))
    )
    source = meta.path or "image"
    known = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    index: list[int] = []
    for ch in channels:
        if isinstance(ch, (int, np.integer)) and not isinstance(ch, bool):
            if not -len(names) <= int(ch) < len(names):
                raise InputError(
                    source, f"no channel {int(ch)}; the image has {len(names)} channel(s): {known}"
                )
            index.append(int(ch) % len(names))
        elif isinstance(ch, str) and ch in names:
            index.append(names.index(ch))
        elif isinstance(ch, str) and ch.isdigit() and int(ch) < len(names):
            index.append(int(ch))
        else:
            raise InputError(source, f"no channel {ch!r}; known channels: {known}")
    if not index:
        raise InputError(source, "no channel selected")
    if "C" in meta.axes:
        c = meta.axes.index("C")
        take = (slice(None),) * c
        if len(index) == 1:
            out = array[(*take, index[0])]
            axes = meta.axes.replace("C", "")
        else:
            out = array[(*take, index)] if _is_dask(array) else np.take(array, index, axis=c)
            axes = meta.axes
    else:
        if len(index) == 1:
            out, axes = array, meta.axes
        else:
            c = 1 if meta.axes.startswith("T") else 0
            expanded = array[(slice(None),) * c + (None,)]
            out = expanded[(slice(None),) * c + ([0] * len(index),)]
            axes = meta.axes[:c] + "C" + meta.axes[c:]
    new_meta = ImageMeta(
        axes=axes,
        shape=tuple(int(s) for s in out.shape),
        dtype=str(out.dtype),
        voxel_size_um=meta.voxel_size_um,
        channel_names=tuple(names[i] for i in index),
        path=meta.path,
        extra=dict(meta.extra),
    )
    return out, new_meta


def _default_names(n: int) -> tuple[str, ...]:
    return tuple(f"ch{i}" for i in range(n))


def _finish(
    array: Any,
    axes: str,
    source: str | os.PathLike,
    fmt: str,
    voxel: Sequence[float | None],
    names: Sequence[str] | None,
    *,
    lazy: bool,
    validate: bool,
    extra: dict | None = None,
) -> tuple[Any, ImageMeta]:
    """Canonicalize, name channels, validate and build the ImageMeta."""
    source_axes = axes
    n_channels = array.shape[axes.index("C")] if "C" in axes else 1
    array, axes = canonicalize(array, axes, source)
    if not lazy and _is_dask(array):
        try:
            array = array.compute()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's problem
            raise InputError(source, f"corrupt or unreadable file: {_short(exc)}") from None
    names = [str(n) for n in (names or []) if n is not None]
    if len(names) != n_channels or len(set(names)) != len(names) or any(not n for n in names):
        names = list(_default_names(n_channels))
    if validate:
        _check_array(array, source, values=not _is_dask(array))
    voxel_t = tuple(None if v is None or not np.isfinite(v) or v <= 0 else float(v) for v in voxel)
    meta = ImageMeta(
        axes=axes,
        shape=tuple(int(s) for s in array.shape),
        dtype=str(np.dtype(array.dtype)),
        voxel_size_um=voxel_t,  # type: ignore[arg-type]
        channel_names=tuple(names),
        path=str(source),
        extra={"format": fmt, "source_axes": source_axes, **(extra or {})},
    )
    return array, meta


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# ----- format detection -------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of ``path`` from its suffix or folder layout.

    Returns one of ``"series"``, ``"ome-zarr"``, ``"ome-tiff"``, ``"tiff"``, ``"czi"``, ``"png"``, ``"jpeg"``.

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
    if name.endswith(".czi"):
        return "czi"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpeg"
    if name.endswith(("zarr.json", ".zattrs", ".zgroup")):
        return "ome-zarr"
    raise InputError(path, f"unknown image format {p.suffix or '(no extension)'!r}; supported: {SUPPORTED}")


def read_image(
    path: str | os.PathLike, *, lazy: bool = False, validate: bool = True
) -> tuple[Any, ImageMeta]:
    """Read an image in canonical ``(T)(C)ZYX`` order with its metadata.

    Parameters
    ----------
    path : path-like
        A TIFF / ImageJ hyperstack / OME-TIFF / CZI file, an OME-Zarr folder, a PNG/JPEG file, or a glob
        pattern (e.g. ``"stack/slice_*.png"``) of 2D slices of equal shape stacked into Z in natural order.
    lazy : bool
        Return a dask array where the format allows it (OME-Zarr, TIFF, CZI); otherwise numpy.
    validate : bool
        Check dimensions (2D to 5D), size (> 0) and, for data read into memory, that floats are finite.
        Constant images are accepted here; use :func:`check_image` for that.

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
        Missing file, unknown format, corrupt file, wrong number of dimensions, NaN/Inf values or size 0.
    """
    fmt = detect_format(path)
    kwargs = {"lazy": lazy, "validate": validate}
    try:
        if fmt == "series":
            return _read_series(str(path), **kwargs)
        if fmt == "ome-zarr":
            return _read_zarr(Path(path), **kwargs)
        if fmt in ("tiff", "ome-tiff"):
            return _read_tiff(Path(path), **kwargs)
        if fmt == "czi":
            return _read_czi(Path(path), **kwargs)
        return _read_raster(Path(path), fmt, **kwargs)
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, "too large to read into memory; try lazy=True") from None
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


def _read_tiff(path: Path, *, lazy: bool, validate: bool) -> tuple[Any, ImageMeta]:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable TIFF: {_short(exc)}") from None
    with tif:
        if not tif.series:
            raise InputError(path, "TIFF file holds no image")
        series = tif.series[0]
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
    return _finish(data, axes, path, fmt, voxel, names, lazy=lazy, validate=validate)


# ----- CZI (bioio) ------------------------------------------------------------------------------------------


def _read_czi(path: Path, *, lazy: bool, validate: bool) -> tuple[Any, ImageMeta]:
    try:
        import bioio_czi
        from bioio import BioImage
    except ImportError:  # pragma: no cover - bioio-czi is a dependency
        raise InputError(path, "reading CZI needs the bioio-czi package (pip install bioio-czi)") from None
    try:
        image = BioImage(path, reader=bioio_czi.Reader)
        dims = image.dims.order
        data = image.dask_data
        pps = image.physical_pixel_sizes
        names = [str(n) for n in (image.channel_names or [])]
        n_scenes = len(image.scenes)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable CZI file: {_short(exc)}") from None
    index, axes = resolve_axes(dims, data.shape, path)
    data = _apply(data, index)
    voxel = (pps.Z, pps.Y, pps.X)
    return _finish(
        data, axes, path, "czi", voxel, names, lazy=lazy, validate=validate, extra={"scenes": n_scenes}
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


def _read_zarr(path: Path, *, lazy: bool, validate: bool) -> tuple[Any, ImageMeta]:
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
        return _finish(data, axes, path, "zarr", (None, None, None), None, lazy=lazy, validate=validate)
    attrs = _zarr_image_attrs(node)
    if attrs is None and "0" in node and isinstance(node["0"], zarr.Group):  # bioformats2raw layout
        node = node["0"]
        attrs = _zarr_image_attrs(node)
    if attrs is None:
        raise InputError(path, "Zarr group without OME-NGFF 'multiscales' metadata")
    ms = attrs["multiscales"][0]
    version = str(attrs.get("version") or ms.get("version") or "")
    axes_meta = ms.get("axes") or ["t", "c", "z", "y", "x"][-node[ms["datasets"][0]["path"]].ndim :]
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
    dataset = ms["datasets"][0]
    arr = node[dataset["path"]]
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
    return _finish(data, letters, path, "ome-zarr", voxel, names, lazy=lazy, validate=validate, extra=extra)


# ----- PNG / JPEG and slice series --------------------------------------------------------------------------


def _read_plane(path: Path) -> np.ndarray:
    """One 2D plane (Y, X) or colour plane (Y, X, S) from PNG, JPEG or TIFF."""
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        import tifffile

        return np.asarray(tifffile.imread(path))
    if not name.endswith(RASTER_SUFFIXES):
        raise InputError(path, f"unknown slice format {path.suffix!r}; slices must be PNG, JPEG or TIFF")
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(im).astype(np.uint16)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode == "LA":
            im = im.convert("L")
        arr = np.asarray(im)
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


def _read_raster(path: Path, fmt: str, *, lazy: bool, validate: bool) -> tuple[Any, ImageMeta]:
    try:
        plane = _read_plane(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"corrupt or unreadable {fmt.upper()} file: {_short(exc)}") from None
    data, axes = _plane_axes(plane, path)
    names = ["red", "green", "blue"] if axes == "YXC" else None
    return _finish(data, axes, path, fmt, (None, None, None), names, lazy=False, validate=validate)


def _read_series(pattern: str, *, lazy: bool, validate: bool) -> tuple[Any, ImageMeta]:
    files = sorted(_glob.glob(pattern), key=lambda f: natural_key(os.path.basename(f)))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise InputError(pattern, "no files match this pattern")
    planes: list[np.ndarray] = []
    axes = ""
    for f in files:
        try:
            plane = _read_plane(Path(f))
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
    data = np.stack(planes)
    axes = "Z" + axes
    names = ["red", "green", "blue"] if "C" in axes else None
    extra = {"files": [str(f) for f in files]}
    return _finish(
        data, axes, pattern, "series", (None, None, None), names, lazy=False, validate=validate, extra=extra
    )


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; InputError when missing or malformed."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "file not found")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not valid JSON: {_short(exc)}") from None
