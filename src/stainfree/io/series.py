"""Frame-by-frame writers for time-lapse outputs: OME-Zarr stores filled one time point at a time, and
OME-TIFFs streamed page by page from them (memory: one frame).

Used by time-lapse segmentation (:mod:`stainfree.inference.segment_series`): ``<name>_masks.ome.zarr``
(TCZYX uint8, one named channel per compartment), ``<name>.ome.zarr`` (TZYX float32 Nile Red intensity with
the label map as the NGFF label image ``labels/compartments``), then ``<name>_masks.ome.tif`` and
``<name>_labels.ome.tif`` streamed from the stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from stainfree.io.atomic import atomic_path
from stainfree.io.writers import create_ome_zarr

__all__ = ["SegmentationSeriesWriter", "write_ome_tiff_frames"]


def _ome_metadata(
    axes: str, voxel_size_um: Sequence[float | None], channel_names: Sequence[str] | None
) -> dict:
    meta: dict[str, Any] = {"axes": axes}
    z, y, x = voxel_size_um
    for key, v in (("X", x), ("Y", y)):
        if v is not None:
            meta[f"PhysicalSize{key}"] = float(v)
            meta[f"PhysicalSize{key}Unit"] = "µm"
    if z is not None and "Z" in axes:
        meta["PhysicalSizeZ"] = float(z)
        meta["PhysicalSizeZUnit"] = "µm"
    if channel_names is not None and "C" in axes:
        meta["Channel"] = {"Name": list(channel_names)}
    return meta


def write_ome_tiff_frames(
    path: str | os.PathLike,
    read_frame: Callable[[int], np.ndarray],
    n_frames: int,
    frame_shape: Sequence[int],
    dtype: Any,
    axes: str,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    compression: str | None = "zlib",
) -> Path:
    """Write a (T, ...) OME-TIFF one frame at a time, atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.ome.tif``.
    read_frame : callable
        ``read_frame(t)`` -> frame ``t`` of shape ``frame_shape`` (called twice per frame: a content hash
        for the OME UUID, then the pages).
    n_frames, frame_shape, dtype : the series' size and pixel type.
    axes : str
        Axes of the whole series, starting with ``T`` (e.g. ``"TCZYX"``).
    voxel_size_um, channel_names : metadata as in :func:`stainfree.io.writers.write_ome_tiff`.
    compression : str or None
        tifffile compression.

    Returns
    -------
    Path
    """
    shape = (int(n_frames), *(int(s) for s in frame_shape))
    if len(axes) != len(shape) or axes[0] != "T":
        raise ValueError(f"axes {axes!r} must start with T and match a series of shape {shape}")
    dtype = np.dtype(dtype)
    meta = _ome_metadata(axes, voxel_size_um, channel_names)
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    h.update(str((shape, dtype.str, compression)).encode())
    for t in range(n_frames):
        h.update(np.ascontiguousarray(read_frame(t), dtype=dtype).tobytes())
    meta["UUID"] = str(uuid.UUID(bytes=h.digest()[:16], version=4))

    def pages() -> Iterator[np.ndarray]:
        for t in range(n_frames):
            frame = np.ascontiguousarray(read_frame(t), dtype=dtype)
            yield from frame.reshape(-1, *shape[-2:])

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            pages(),
            shape=shape,
            dtype=dtype,
            ome=True,
            metadata=meta,
            compression=compression,
            photometric="minisblack",
        )
    return Path(path)


class SegmentationSeriesWriter:
    """The outputs of a segmented time-lapse, filled frame by frame.

    Parameters
    ----------
    out_dir : folder of the outputs.
    name : file stem.
    n_frames : number of time points.
    spatial_shape : (Z, Y, X) of one frame.
    channel_names : the mask channels (compartments).
    voxel_size_um : (z, y, x) in um or None.
    colors, properties : colour (RGBA) and name per label value of the NGFF label image.

    Use :meth:`write` for every frame, then :meth:`finalize` (or :meth:`abort` on error).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        name: str,
        n_frames: int,
        spatial_shape: Sequence[int],
        channel_names: Sequence[str],
        voxel_size_um: Sequence[float | None] = (None, None, None),
        colors: dict[int, Sequence[int]] | None = None,
        properties: dict[int, str] | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.name = name
        self.n_frames = int(n_frames)
        self.spatial = tuple(int(s) for s in spatial_shape)
        self.channel_names = list(channel_names)
        self.voxel_size_um = tuple(voxel_size_um)
        n_c = len(self.channel_names)
        frame_chunks = (1, 1, *self.spatial)
        self.masks = create_ome_zarr(
            self.out / f"{name}_masks.ome.zarr",
            (self.n_frames, n_c, *self.spatial),
            np.uint8,
            "TCZYX",
            voxel_size_um,
            self.channel_names,
            chunks=frame_chunks,
        )
        try:
            self.image = create_ome_zarr(
                self.out / f"{name}.ome.zarr",
                (self.n_frames, *self.spatial),
                np.float32,
                "TZYX",
                voxel_size_um,
                ["nile_red_intensity"],
                chunks=(1, *self.spatial),
            )
            self.labels = self.image.create_labels(
                "compartments", np.uint8, colors=colors, properties=properties, chunks=(1, *self.spatial)
            )
        except BaseException as exc:
            self.masks.abort(exc)
            raise

    def write(self, t: int, masks: np.ndarray, labels: np.ndarray, intensity: np.ndarray) -> None:
        """Write frame ``t``: masks (C, Z, Y, X), label map and intensity (Z, Y, X)."""
        self.masks.array[t] = np.asarray(masks, np.uint8)
        self.labels[t] = np.asarray(labels, np.uint8)
        self.image.array[t] = np.asarray(intensity, np.float32).reshape(self.spatial)

    def finalize(self) -> dict[str, Path]:
        """Close the stores and stream the OME-TIFFs from them; returns the written paths."""
        masks_zarr = self.masks.finalize()
        ngff = self.image.finalize()
        import zarr

        m = zarr.open_array(str(masks_zarr / "0"), mode="r")
        lab = zarr.open_array(str(ngff / "labels" / "compartments" / "0"), mode="r")
        n_c = len(self.channel_names)
        paths = {
            "masks_zarr": masks_zarr,
            "ngff": ngff,
            "masks": write_ome_tiff_frames(
                self.out / f"{self.name}_masks.ome.tif",
                lambda t: np.asarray(m[t]),
                self.n_frames,
                (n_c, *self.spatial),
                np.uint8,
                "TCZYX",
                self.voxel_size_um,
                self.channel_names,
            ),
            "labels": write_ome_tiff_frames(
                self.out / f"{self.name}_labels.ome.tif",
                lambda t: np.asarray(lab[t]),
                self.n_frames,
                self.spatial,
                np.uint8,
                "TZYX",
                self.voxel_size_um,
            ),
        }
        return paths

    def abort(self, exc: BaseException | None = None) -> None:
        """Remove the temporary stores."""
        self.masks.abort(exc)
        self.image.abort(exc)
