"""Format-independent image helpers: axes, validation, statistics and channel selection.

The per-format readers in :mod:`stainfree.io.readers` use these to bring every file into canonical
``(T)(C)ZYX`` order; they also serve callers that hold an array already.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.types import ImageMeta

CANONICAL = "TCZYX"
ChannelRef = str | int


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


# ----- size and pixel-type limits (checked before any pixel is read) -------------------------------------

#: More channels than this is taken as a misread header, not a microscope image.
MAX_CHANNELS = 256


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_size(
    shape: Sequence[int],
    dtype: Any,
    source: str | os.PathLike,
    max_bytes: int | None,
    *,
    what: str = "image",
) -> int:
    """Refuse an array whose header-claimed size exceeds ``max_bytes``, before anything is allocated.

    Parameters
    ----------
    shape, dtype
        What the file's header claims.
    source : path-like or str
        Named in the error.
    max_bytes : int or None
        Limit in bytes; None means the memory available now (no limit where that is unknown).
    what : str
        What the size is of (``"image"``, ``"chunk"``), for the message.

    Returns
    -------
    int
        The claimed size in bytes.

    Raises
    ------
    InputError
        When the claimed size is over the limit.
    """
    itemsize = np.dtype(dtype).itemsize
    claimed = itemsize
    for s in shape:
        claimed *= int(s)
    limit = available_memory() if max_bytes is None else int(max_bytes)
    if limit is not None and claimed > limit:
        dims = " x ".join(str(int(s)) for s in shape)
        where = "max_bytes" if max_bytes is not None else "the memory available"
        raise InputError(
            source,
            f"header claims a {dims} {np.dtype(dtype)} {what} ({_fmt_bytes(claimed)}), more than {where} "
            f"({_fmt_bytes(limit)}); not read",
        )
    return claimed


def check_dtype(dtype: Any, source: str | os.PathLike) -> None:
    """Refuse pixel types that are not intensities or masks (complex, object, strings, dates, records)."""
    dt = np.dtype(dtype)
    if dt.kind not in "uifb":
        kind = {"c": "complex-valued", "O": "Python-object", "V": "record", "S": "text", "U": "text"}
        raise InputError(
            source,
            f"unsupported pixel type {dt} ({kind.get(dt.kind, 'not numeric')}); stainfree reads integer, "
            "float or boolean images",
        )


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
    check_dtype(array.dtype, source)
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


def _default_names(n: int) -> tuple[str, ...]:
    return tuple(f"ch{i}" for i in range(n))


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


# ----- channels by name or index ------------------------------------------------------------------------


def channel_indices(
    refs: Sequence[ChannelRef] | None, channel_names: Sequence[str], n_channels: int, source: str = "image"
) -> list[int]:
    """Indices of channels given by name or index.

    Parameters
    ----------
    refs : sequence of str or int, or None
        Channel names or indices (negative allowed); None selects every channel.
    channel_names : sequence of str
        Names of the image's channels (may be empty when unknown).
    n_channels : int
        Number of channels of the image.
    source : str
        Named in the error message.

    Returns
    -------
    list of int
        Channel indices.

    Raises
    ------
    InputError
        When a name or index does not exist.
    """
    if refs is None:
        return list(range(n_channels))
    out = []
    names = list(channel_names)
    for ref in refs:
        if isinstance(ref, str) and not ref.lstrip("-").isdigit():
            if ref not in names:
                known = ", ".join(names) if names else "none (the file has no channel names)"
                raise InputError(source, f"no channel named {ref!r}; channels: {known}")
            out.append(names.index(ref))
        else:
            i = int(ref)
            if not -n_channels <= i < n_channels:
                raise InputError(
                    source, f"channel index {i} out of range (the image has {n_channels} channel(s))"
                )
            out.append(i % n_channels)
    return out


# ----- the end of every reader ----------------------------------------------------------------------------


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
    max_bytes: int | None = None,
    extra: dict | None = None,
) -> tuple[Any, ImageMeta]:
    """Check pixel type, channel count and size (before reading), canonicalize, name channels, validate."""
    source_axes = axes
    n_channels = array.shape[axes.index("C")] if "C" in axes else 1
    check_dtype(array.dtype, source)
    if n_channels > MAX_CHANNELS:
        raise InputError(
            source,
            f"{n_channels} channels (more than {MAX_CHANNELS}): a misread header, not a microscope image",
        )
    if _is_dask(array):
        if lazy:
            check_size(array.chunksize, array.dtype, source, max_bytes, what="chunk")
        else:
            check_size(array.shape, array.dtype, source, max_bytes)
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


#: File name endings of TIFF files and of single-plane rasters.
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")


def _check_tiff_data(path: Path, series: Any, *, lazy: bool, max_bytes: int | None) -> None:
    """Pixel type, claimed size and truncation of a TIFF series, from its header alone."""
    check_dtype(series.dtype, path)
    pages = [p for p in series.pages if p is not None]
    if lazy:
        if pages:
            check_size(pages[0].shape, series.dtype, path, max_bytes, what="plane")
    else:
        check_size(series.shape, series.dtype, path, max_bytes)
    file_size = path.stat().st_size
    for page in pages:
        offsets = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        ends = [int(o) + int(c) for o, c in zip(offsets, counts, strict=False) if int(c) > 0]
        if ends and max(ends) > file_size:
            raise InputError(
                path,
                f"truncated file: image data runs to byte {max(ends)} but the file has {file_size} bytes",
            )
