"""Writers: OME-TIFF and OME-Zarr images with axes, voxel size and channel names; tables. Every write is atomic."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from stainfree.io.atomic import atomic_path


def write_ome_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    axes: str,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    compression: str | None = "zlib",
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
    with atomic_path(path) as tmp:
        tmp = tmp.with_name(tmp.name)  # same temporary name; tifffile must not add a suffix
        tifffile.imwrite(tmp, array, ome=True, metadata=metadata, compression=compression, photometric="minisblack")
    return Path(path)
