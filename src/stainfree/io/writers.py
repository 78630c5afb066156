"""Writers: OME-TIFF and OME-Zarr images with axes, voxel size and channel names; tables, JSON, PNG.

OME-Zarr pixels are written block by block (bounded memory) with zarr; the NGFF metadata (multiscales,
omero, labels and image-label) through the ``ome-zarr`` library, for NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3).
Every write is atomic (through :func:`stainfree.io.atomic.atomic_path`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tifffile

from stainfree.errors import InputError
from stainfree.io.atomic import atomic_path


def write_ome_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    axes: str,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    compression: str | None = "zlib",
    description: str | None = None,
) -> Path:
    """Write an array as OME-TIFF, atomically.

    Parameters
    ----------
    path : path-like
        Destination ending in ``.ome.tif`` or ``.ome.tiff``.
    array : ndarray
        Image data in the order given by ``axes``.
    axes : str
        Subsequence of ``"TCZYX"`` naming the axes of ``array``.
    voxel_size_um : sequence of 3 floats or None
        Physical size (z, y, x) in micrometres.
    channel_names : sequence of str, optional
        One name per channel when ``axes`` has ``C``.
    compression : str or None
        tifffile compression (``"zlib"`` by default; None for none).
    description : str, optional
        Text of the OME ``Image/Description`` element (e.g. JSON of a registration transform).

    Returns
    -------
    Path
        The written path.
    """
    array = np.asarray(array)
    if len(axes) != array.ndim:
        raise ValueError(f"axes {axes!r} do not match an array of {array.ndim} dimensions")
    metadata: dict = {"axes": axes}
    z, y, x = voxel_size_um
    if x is not None:
        metadata["PhysicalSizeX"] = float(x)
        metadata["PhysicalSizeXUnit"] = "µm"
    if y is not None:
        metadata["PhysicalSizeY"] = float(y)
        metadata["PhysicalSizeYUnit"] = "µm"
    if z is not None and "Z" in axes:
        metadata["PhysicalSizeZ"] = float(z)
        metadata["PhysicalSizeZUnit"] = "µm"
    if channel_names is not None and "C" in axes:
        metadata["Channel"] = {"Name": list(channel_names)}
    if description is not None:
        metadata["Description"] = str(description)
    # tifffile puts a random UUID into the OME-XML; derive it from the content: equal inputs, equal bytes
    metadata["UUID"] = _content_uuid(
        array, json.dumps(metadata, sort_keys=True, default=str), str(compression)
    )
    with atomic_path(path) as tmp:
        tmp = tmp.with_name(tmp.name)  # same temporary name; tifffile must not add a suffix
        tifffile.imwrite(
            tmp, array, ome=True, metadata=metadata, compression=compression, photometric="minisblack"
        )
    return Path(path)


def _content_uuid(array: np.ndarray, *parts: str) -> str:
    """A UUID (URN form) derived from the array's bytes, shape, dtype and ``parts``."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}|{array.dtype.str}|".encode())
    for part in parts:
        digest.update(part.encode())
    digest.update(np.ascontiguousarray(array).data.cast("B"))
    return f"urn:uuid:{uuid.UUID(bytes=digest.digest(), version=4)}"


# ----- OME-Zarr ----------------------------------------------------------------------------------------

_CANONICAL = "TCZYX"
_COLORS = ("FF0000", "00FF00", "0000FF", "FF00FF", "00FFFF", "FFFF00")


def _check_axes(axes: str, ndim: int) -> None:
    if len(axes) != ndim:
        raise ValueError(f"axes {axes!r} do not match an array of {ndim} dimensions")
    order = [_CANONICAL.index(a) for a in axes if a in _CANONICAL]
    if len(order) != len(axes) or order != sorted(order) or len(set(axes)) != len(axes) or axes[-2:] != "YX":
        raise ValueError(f"axes {axes!r} must be a subsequence of 'TCZYX' ending in 'YX'")


def default_chunks(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    """Chunk shape for an OME-Zarr level: one time point and channel, up to 32 planes of 256 x 256 pixels."""
    limits = {"T": 1, "C": 1, "Z": 32, "Y": 256, "X": 256}
    return tuple(max(1, min(int(s), limits[a])) for s, a in zip(shape, axes, strict=True))


def _level_shapes(shape: Sequence[int], axes: str, n_scales: int) -> list[tuple[int, ...]]:
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(1, n_scales):
        prev = shapes[-1]
        shapes.append(tuple((s + 1) // 2 if a in "YX" else s for s, a in zip(prev, axes, strict=True)))
    return shapes


def ngff_axes(axes: str, voxel_size_um: Sequence[float | None]) -> list[dict]:
    """NGFF ``axes`` entries; space axes carry ``"micrometer"`` when their voxel size is known."""
    voxel = dict(zip("ZYX", voxel_size_um, strict=True))
    out = []
    for a in axes:
        kind = {"T": "time", "C": "channel"}.get(a, "space")
        entry: dict = {"name": a.lower(), "type": kind}
        if kind == "space" and voxel[a] is not None:
            entry["unit"] = "micrometer"
        out.append(entry)
    return out


def ngff_scale(axes: str, voxel_size_um: Sequence[float | None], level: int) -> list[float]:
    """NGFF ``scale`` of pyramid ``level`` (YX downsampled by 2 per level); unknown sizes are 1.0."""
    voxel = dict(zip("ZYX", voxel_size_um, strict=True))
    scale = []
    for a in axes:
        v = voxel.get(a)  # None for a non-spatial axis or an unknown size
        base = float(v) if v is not None else 1.0
        scale.append(base * (2**level if a in "YX" else 1))
    return scale


class OmeZarrWriter:
    """An OME-Zarr image being written block by block into a temporary folder, renamed into place at the end.

    Write pixels into :attr:`array` (a ``zarr.Array`` of the full-resolution level), e.g.
    ``writer.array[:, z0:z1] = block`` or ``writer[...] = block``; then call :meth:`finalize`, which computes
    the lower-resolution levels chunk by chunk, writes the NGFF metadata and atomically moves the store to its
    path. Used as a context manager it finalizes on success and removes the temporary store on error.

    Create it with :func:`create_ome_zarr`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        dtype: npt.DTypeLike,
        axes: str,
        voxel_size_um: Sequence[float | None] = (None, None, None),
        channel_names: Sequence[str] | None = None,
        chunks: Sequence[int] | None = None,
        n_scales: int = 1,
        ngff_version: str = "0.4",
    ) -> None:
        import zarr

        shape = tuple(int(s) for s in shape)
        _check_axes(axes, len(shape))
        if ngff_version not in ("0.4", "0.5"):
            raise ValueError(f"ngff_version must be '0.4' or '0.5', not {ngff_version!r}")
        if n_scales < 1:
            raise ValueError("n_scales must be at least 1")
        n_channels = shape[axes.index("C")] if "C" in axes else 1
        names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(n_channels)]
        if len(names) != n_channels:
            raise ValueError(f"{len(names)} channel names for {n_channels} channel(s)")
        self.path = Path(path)
        self.axes = axes
        self.voxel_size_um = tuple(None if v is None else float(v) for v in voxel_size_um)
        self.channel_names = names
        self.ngff_version = ngff_version
        self._context = atomic_path(path)
        self._tmp = self._context.__enter__()
        self._open = True
        try:
            zarr_format: Literal[2, 3] = 2 if ngff_version == "0.4" else 3
            self._group = zarr.open_group(str(self._tmp), mode="w", zarr_format=zarr_format)
            self.levels = []
            for level, level_shape in enumerate(_level_shapes(shape, axes, n_scales)):
                level_chunks = tuple(
                    min(c, s)
                    for c, s in zip(chunks or default_chunks(level_shape, axes), level_shape, strict=True)
                )
                kwargs: dict = {"dimension_names": [a.lower() for a in axes]}
                if zarr_format == 2:
                    kwargs = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
                self.levels.append(
                    self._group.create_array(
                        str(level), shape=level_shape, dtype=np.dtype(dtype), chunks=level_chunks, **kwargs
                    )
                )
        except BaseException as exc:
            self.abort(exc)
            raise
        self.array = self.levels[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value

    def __enter__(self) -> OmeZarrWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            self.finalize()
        else:
            self.abort(exc)

    def _downsample(self) -> None:
        """Fill level k from level k-1 by taking every second pixel in Y and X, in bounded blocks."""
        y, x = self.axes.index("Y"), self.axes.index("X")
        for src, dst in zip(self.levels[:-1], self.levels[1:], strict=False):
            lead_steps = [dst.chunks[i] for i in range(src.ndim) if i not in (y, x)]
            lead_shape = [src.shape[i] for i in range(src.ndim) if i not in (y, x)]
            tile_y, tile_x = 4 * dst.chunks[y], 4 * dst.chunks[x]
            starts = [range(0, n, step) for n, step in zip(lead_shape, lead_steps, strict=True)]
            for lead in itertools.product(*starts):
                lead_idx = tuple(slice(s, s + step) for s, step in zip(lead, lead_steps, strict=True))
                for y0 in range(0, src.shape[y], tile_y):
                    for x0 in range(0, src.shape[x], tile_x):
                        block = np.asarray(src[(*lead_idx, slice(y0, y0 + tile_y), slice(x0, x0 + tile_x))])
                        small = block[..., ::2, ::2]
                        ys, xs = y0 // 2, x0 // 2
                        dst[(*lead_idx, slice(ys, ys + small.shape[-2]), slice(xs, xs + small.shape[-1]))] = (
                            small
                        )

    def _datasets(self) -> list[dict]:
        return [
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": ngff_scale(self.axes, self.voxel_size_um, level)}
                ],
            }
            for level in range(len(self.levels))
        ]

    def _omero(self) -> dict:
        """Channel names, colours and display windows (the ``omero`` block viewers read)."""
        smallest = np.asarray(self.levels[-1][...])
        if "C" in self.axes:
            smallest = np.moveaxis(smallest, self.axes.index("C"), 0)
        else:
            smallest = smallest[None]
        dtype = np.dtype(self.array.dtype)
        channels = []
        for i, name in enumerate(self.channel_names):
            lo, hi = (float(smallest[i].min()), float(smallest[i].max())) if smallest[i].size else (0.0, 1.0)
            if dtype.kind in "ui":
                full = (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max))
            elif dtype.kind == "b":
                full = (0.0, 1.0)
            else:
                full = (lo, hi)
            color = "FFFFFF" if len(self.channel_names) == 1 else _COLORS[i % len(_COLORS)]
            channels.append(
                {
                    "label": name,
                    "color": color,
                    "active": True,
                    "window": {"min": full[0], "max": full[1], "start": lo, "end": hi},
                }
            )
        return {"channels": channels, "rdefs": {"model": "greyscale" if len(channels) == 1 else "color"}}

    def _format(self) -> Any:
        from ome_zarr.format import FormatV04, FormatV05

        return FormatV04() if self.ngff_version == "0.4" else FormatV05()

    def add_labels(
        self,
        name: str,
        labels: np.ndarray,
        *,
        colors: dict[int, Sequence[int]] | None = None,
        properties: dict[int, str] | None = None,
    ) -> None:
        """Add a label image (same axes as the image, without C) as the NGFF ``labels/<name>`` group.

        Parameters
        ----------
        name : str
            Name of the label image.
        labels : ndarray
            Integer labels, shape of the image without its channel axis.
        colors : dict, optional
            RGBA (0-255) per label value, written as ``image-label`` colours.
        properties : dict, optional
            A name per label value, written as ``image-label`` properties (``class``).
        """
        labels = np.asarray(labels)
        expected = tuple(s for a, s in zip(self.axes, self.array.shape, strict=True) if a != "C")
        if labels.shape != expected or labels.dtype.kind not in "ui":
            raise ValueError(
                f"labels must be integers of shape {expected}, got {labels.dtype} {labels.shape}"
            )
        arrays = self._label_arrays(name, labels.dtype, colors, properties, None, all_levels=True)
        level = labels
        for arr in arrays:
            arr[...] = level
            level = level[..., ::2, ::2]

    def create_labels(
        self,
        name: str,
        dtype: npt.DTypeLike,
        *,
        colors: dict[int, Sequence[int]] | None = None,
        properties: dict[int, str] | None = None,
        chunks: Sequence[int] | None = None,
    ) -> Any:
        """An empty NGFF label image ``labels/<name>`` to be filled block by block (e.g. frame by frame).

        Only for single-resolution images (``n_scales=1``). Parameters as :meth:`add_labels`; ``chunks``
        of the label array (default :func:`default_chunks`).

        Returns
        -------
        zarr.Array
            The full-resolution label array (the image's shape without C), zeros until written.
        """
        if len(self.levels) != 1:
            raise ValueError("create_labels needs a single-resolution image (n_scales=1); use add_labels")
        return self._label_arrays(name, np.dtype(dtype), colors, properties, chunks, all_levels=False)[0]

    def _label_arrays(
        self,
        name: str,
        dtype: np.dtype,
        colors: dict[int, Sequence[int]] | None,
        properties: dict[int, str] | None,
        chunks: Sequence[int] | None,
        *,
        all_levels: bool,
    ) -> list[Any]:
        """Create the label group's arrays (one per level) and write its NGFF metadata."""
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

        axes = self.axes.replace("C", "")
        if np.dtype(dtype).kind not in "ui":
            raise ValueError(f"labels must be integers, got {dtype}")
        if colors and properties and set(colors) != set(properties):
            raise ValueError("labels: colours and properties must name the same label values (NGFF)")
        root = self._group.require_group("labels")
        group = root.create_group(name)
        kwargs: dict = {"dimension_names": [a.lower() for a in axes]}
        if self.ngff_version == "0.4":
            kwargs = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        shape = tuple(s for a, s in zip(self.axes, self.array.shape, strict=True) if a != "C")
        arrays, datasets = [], []
        for k in range(len(self.levels) if all_levels else 1):
            level_chunks = tuple(
                min(c, s) for c, s in zip(chunks or default_chunks(shape, axes), shape, strict=True)
            )
            arrays.append(group.create_array(str(k), shape=shape, dtype=dtype, chunks=level_chunks, **kwargs))
            datasets.append(
                {
                    "path": str(k),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": ngff_scale(axes, self.voxel_size_um, k)}
                    ],
                }
            )
            shape = (*shape[:-2], (shape[-2] + 1) // 2, (shape[-1] + 1) // 2)
        fmt = self._format()
        write_multiscales_metadata(
            group, datasets, fmt=fmt, axes=ngff_axes(axes, self.voxel_size_um), name=name
        )
        write_label_metadata(  # the image-label block, and the name in the labels group's list
            root,
            name,
            colors=[
                {"label-value": int(v), "rgba": [int(c) for c in rgba]} for v, rgba in (colors or {}).items()
            ],
            properties=[{"label-value": int(v), "class": str(n)} for v, n in (properties or {}).items()],
            fmt=fmt,
        )
        if self.ngff_version == "0.5":  # ome-zarr leaves the version out of the labels group's ome block
            ome = root.attrs.get("ome")
            root.attrs["ome"] = {**(ome if isinstance(ome, dict) else {}), "version": "0.5"}
        return arrays

    def finalize(self) -> Path:
        """Compute the pyramid, write the NGFF metadata and move the store to its path; returns the path."""
        if not self._open:
            raise RuntimeError("this OME-Zarr writer is already closed")
        try:
            from ome_zarr.writer import write_multiscales_metadata

            self._downsample()
            write_multiscales_metadata(
                self._group,
                self._datasets(),
                fmt=self._format(),
                axes=ngff_axes(self.axes, self.voxel_size_um),
                name=self.path.name.split(".")[0],
                metadata={"omero": self._omero()},
            )
        except BaseException as exc:
            self.abort(exc)
            raise
        self._open = False
        self._context.__exit__(None, None, None)
        return self.path

    def abort(self, exc: BaseException | None = None) -> None:
        """Remove the temporary store; the destination is left untouched."""
        if not self._open:
            return
        self._open = False
        exc = exc or RuntimeError("aborted")
        try:
            self._context.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException:  # noqa: BLE001 - atomic_path re-raises the error it was given
            pass


def create_ome_zarr(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: npt.DTypeLike,
    axes: str,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    chunks: Sequence[int] | None = None,
    n_scales: int = 1,
    ngff_version: str = "0.4",
) -> OmeZarrWriter:
    """Start an OME-Zarr image to be filled block by block (bounded memory); see :class:`OmeZarrWriter`.

    Parameters
    ----------
    path : path-like
        Destination folder (``.ome.zarr``); replaced atomically by :meth:`OmeZarrWriter.finalize`.
    shape, dtype : sequence of int, dtype
        Full-resolution shape and pixel type.
    axes : str
        Subsequence of ``"TCZYX"`` ending in ``"YX"``.
    voxel_size_um : sequence of 3 floats or None
        Physical size (z, y, x) in micrometres.
    channel_names : sequence of str, optional
        One name per channel (``ch0``, ``ch1``, ... by default).
    chunks : sequence of int, optional
        Chunk shape (default :func:`default_chunks`).
    n_scales : int
        Number of pyramid levels; Y and X are halved per level.
    ngff_version : {"0.4", "0.5"}
        NGFF 0.4 (Zarr v2, widest tool support) or 0.5 (Zarr v3).

    Returns
    -------
    OmeZarrWriter
        Write into ``writer.array`` (a ``zarr.Array``), then call ``writer.finalize()`` (or use ``with``).
    """
    return OmeZarrWriter(
        path, shape, dtype, axes, voxel_size_um, channel_names, chunks, n_scales, ngff_version
    )


def write_ome_zarr(
    path: str | os.PathLike,
    array: Any,
    axes: str,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    chunks: Sequence[int] | None = None,
    n_scales: int = 1,
    ngff_version: str = "0.4",
) -> Path:
    """Write an array (numpy or dask) as an OME-NGFF multiscale image, atomically.

    Parameters are those of :func:`create_ome_zarr`; ``array`` is in the order given by ``axes``. Lower
    levels take every second pixel in Y and X (exact for label images). Dask arrays are written chunk by
    chunk.

    Returns
    -------
    Path
        The written store.
    """
    is_dask = type(array).__module__.startswith("dask")
    if not is_dask:
        array = np.asarray(array)
    with create_ome_zarr(
        path, array.shape, array.dtype, axes, voxel_size_um, channel_names, chunks, n_scales, ngff_version
    ) as writer:
        if is_dask:
            import dask.array as da

            # dask annotates targets as array-likes; any object with __setitem__ (a zarr.Array) is accepted
            da.store(array.rechunk(writer.array.chunks), writer.array, lock=False)  # type: ignore[arg-type]
        else:
            writer.array[...] = array
    return Path(path)


# ----- tables, JSON, PNG -------------------------------------------------------------------------------


def write_table(path: str | os.PathLike, df: Any) -> Path:
    """Write a pandas DataFrame as ``.csv`` or ``.parquet`` (by suffix), atomically, without the index."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(
            path, f"unsupported table format {suffix or '(no extension)'!r}; use .csv or .parquet"
        )
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (sorted keys, indent 2, numpy scalars and arrays converted), atomically."""
    text = json.dumps(obj, sort_keys=True, indent=2, default=_json_default, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 grey (Y, X), RGB (Y, X, 3) or RGBA (Y, X, 4) image, or a uint16 grey image, as PNG."""
    from PIL import Image

    image = np.asarray(image)
    ok = (
        image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)))
    ) or (image.dtype == np.uint16 and image.ndim == 2)
    if not ok:
        raise ValueError(
            f"write_png needs uint8 (Y, X[, 3|4]) or uint16 (Y, X), got {image.dtype} {image.shape}"
        )
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return Path(path)
