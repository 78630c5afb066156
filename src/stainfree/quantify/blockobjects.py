"""Whole-object measurements of an object larger than a block, from parts measured block by block; pure
numpy/scipy/scikit-image.

:func:`stainfree.quantify.measure.measure_crop` needs the object's mask on its bounding box. For an object
as large as the field (extracellular) the block engine forms the same quantities from one part per block:

* moments: the int64 marginals of :func:`~stainfree.quantify.measure.marginals`, summed exactly;
* cell: voxels per cell (exact), or for objects of more than ``CELL_SAMPLE`` voxels the cells of every k-th
  voxel in raster order, from each block's voxel ranks (:func:`sample_ranks`; exact);
* mesh: the smoothed mask of :func:`~stainfree.quantify.measure.mesh_surface` (Gaussian on the object's
  padded box, ``mode="constant"``) is the same value for value on a window with the filter's radius as
  halo; each block meshes the cubes whose (clipped) lower corner it holds (:func:`owned`), so the triangles
  are those of the whole mesh and only the order of the area and volume sums differs (last bits).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["mesh_part", "owned", "padding", "sample_ranks", "smoothed"]

Region = tuple[slice, ...]


def padding(sigma: float) -> int:
    """The zero padding of :func:`~stainfree.quantify.measure.mesh_surface` around an object's box."""
    return max(2, math.ceil(3 * sigma) + 1) if sigma > 0 else 1


def owned(core: Region, shape: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, cubes: bool) -> Region | None:
    """The voxels (``cubes=False``) or cube lower corners (``cubes=True``) of the padded box ``[lo, hi)`` that
    block ``core`` holds: those whose position clipped to the field lies in the block (so the padding beyond
    the field goes to the border blocks and every voxel or cube to exactly one block)."""
    out = []
    for c, n, a, b in zip(core, shape, lo, hi, strict=True):
        start = int(a) if c.start == 0 else max(int(a), c.start)
        stop = int(b) - (1 if cubes else 0)
        stop = stop if c.stop == n else min(stop, c.stop)
        if start >= stop:
            return None
        out.append(slice(start, stop))
    return tuple(out)


def smoothed(read: object, region: Region, shape: tuple[int, ...], sigma: float, smooth: bool) -> np.ndarray:
    """The (smoothed) float32 mask of an object on ``region`` (global coordinates, may reach beyond the
    field), as in ``mesh_surface``; ``read(window)`` returns the object's mask on a window inside the
    field."""
    radius = int(4.0 * float(sigma) + 0.5) if smooth else 0
    win = tuple(slice(r.start - radius, r.stop + radius) for r in region)
    m = np.zeros(tuple(w.stop - w.start for w in win), dtype=np.float32)
    inside = tuple(slice(max(w.start, 0), min(w.stop, n)) for w, n in zip(win, shape, strict=True))
    if all(s.start < s.stop for s in inside):
        dst = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(inside, win, strict=True))
        m[dst] = read(inside)  # type: ignore[operator]
    if smooth:
        m = ndi.gaussian_filter(m, sigma, mode="constant")
    return m[tuple(slice(radius, radius + (r.stop - r.start)) for r in region)]


def mesh_part(values: np.ndarray, offset: np.ndarray, spacing: np.ndarray) -> tuple[float, float, bool]:
    """Area and signed divergence volume of the marching-cubes mesh (level 0.5) of ``values`` (the cubes of
    one block and their upper corners), vertices moved by ``offset`` voxels; False when no surface crosses
    it."""
    from skimage.measure import marching_cubes

    try:
        verts, faces, _, _ = marching_cubes(values, 0.5, spacing=tuple(float(s) for s in spacing))
    except (ValueError, RuntimeError):
        return 0.0, 0.0, False
    verts = verts.astype(np.float64) + offset * spacing
    area = volume = 0.0
    for start in range(0, faces.shape[0], 1 << 20):
        f = faces[start : start + (1 << 20)]
        v0 = verts[f[:, 0]]
        normal = np.cross(verts[f[:, 1]] - v0, verts[f[:, 2]] - v0)
        area += 0.5 * float(np.sqrt(np.einsum("ij,ij->i", normal, normal)).sum())
        volume += float(np.einsum("ij,ij->i", v0, normal).sum()) / 6.0
    return area, volume, True


def sample_ranks(crop: np.ndarray, row_offsets: np.ndarray, step: int) -> np.ndarray:
    """Which voxels of ``crop`` (an object's mask on one block part) are every ``step``-th of the object in
    raster order, given the object voxels before each of the part's rows (``row_offsets``, shape of
    ``crop.shape[:-1]``)."""
    ranks = np.cumsum(crop, axis=-1, dtype=np.int64) - 1 + row_offsets[..., None]
    return crop & (ranks % step == 0)
