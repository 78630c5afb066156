"""Patch coordinates for training (numpy only).

Patches are drawn uniformly across the images (an image is chosen with probability proportional to its number
of voxels) and uniformly in space. Each patch is a pure function of ``(seed, index)``: the same global sample
index always gives the same patch, which is what lets a resumed training see exactly the batches an
uninterrupted one would have seen.
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
    seed: int, index: int, image_shapes: Sequence[Sequence[int]], patch_shape: Sequence[int]
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
    start = tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch_shape, strict=True))
    return image, start


def patch_slices(start: Sequence[int], patch_shape: Sequence[int]) -> tuple[slice, ...]:
    """Slices of a patch given its start corner."""
    return tuple(slice(s, s + p) for s, p in zip(start, patch_shape, strict=True))


def patches_per_epoch(image_shapes: Sequence[Sequence[int]], patch_shape: Sequence[int]) -> int:
    """How many patches it takes to cover the images' voxels once (at least 1)."""
    total = sum(float(np.prod(s)) for s in image_shapes)
    return max(1, int(np.ceil(total / float(np.prod(patch_shape)))))
