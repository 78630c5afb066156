"""Multiscale levels of the engine's OME-Zarr outputs, computed chunk by chunk on the cluster after level 0.

Level ``k`` halves Y and X of level ``k - 1`` (and Z too, while the Z voxel size of level ``k - 1`` is no
larger than its Y/X voxel size: a near-isotropic volume keeps near-isotropic voxels; a stack of thick
sections keeps its planes; without a known voxel size Z is never halved). Intensities (float arrays) are
averaged over each 2 x 2 (x 2) neighbourhood (edge voxels repeated where a side is odd); masks and label maps
(integer arrays) take every second voxel, so that their values stay labels. Every task writes one chunk of
the new level (the chunks of level 0), so no two tasks write the same chunk. By default levels are added
until the smaller of Y and X is at most :data:`PYRAMID_MIN_SIDE` (:func:`default_levels`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.execute.records import local_dask

__all__ = ["PYRAMID_MIN_SIDE", "build_pyramid", "default_levels", "level_factors", "level_scales"]

#: Levels are added (by default) until the smaller of Y and X is at most this many pixels.
PYRAMID_MIN_SIDE = 512


def default_levels(shape_yx: Sequence[int], min_side: int = PYRAMID_MIN_SIDE) -> int:
    """Levels beyond level 0 until the smaller of Y and X is at most ``min_side`` (0 for small images)."""
    side, n = min(int(s) for s in shape_yx), 0
    while side > min_side:
        side, n = (side + 1) // 2, n + 1
    return n


def level_factors(
    axes: str, voxel_size_um: Sequence[float | None], shape: Sequence[int], levels: int | None = None
) -> list[dict[str, int]]:
    """The downsampling factor of each spatial axis (``{"z": 1, "y": 2, "x": 2}``) from level ``k - 1`` to
    level ``k``, for ``k = 1..levels`` (None: :func:`default_levels`; 0: none)."""
    sizes = dict(zip(axes, (int(s) for s in shape), strict=True))
    if levels is None:
        levels = default_levels((sizes["Y"], sizes["X"]))
    voxel = dict(zip("ZYX", voxel_size_um, strict=True))
    z, yx = voxel["Z"], voxel["Y"]
    out = []
    for _ in range(levels):
        halve_z = "Z" in sizes and z is not None and yx is not None and z <= yx and sizes["Z"] > 1
        factors = {"z": 2 if halve_z else 1, "y": 2, "x": 2}
        out.append(factors)
        for a in sizes:
            sizes[a] = -(-sizes[a] // factors.get(a.lower(), 1))
        yx = None if yx is None else yx * 2
        z = None if z is None else z * (2 if halve_z else 1)
    return out


def level_scales(axes: str, base: Sequence[float], factors: Sequence[dict[str, int]]) -> list[list[float]]:
    """NGFF ``scale`` of every level of an array of ``axes``: level 0's ``base`` times the factors so far."""
    scales = [[float(b) for b in base]]
    for f in factors:
        scales.append([s * f.get(a.lower(), 1) for s, a in zip(scales[-1], axes, strict=True)])
    return scales


def downsample(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """One level down: the mean over each ``factors`` neighbourhood (floats; edge voxels repeated where a
    side is odd) or every ``factors``-th voxel (integers: masks and labels)."""
    if block.dtype.kind != "f":
        return np.ascontiguousarray(block[tuple(slice(None, None, f) for f in factors)])
    pad = [(0, (-n) % f) for n, f in zip(block.shape, factors, strict=True)]
    x = np.pad(block, pad, mode="edge") if any(p for _, p in pad) else block
    shape = [v for n, f in zip(x.shape, factors, strict=True) for v in (n // f, f)]
    return x.reshape(shape).mean(axis=tuple(range(1, 2 * x.ndim, 2)), dtype=np.float64).astype(block.dtype)


@local_dask
def downsample_chunks(src: str, dst: str, factors: list[int], regions: list[list[list[int]]]) -> int:
    """Fill ``regions`` (``[[start, stop], ...]`` per axis, chunks of ``dst``) of one level from the next
    finer level ``src``."""
    import zarr

    a = zarr.open_array(src, mode="r")
    b = zarr.open_array(dst, mode="r+")
    for region in regions:
        read = tuple(
            slice(s * f, min(e * f, n)) for (s, e), f, n in zip(region, factors, a.shape, strict=True)
        )
        b[tuple(slice(s, e) for s, e in region)] = downsample(np.asarray(a[read]), factors)
    return len(regions)


def _regions(shape: Sequence[int], chunks: Sequence[int]) -> list[list[list[int]]]:
    starts = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    return [
        [[s, min(s + c, n)] for s, c, n in zip(start, chunks, shape, strict=True)]
        for start in itertools.product(*starts)
    ]


def build_pyramid(
    client: Any,
    store: str | Path,
    groups: Sequence[str],
    factors: Sequence[dict[str, int]],
    per_task: int = 8,
) -> None:
    """Add levels ``1..len(factors)`` beside level ``0`` of each multiscale group of ``store``.

    Parameters
    ----------
    client : distributed.Client
        Where the chunks are computed.
    store : path
        A Zarr v3 store (the engine's working store) whose arrays carry dimension names.
    groups : sequence of str
        Groups holding a level ``0`` array (``""`` for the image, ``"labels/compartments"``...).
    factors : sequence of dict
        From :func:`level_factors`; axes without a factor (t, c) keep their size.
    per_task : int
        Chunks computed by one task.
    """
    import zarr

    for group_path in groups:
        folder = Path(store) / group_path
        group = zarr.open_group(str(folder), mode="r+")
        base: Any = zarr.open_array(str(folder / "0"), mode="r")
        previous: Any = base
        names = [str(n) for n in (base.metadata.dimension_names or ())]
        for level, f in enumerate(factors, start=1):
            axis_factors = [f.get(n, 1) for n in names]
            shape = tuple(-(-int(n) // k) for n, k in zip(previous.shape, axis_factors, strict=True))
            chunks = tuple(min(int(c), s) for c, s in zip(base.chunks, shape, strict=True))
            array = group.create_array(
                str(level),
                shape=shape,
                dtype=previous.dtype,
                chunks=chunks,
                dimension_names=names,
                fill_value=0,
                overwrite=True,
            )
            regions = _regions(shape, chunks)
            batches = [regions[i : i + per_task] for i in range(0, len(regions), per_task)]
            src, dst = str(folder / str(level - 1)), str(folder / str(level))
            client.gather(
                [client.submit(downsample_chunks, src, dst, axis_factors, b, pure=False) for b in batches]
            )
            previous = array


def multiscale_datasets(
    axes: str, voxel_size_um: Sequence[float | None], factors: Sequence[dict[str, int]] | None
) -> list[dict[str, Any]]:
    """The NGFF ``datasets`` of level 0 and the levels of ``factors`` (each ``scale`` its factors times the
    previous one's)."""
    from stainfree.io.writers import ngff_scale

    scales = level_scales(axes, ngff_scale(axes, voxel_size_um, 0), factors or [])
    return [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": s}]}
        for k, s in enumerate(scales)
    ]
