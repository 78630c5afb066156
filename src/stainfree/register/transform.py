"""Similarity transforms between pixel frames, resampling through them, and the registration error.

Coordinates follow scikit-image: a point is ``(x, y) = (column, row)`` in pixels, pixel ``(i, j)`` centred at
``(j, i)``. A transform maps a point of a tile (the source) to a point of the target image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.transform import SimilarityTransform, warp


def similarity(
    scale: float = 1.0, rotation_deg: float = 0.0, translation: Sequence[float] = (0.0, 0.0)
) -> SimilarityTransform:
    """A similarity transform ``p -> scale * R(rotation) p + translation`` in (x, y) pixels.

    Parameters
    ----------
    scale : float
        Isotropic scale (target pixels per source pixel).
    rotation_deg : float
        Rotation in degrees (counter-clockwise in x, y; clockwise on screen, where y points down).
    translation : sequence of 2 floats
        (x, y) shift in target pixels.

    Returns
    -------
    SimilarityTransform
    """
    return SimilarityTransform(
        scale=float(scale), rotation=np.deg2rad(float(rotation_deg)), translation=tuple(translation)
    )


def about_center(
    shape: Sequence[int], scale: float, rotation_deg: float, center_in_target: Sequence[float]
) -> SimilarityTransform:
    """The similarity that scales and rotates a tile of ``shape`` (rows, cols) about its centre and puts
    that centre at ``center_in_target`` (x, y)."""
    to_origin = similarity(translation=(-(shape[1] - 1) / 2.0, -(shape[0] - 1) / 2.0))
    return compose(similarity(scale, rotation_deg, center_in_target), to_origin)


def compose(outer: SimilarityTransform, inner: SimilarityTransform) -> SimilarityTransform:
    """``outer(inner(p))`` as one similarity transform."""
    return SimilarityTransform(matrix=outer.params @ inner.params)


def inverse(t: SimilarityTransform) -> SimilarityTransform:
    """The inverse similarity transform."""
    return SimilarityTransform(matrix=np.linalg.inv(t.params))


def params(t: SimilarityTransform) -> dict[str, float]:
    """Scale, rotation (degrees) and translation (x, y) of a similarity transform, as plain floats."""
    return {
        "scale": float(t.scale),
        "rotation_deg": float(np.rad2deg(t.rotation)),
        "tx": float(t.translation[0]),
        "ty": float(t.translation[1]),
    }


def warp_into(
    image: np.ndarray,
    tile_to_image: SimilarityTransform,
    shape: Sequence[int],
    *,
    order: int = 1,
    cval: float = np.nan,
    antialias: bool = True,
) -> np.ndarray:
    """Sample ``image`` on the grid of a tile: ``out[p] = image[tile_to_image(p)]``.

    Parameters
    ----------
    image : ndarray (Y, X)
        The image sampled.
    tile_to_image : SimilarityTransform
        Maps tile points (x, y) to image points.
    shape : sequence of 2 ints
        Tile shape (rows, cols).
    order : int
        Spline order of the interpolation.
    cval : float
        Value outside ``image`` (NaN by default, so callers can mask it).
    antialias : bool
        Smooth ``image`` first with a Gaussian of ``sigma = (scale - 1) / 2`` pixels when the tile samples it
        coarser than its own grid (``scale > 1``).

    Returns
    -------
    ndarray of float32
    """
    src = np.asarray(image, dtype=np.float32)
    s = float(tile_to_image.scale)
    if antialias and s > 1.0:
        src = ndimage.gaussian_filter(src, sigma=(s - 1.0) / 2.0, mode="reflect")
    out = warp(
        src,
        tile_to_image,
        output_shape=tuple(int(n) for n in shape),
        order=order,
        mode="constant",
        cval=cval,
        preserve_range=True,
    )
    return np.asarray(out, dtype=np.float32)


def rescale(image: np.ndarray, factor: float, *, order: int = 1) -> tuple[np.ndarray, SimilarityTransform]:
    """Resample an image to ``factor`` times its pixel count per axis (pixel size / ``factor``).

    Parameters
    ----------
    image : ndarray (Y, X)
    factor : float
        Output pixels per input pixel (``input_pixel_um / output_pixel_um``).
    order : int
        Spline order.

    Returns
    -------
    out : ndarray of float32
        Shape ``round(shape * factor)``; edges reflected, anti-aliased when shrinking.
    out_to_in : SimilarityTransform
        Maps output points to input points (pixel centres aligned: ``p_in = (p_out + 0.5) / factor - 0.5``).
    """
    image = np.asarray(image, dtype=np.float32)
    f = float(factor)
    shape = tuple(max(1, round(n * f)) for n in image.shape)
    out_to_in = similarity(1.0 / f, 0.0, (0.5 / f - 0.5, 0.5 / f - 0.5))
    src = image
    if f < 1.0:
        src = ndimage.gaussian_filter(image, sigma=(1.0 / f - 1.0) / 2.0, mode="reflect")
    out = warp(src, out_to_in, output_shape=shape, order=order, mode="symmetric", preserve_range=True)
    return np.asarray(out, dtype=np.float32), out_to_in


def tile_grid(shape: Sequence[int], step: int = 1) -> np.ndarray:
    """The (x, y) centres of every ``step``-th pixel of a tile of ``shape`` (rows, cols), as (N, 2)."""
    ys, xs = np.mgrid[0 : int(shape[0]) : step, 0 : int(shape[1]) : step]
    return np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)


def mean_displacement_error(
    truth: SimilarityTransform, estimate: SimilarityTransform, shape: Sequence[int]
) -> float:
    """Registration error: the mean distance between where ``truth`` and ``estimate`` put each tile pixel.

    Parameters
    ----------
    truth, estimate : SimilarityTransform
        Tile -> target transforms.
    shape : sequence of 2 ints
        Tile shape (rows, cols): the error is averaged over its pixel centres.

    Returns
    -------
    float
        Mean displacement difference in target pixels (as in Ounkomol et al. 2018).
    """
    p = tile_grid(shape)
    return float(np.mean(np.linalg.norm(truth(p) - estimate(p), axis=1)))
