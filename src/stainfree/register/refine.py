"""Residual optical flow between a placed tile and the target, and a robust similarity fitted to it.

The target is sampled on the tile's grid through the current transform; the optical flow from the tile to that
sample (:func:`skimage.registration.optical_flow_ilk` or TV-L1) gives, for each tile point ``p``, the target
point ``T(p + v(p))`` it corresponds to; a similarity transform is fitted to those pairs with RANSAC
(:func:`skimage.measure.ransac`) on the points where the tile has structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.measure import ransac
from skimage.registration import optical_flow_ilk, optical_flow_tvl1
from skimage.transform import SimilarityTransform

from stainfree.register.match import zscore
from stainfree.register.transform import compose, inverse, mean_displacement_error, similarity, warp_into


@dataclass(frozen=True)
class Fit:
    """One flow + similarity step: the new transform, RANSAC inliers, points used and the mean update."""

    transform: SimilarityTransform
    inliers: int
    points: int
    update_px: float


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation (Pearson r) of two images over the pixels finite in both."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 16:
        return -1.0
    x, y = a[ok].astype(np.float64), b[ok].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    d = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / d) if d > 0 else 0.0


def structure_points(
    tile: np.ndarray, *, step: int = 4, border: int = 6, quantile: float = 0.5
) -> np.ndarray:
    """Tile points (x, y) on a grid of ``step`` where the smoothed gradient is above its ``quantile``."""
    g = ndimage.gaussian_gradient_magnitude(np.nan_to_num(tile).astype(np.float32), sigma=1.5)
    h, w = tile.shape
    ys, xs = np.mgrid[border : h - border : step, border : w - border : step]
    vals = g[ys, xs]
    keep = vals >= np.quantile(vals, quantile) if vals.size else np.zeros(0, bool)
    return np.column_stack([xs[keep], ys[keep]]).astype(np.float64)


def flow_step(
    tile: np.ndarray,
    target: np.ndarray,
    tile_to_target: SimilarityTransform,
    *,
    method: Literal["ilk", "tvl1"] = "ilk",
    radius: int = 7,
    residual_px: float = 1.0,
    seed: int = 0,
) -> Fit | None:
    """One refinement: flow from the tile to the target sampled through ``tile_to_target``, RANSAC similarity.

    Parameters
    ----------
    tile : ndarray (h, w)
        The tile (same modality as ``target``, about its pixel size).
    target : ndarray (H, W)
    tile_to_target : SimilarityTransform
        The current placement.
    method : {"ilk", "tvl1"}
        Optical flow: iterative Lucas-Kanade (fast, ``radius`` window) or TV-L1.
    radius : int
        iLK window radius.
    residual_px : float
        RANSAC inlier distance, in target pixels.
    seed : int
        RANSAC random seed.

    Returns
    -------
    Fit or None
        None when too few points with structure fall inside the target.
    """
    ref = np.nan_to_num(zscore(tile))
    moving = zscore(warp_into(target, tile_to_target, tile.shape))
    valid = np.isfinite(moving)
    moving = np.nan_to_num(moving)
    if method == "tvl1":
        flow = optical_flow_tvl1(ref, moving)
    else:
        flow = optical_flow_ilk(ref, moving, radius=radius, num_warp=3)
    pts = structure_points(ref)
    if len(pts):
        ix, iy = pts[:, 0].astype(int), pts[:, 1].astype(int)
        pts = pts[valid[iy, ix]]
    if len(pts) < 8:
        return None
    ix, iy = pts[:, 0].astype(int), pts[:, 1].astype(int)
    moved = pts + np.column_stack([flow[1][iy, ix], flow[0][iy, ix]])
    dst = tile_to_target(moved)
    model, inl = ransac(
        (pts, dst),
        SimilarityTransform,
        min_samples=3,
        residual_threshold=residual_px,
        max_trials=200,
        rng=seed,
    )
    if model is None or inl is None or int(inl.sum()) < 3:
        return None
    new = SimilarityTransform(matrix=np.asarray(model.params))
    update = mean_displacement_error(tile_to_target, new, tile.shape)
    return Fit(new, int(inl.sum()), int(len(pts)), update)


def ncc_refine(
    tile: np.ndarray,
    target: np.ndarray,
    tile_to_target: SimilarityTransform,
    *,
    sigmas: tuple[float, ...] = (4.0, 2.0, 1.0),
    max_evaluations: int = 400,
) -> tuple[SimilarityTransform, float]:
    """Refine a placement by maximizing the normalized cross-correlation directly, coarse to fine.

    For targets whose structure is sparse (a few labelled nuclei in a dark field), where the optical flow has
    nothing to follow over most of the tile: the similarity (shift, rotation and scale about the tile centre)
    that maximizes the correlation of the tile and the target sampled through it is found with Powell's
    method (:func:`scipy.optimize.minimize`) on Gaussian-smoothed copies, the coarsest first.

    Parameters
    ----------
    tile : ndarray (h, w)
        The tile (same modality as ``target``).
    target : ndarray (H, W)
    tile_to_target : SimilarityTransform
        The starting placement (e.g. a template match).
    sigmas : tuple of float
        Gaussian sigmas (pixels) of the successive stages.
    max_evaluations : int
        Correlations computed per stage at most.

    Returns
    -------
    transform : SimilarityTransform
        The refined tile -> target transform.
    score : float
        Correlation of the tile and the target through it, at the last stage's smoothing.
    """
    from scipy import optimize

    h, w = tile.shape
    center = similarity(translation=((w - 1) / 2.0, (h - 1) / 2.0))
    to_center = inverse(center)
    t, score = tile_to_target, ncc(tile, warp_into(target, tile_to_target, tile.shape))
    tile_f, target_f = np.nan_to_num(tile).astype(np.float32), np.nan_to_num(target).astype(np.float32)
    for s in sigmas:
        a = ndimage.gaussian_filter(tile_f, s) if s > 0 else tile_f
        b = ndimage.gaussian_filter(target_f, s) if s > 0 else target_f
        start = t

        def placed(p: np.ndarray, start: SimilarityTransform = start) -> SimilarityTransform:
            # shift (x, y) px, rotation (degrees) and log-scale (percent) about the tile centre
            delta = compose(similarity(float(np.exp(0.01 * p[3])), float(p[2]), (p[0], p[1])), to_center)
            return compose(start, compose(center, delta))

        def cost(p: np.ndarray, a: np.ndarray = a, b: np.ndarray = b) -> float:
            return -ncc(a, warp_into(b, placed(p), a.shape))

        res = optimize.minimize(
            cost,
            np.zeros(4),
            method="Powell",
            options={"xtol": 0.05, "ftol": 1e-4, "maxfev": int(max_evaluations)},
        )
        t, score = placed(np.asarray(res.x)), -float(res.fun)
    return t, score
