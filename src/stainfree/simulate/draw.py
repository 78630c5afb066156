"""Low-level rasterisers: ellipsoids and tubes drawn into a volume inside their bounding boxes only.

Coordinates are physical, in micrometres, with voxel ``(i, j, k)`` centred at ``(i * vz, j * vy, k * vx)``.
Every painter writes a class label and an instance id only where a clip volume equals a given value (the
cytoplasm of the owning cell, say), so organelles never leak into the nucleus or a neighbouring cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stainfree.types import Floats


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid: centre (z, y, x) and semi-axes in um; rotation rows are the principal directions."""

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass(frozen=True)
class Tube:
    """A tube of constant radius (um) around a densely sampled polyline ``points`` (N, 3) in um."""

    points: np.ndarray
    radius: float


Primitive = Ellipsoid | Tube


def rotation_from_normal(normal: np.ndarray) -> np.ndarray:
    """Rotation whose first row is ``normal`` (z, y, x), completed to a right-handed orthonormal frame."""
    n = np.asarray(normal, float)
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(n, helper)
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    return np.stack([n, a, b])


def resample_polyline(points: np.ndarray, step: float) -> np.ndarray:
    """Points along a polyline spaced at most ``step`` um apart (the vertices are kept)."""
    pts = np.asarray(points, float)
    if len(pts) < 2:
        return pts.reshape(-1, 3)
    seg = np.diff(pts, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    counts = np.maximum(1, np.ceil(lengths / step).astype(int))
    out = [pts[:1]]
    for p, s, n in zip(pts[:-1], seg, counts, strict=True):
        t = (np.arange(1, n + 1) / n)[:, None]
        out.append(p + t * s)
    return np.concatenate(out)


def segments_to_points(a: np.ndarray, b: np.ndarray, step: float) -> np.ndarray:
    """Dense points along many straight segments from ``a[i]`` to ``b[i]`` (vectorised)."""
    a = np.asarray(a, float).reshape(-1, 3)
    b = np.asarray(b, float).reshape(-1, 3)
    if len(a) == 0:
        return np.zeros((0, 3))
    lengths = np.linalg.norm(b - a, axis=1)
    counts = np.maximum(2, np.ceil(lengths / step).astype(int) + 1)
    seg_index = np.repeat(np.arange(len(a)), counts)
    starts = np.cumsum(counts) - counts
    t = (np.arange(counts.sum()) - np.repeat(starts, counts)) / np.repeat(counts - 1, counts)
    return a[seg_index] + t[:, None] * (b - a)[seg_index]


def ball_offsets(radius_um: float, voxel_um: Floats) -> np.ndarray:
    """Integer voxel offsets (M, 3) inside a ball of ``radius_um``; always contains (0, 0, 0)."""
    vox = np.asarray(voxel_um, float)
    reach = np.floor(radius_um / vox).astype(int)
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    offs = np.stack([g.ravel() for g in grids], axis=1)
    keep = (((offs * vox) / max(radius_um, 1e-9)) ** 2).sum(axis=1) <= 1.0
    keep |= (offs == 0).all(axis=1)
    return offs[keep]


def paint_tube(
    labels: np.ndarray,
    inst: np.ndarray,
    tube: Tube,
    voxel_um: Floats,
    label: int,
    instance: int,
    clip: np.ndarray | None = None,
    clip_value: int = 0,
    shift_um: np.ndarray | None = None,
) -> int:
    """Paint a tube into ``labels``/``inst`` where ``clip == clip_value``; returns the voxels set."""
    vox = np.asarray(voxel_um, float)
    pts = tube.points if shift_um is None else tube.points + shift_um
    centres = np.rint(pts / vox).astype(np.int64)
    offs = ball_offsets(tube.radius, vox)
    idx = (centres[:, None, :] + offs[None, :, :]).reshape(-1, 3)
    shape = np.asarray(labels.shape)
    ok = ((idx >= 0) & (idx < shape)).all(axis=1)
    idx = idx[ok]
    if len(idx) == 0:
        return 0
    flat = np.unique(np.ravel_multi_index(idx.T, labels.shape))
    if clip is not None:
        flat = flat[clip.ravel()[flat] == clip_value]
    labels.ravel()[flat] = label
    inst.ravel()[flat] = instance
    return int(len(flat))


def ellipsoid_mask(
    ell: Ellipsoid, shape: Sequence[int], voxel_um: Floats, shift_um: np.ndarray | None = None
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding-box slices and mask of an ellipsoid (at least its centre voxel when inside the volume)."""
    vox = np.asarray(voxel_um, float)
    c = ell.center if shift_um is None else ell.center + shift_um
    r = float(np.max(ell.radii))
    lo = np.maximum(np.floor((c - r) / vox).astype(int), 0)
    hi = np.minimum(np.ceil((c + r) / vox).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return (slice(0, 0),) * 3, np.zeros((0, 0, 0), bool)
    axes = [np.arange(lo[i], hi[i]) * vox[i] - c[i] for i in range(3)]
    dz, dy, dx = np.meshgrid(*axes, indexing="ij", sparse=True)
    rot = ell.rotation
    acc = np.zeros(tuple(hi - lo), float)
    for row in range(3):
        u = rot[row, 0] * dz + rot[row, 1] * dy + rot[row, 2] * dx
        acc = acc + (u / ell.radii[row]) ** 2
    mask = acc <= 1.0
    if not mask.any():
        centre = np.rint(c / vox).astype(int) - lo
        if np.all(centre >= 0) and np.all(centre < hi - lo):
            mask[tuple(centre)] = True
    return tuple(slice(lo[i], hi[i]) for i in range(3)), mask


def paint_ellipsoid(
    labels: np.ndarray,
    inst: np.ndarray,
    ell: Ellipsoid,
    voxel_um: Floats,
    label: int,
    instance: int,
    clip: np.ndarray | None = None,
    clip_value: int = 0,
    shift_um: np.ndarray | None = None,
) -> int:
    """Paint an ellipsoid where ``clip == clip_value``; returns the number of voxels set."""
    sl, mask = ellipsoid_mask(ell, labels.shape, voxel_um, shift_um)
    if mask.size == 0:
        return 0
    if clip is not None:
        mask = mask & (clip[sl] == clip_value)
    labels[sl][mask] = label
    inst[sl][mask] = instance
    return int(mask.sum())


def paint(
    labels: np.ndarray,
    inst: np.ndarray,
    prim: Primitive,
    voxel_um: Floats,
    label: int,
    instance: int,
    clip: np.ndarray | None = None,
    clip_value: int = 0,
    shift_um: np.ndarray | None = None,
) -> int:
    """Paint any primitive (ellipsoid or tube)."""
    if isinstance(prim, Tube):
        return paint_tube(labels, inst, prim, voxel_um, label, instance, clip, clip_value, shift_um)
    return paint_ellipsoid(labels, inst, prim, voxel_um, label, instance, clip, clip_value, shift_um)


def boundary(mask_ids: np.ndarray) -> np.ndarray:
    """Voxels with a non-zero id whose 6-neighbourhood holds a different id (the volume edge counts as 0)."""
    ids = mask_ids
    out = np.zeros(ids.shape, bool)
    padded = np.pad(ids, 1, mode="constant")
    core = (slice(1, -1),) * 3
    for axis in range(3):
        for step in (-1, 1):
            sl = list(core)
            sl[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            out |= padded[tuple(sl)] != ids
    return out & (ids > 0)
