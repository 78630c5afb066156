"""Patch coordinates for training (numpy only).

Patches are drawn uniformly across the images (an image is chosen with probability proportional to its number
of voxels) and uniformly in space. Each patch is a pure function of ``(seed, index)``: the same global sample
index always gives the same patch, which is what lets a resumed training see exactly the batches an
uninterrupted one would have seen. With a ``foreground_fraction`` > 0, that share of the patches is centred on
a voxel of a class of the target (classes drawn uniformly), so that rare structures are seen at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """A random generator that depends only on ``(seed, index, stream)``."""
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    return np.random.default_rng(
        [int(stream), int(index), int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    )


def image_weights(image_shapes: Sequence[Sequence[int]]) -> np.ndarray:
    """Probability of drawing each image: proportional to its number of voxels."""
    sizes = np.array([float(np.prod(s)) for s in image_shapes], dtype=np.float64)
    if sizes.size == 0 or sizes.sum() <= 0:
        raise ValueError("no images to sample patches from")
    return sizes / sizes.sum()


def sample_patch(
    seed: int,
    index: int,
    image_shapes: Sequence[Sequence[int]],
    patch_shape: Sequence[int],
    *,
    foreground: Sequence[Sequence[np.ndarray]] | None = None,
    foreground_fraction: float = 0.0,
) -> tuple[int, tuple[int, ...]]:
    """The patch of global sample ``index``: which image and the patch's start corner.

    Parameters
    ----------
    seed : int
        Seed of the run.
    index : int
        Global sample index (``step * batch_size + position in batch``).
    image_shapes : sequence of shapes
        Spatial shapes of the images (each at least ``patch_shape``).
    patch_shape : sequence of int
        Spatial patch shape, same length as each image shape.
    foreground : sequence of sequence of ndarray, optional
        Per image, per class, flat voxel indices of that class (:func:`foreground_index`).
    foreground_fraction : float
        Probability that the patch is centred on a foreground voxel (a class drawn uniformly among those
        present in the chosen image, then one of its voxels); 0 gives exactly the uniform patches.

    Returns
    -------
    image : int
        Index of the image.
    start : tuple of int
        Start corner of the patch in that image.
    """
    rng = sample_rng(seed, index)
    w = image_weights(image_shapes)
    image = int(rng.choice(len(w), p=w))
    shape = image_shapes[image]
    if len(shape) != len(patch_shape):
        raise ValueError(f"patch {tuple(patch_shape)} and image {tuple(shape)} differ in dimensions")
    if any(p > s for p, s in zip(patch_shape, shape, strict=True)):
        raise ValueError(f"patch {tuple(patch_shape)} larger than image {tuple(shape)}")
    if foreground_fraction > 0 and foreground is not None:
        fg_rng = sample_rng(seed, index, stream=1)
        if fg_rng.random() < foreground_fraction:
            present = [c for c in foreground[image] if len(c) > 0]
            if present:
                coords = present[int(fg_rng.integers(len(present)))]
                flat = int(coords[int(fg_rng.integers(len(coords)))])
                centre = tuple(int(c) for c in np.unravel_index(flat, tuple(shape)))
                return image, centred_start(centre, shape, patch_shape)
    start = tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch_shape, strict=True))
    return image, start


def centred_start(
    centre: Sequence[int], image_shape: Sequence[int], patch_shape: Sequence[int]
) -> tuple[int, ...]:
    """Start corner of the patch centred on ``centre``, clipped so the patch stays inside the image."""
    return tuple(
        int(min(max(int(c) - p // 2, 0), s - p))
        for c, s, p in zip(centre, image_shape, patch_shape, strict=True)
    )


def foreground_index(
    target: np.ndarray,
    *,
    multiclass: bool | None = None,
    labels: Sequence[int] | None = None,
    max_per_class: int = 200_000,
) -> list[np.ndarray]:
    """Flat spatial indices of the foreground voxels of one (C, Z, Y, X) target, one array per class.

    Parameters
    ----------
    target : ndarray
        (C, ...) target. One integer channel is a label map: one class per label > 0. Otherwise each
        channel is a class and its voxels > 0 are foreground.
    multiclass : bool, optional
        Force the label-map (True) or per-channel (False) reading; None decides from the dtype and channels.
    labels : sequence of int, optional
        Label map: the label values that count as foreground (e.g. ``[0, 1, 2]`` when every class, label 0
        included, fills part of the volume); None: every label > 0.
    max_per_class : int
        Keep at most this many evenly spaced voxels per class (memory bound; deterministic).

    Returns
    -------
    list of ndarray
        int64 flat indices into ``target.shape[1:]``, one array per class (classes absent from the target
        are left out).
    """
    target = np.asarray(target)
    if multiclass is None:
        multiclass = target.shape[0] == 1 and np.issubdtype(target.dtype, np.integer)
    out: list[np.ndarray] = []
    if multiclass:
        flat = target[0].ravel()
        order = np.argsort(flat, kind="stable")
        values, starts = np.unique(flat[order], return_index=True)
        ends = np.append(starts[1:], flat.size)
        keep = (lambda v: v > 0) if labels is None else (lambda v: int(v) in {int(k) for k in labels})
        groups = [order[a:b] for v, a, b in zip(values, starts, ends, strict=True) if keep(v)]
    else:
        groups = [np.flatnonzero(np.asarray(ch) > 0) for ch in target]
    for g in groups:
        if g.size == 0:
            continue
        if g.size > max_per_class:
            g = g[np.linspace(0, g.size - 1, max_per_class).astype(np.int64)]
        out.append(np.ascontiguousarray(g, dtype=np.int64))
    return out


def patch_slices(start: Sequence[int], patch_shape: Sequence[int]) -> tuple[slice, ...]:
    """Slices of a patch given its start corner."""
    return tuple(slice(s, s + p) for s, p in zip(start, patch_shape, strict=True))


def patches_per_epoch(image_shapes: Sequence[Sequence[int]], patch_shape: Sequence[int]) -> int:
    """How many patches it takes to cover the images' voxels once (at least 1)."""
    total = sum(float(np.prod(s)) for s in image_shapes)
    return max(1, int(np.ceil(total / float(np.prod(patch_shape)))))


def holdout_candidates(
    shape: Sequence[int], patch_shape: Sequence[int], fraction: float = 0.2
) -> list[dict[str, int]]:
    """Every validation block that :func:`holdout_region` may carve: the last and the first ``fraction`` (at
    least one patch) of the longer, then the shorter of the Y and X axes, each with a gap of half a patch
    before the training part.

    Returns
    -------
    list of dict
        ``axis`` (1 = y, 2 = x), ``train_start`` / ``train_stop`` (training uses that range of the axis),
        ``val_start`` / ``val_stop``; empty when the image is too small along both axes.
    """
    if len(shape) != 3 or len(patch_shape) != 3:
        raise ValueError(f"need (z, y, x) shapes, got {tuple(shape)} and {tuple(patch_shape)}")
    axis = 1 if shape[1] > shape[2] else 2
    found: list[dict[str, int]] = []
    for ax in (axis, 3 - axis):
        size, p = int(shape[ax]), int(patch_shape[ax])
        val = max(p, int(round(fraction * size)))
        gap = p // 2
        if size - val - gap < p:
            val = p
        if size - val - gap >= p:
            found.append(
                {
                    "axis": ax,
                    "train_start": 0,
                    "train_stop": size - val - gap,
                    "val_start": size - val,
                    "val_stop": size,
                }
            )
            found.append(
                {"axis": ax, "train_start": val + gap, "train_stop": size, "val_start": 0, "val_stop": val}
            )
    return found


def _region_score(target: np.ndarray, region: dict[str, int], whole_var: np.ndarray) -> float:
    """How like the whole image the target is in a candidate block: per channel min(v, V) / max(v, V) of the
    block's and the image's variance, averaged (1 = alike, 0 = an empty block in a structured image)."""
    sl = [slice(None)] * target.ndim
    sl[target.ndim - 3 + region["axis"]] = slice(region["val_start"], region["val_stop"])
    block = target[tuple(sl)].reshape(target.shape[0], -1).astype(np.float64)
    v = block.var(axis=1)
    hi = np.maximum(v, whole_var)
    return float(np.mean(np.where(hi > 0, np.minimum(v, whole_var) / np.where(hi > 0, hi, 1.0), 1.0)))


def holdout_region(
    shape: Sequence[int],
    patch_shape: Sequence[int],
    fraction: float = 0.2,
    target: np.ndarray | None = None,
) -> dict[str, int] | None:
    """A validation block carved from one image, with a gap of half a patch that no training patch touches.

    The block is a ``fraction`` (at least one patch) at one end of the Y or X axis; training patches come
    from the rest beyond the gap. Without ``target`` it is the last part of the longer axis. With ``target``,
    of the ends of both axes (:func:`holdout_candidates`) the one whose target is most like the whole image
    (the variance of each channel in the block against the image's): a block of empty background in a
    sparse stain would score every network alike and make model selection chance. Deterministic, so the
    bundle can record it.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape (z, y, x).
    patch_shape : sequence of int
        Training patch (z, y, x) (z is 1 for 2D networks).
    fraction : float
        Share of the axis given to validation.
    target : ndarray, optional
        The image's target, (C, Z, Y, X) or (Z, Y, X) of ``shape``.

    Returns
    -------
    dict or None
        ``axis`` (1 = y, 2 = x), ``train_start`` / ``train_stop`` (training uses that range of the axis),
        ``val_start`` and ``val_stop`` (validation uses ``[val_start, val_stop)``); None when the image is too
        small to hold a training patch, the gap and a validation patch along both axes.
    """
    found = holdout_candidates(shape, patch_shape, fraction)
    if not found:
        return None
    if target is None or len(found) == 1:
        return found[0]
    t = np.asarray(target)
    t = t[None] if t.ndim == 3 else t
    if t.shape[-3:] != tuple(int(s) for s in shape):
        raise ValueError(f"target {t.shape} does not match the image shape {tuple(shape)}")
    whole = t.reshape(t.shape[0], -1).astype(np.float64).var(axis=1)
    scores = [_region_score(t, r, whole) for r in found]
    return found[int(np.argmax(scores))]  # first of equals: the default end


def grid_corners(shape: Sequence[int], patch_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Start corners of patches that tile ``shape`` (the last patch of each axis ends at the border).

    Used for validation: every voxel of a held-out region is scored, the same ones at every check.
    """
    axes = []
    for s, p in zip(shape, patch_shape, strict=True):
        if p > s:
            raise ValueError(f"patch {tuple(patch_shape)} larger than image {tuple(shape)}")
        starts = list(range(0, s - p + 1, p))
        if starts[-1] != s - p:
            starts.append(s - p)
        axes.append(starts)
    return [
        tuple(int(c) for c in corner)
        for corner in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    ]
