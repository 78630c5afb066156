"""Rigid placement of a small tile in a large image: FFT normalized cross-correlation, coarse to fine.

The target is reduced by 2 per pyramid level until the tile is about ``min_size`` pixels across; every angle
of a small rotation search is correlated over the whole coarse image (:func:`skimage.feature.match_template`,
FFT-based), the best peaks are followed down the pyramid in small windows, and the last peak gets a parabolic
sub-pixel fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.feature import match_template, peak_local_max
from skimage.transform import SimilarityTransform, pyramid_reduce

from stainfree.register.transform import about_center, compose, similarity, warp_into


@dataclass(frozen=True)
class Match:
    """A rigid placement: the tile -> target transform, its normalized cross-correlation and angle."""

    transform: SimilarityTransform
    score: float
    angle_deg: float


def zscore(image: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` over finite pixels (NaN stays NaN); a constant image becomes zeros."""
    a = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    m, s = float(a[finite].mean()), float(a[finite].std())
    return ((a - m) / (s if s > 0 else 1.0)).astype(np.float32)


def rotated_core(tile: np.ndarray, angle_deg: float) -> tuple[np.ndarray, SimilarityTransform]:
    """The tile rotated about its centre, cropped to the largest centred rectangle with no empty corners.

    Returns
    -------
    core : ndarray
        The rotated, cropped tile.
    core_to_tile : SimilarityTransform
        Maps core points (x, y) to tile points.
    """
    h, w = tile.shape
    a = np.deg2rad(abs(angle_deg))
    c, s = np.cos(a), np.sin(a)
    # the axis-aligned rectangle of the tile's aspect inside the rotated tile
    k = min(h / (h * c + w * s), w / (w * c + h * s)) if angle_deg else 1.0
    ch, cw = max(4, int(np.floor(h * k))), max(4, int(np.floor(w * k)))
    ch -= (h - ch) % 2
    cw -= (w - cw) % 2
    # core point q -> rotated-tile point q + offset -> tile point (rotation about the tile centre, inverse)
    offset = similarity(translation=((w - cw) / 2.0, (h - ch) / 2.0))
    rot = about_center((h, w), 1.0, angle_deg, ((w - 1) / 2.0, (h - 1) / 2.0))
    core_to_tile = compose(SimilarityTransform(matrix=np.linalg.inv(rot.params)), offset)
    core = warp_into(tile, core_to_tile, (ch, cw), order=1, cval=0.0, antialias=False)
    return core, core_to_tile


def _levels(tile_shape: Sequence[int], target_shape: Sequence[int], min_size: int) -> int:
    n = 0
    while min(tile_shape) / 2 ** (n + 1) >= min_size and min(target_shape) / 2 ** (n + 1) >= 2 * min_size:
        n += 1
    return n


def _subpixel(ncc: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """Parabolic refinement of a peak at (r, c) of a correlation map."""

    def fit(m1: float, m0: float, p1: float) -> float:
        d = m1 - 2 * m0 + p1
        return 0.0 if d >= 0 else float(np.clip(0.5 * (m1 - p1) / d, -0.5, 0.5))

    dr = fit(ncc[r - 1, c], ncc[r, c], ncc[r + 1, c]) if 0 < r < ncc.shape[0] - 1 else 0.0
    dc = fit(ncc[r, c - 1], ncc[r, c], ncc[r, c + 1]) if 0 < c < ncc.shape[1] - 1 else 0.0
    return r + dr, c + dc


def _refine(
    image: np.ndarray, core: np.ndarray, r: int, c: int, radius: int
) -> tuple[int, int, float, np.ndarray, int, int]:
    """Best placement of ``core`` near top-left (r, c) of ``image``: (row, col, score, map, row0, col0)."""
    h, w = core.shape
    r0, c0 = max(0, r - radius), max(0, c - radius)
    r1, c1 = min(image.shape[0], r + radius + h), min(image.shape[1], c + radius + w)
    window = image[r0:r1, c0:c1]
    if window.shape[0] < h or window.shape[1] < w:
        return r, c, -1.0, np.zeros((1, 1)), r, c
    ncc = match_template(window, core)
    i, j = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return r0 + int(i), c0 + int(j), float(ncc[i, j]), ncc, r0, c0


def match(
    tile: np.ndarray,
    target: np.ndarray,
    *,
    angles: Sequence[float] = (0.0,),
    min_size: int = 24,
    candidates: int = 3,
    radius: int = 3,
) -> Match:
    """Place a tile in a larger image of the same pixel size by normalized cross-correlation.

    Parameters
    ----------
    tile : ndarray (h, w)
        The small image (same modality and about the same pixel size as ``target``).
    target : ndarray (H, W)
        The large image; ``H >= h`` and ``W >= w``.
    angles : sequence of float
        Rotations of the tile tried, in degrees (the tile is cropped to its rotation-free core).
    min_size : int
        The coarsest pyramid level keeps the tile at least this many pixels across.
    candidates : int
        Peaks per angle followed down the pyramid.
    radius : int
        Search radius (pixels) around a peak carried to a finer level.

    Returns
    -------
    Match
        The tile -> target transform (rotation about the tile centre, then translation), the peak normalized
        cross-correlation (-1 to 1) at full resolution and the angle.
    """
    return match_candidates(
        tile, target, angles=angles, min_size=min_size, candidates=candidates, radius=radius
    )[0]


def match_candidates(
    tile: np.ndarray,
    target: np.ndarray,
    *,
    angles: Sequence[float] = (0.0,),
    min_size: int = 24,
    candidates: int = 3,
    radius: int = 3,
    separation: float = 4.0,
) -> list[Match]:
    """The distinct placements :func:`match` considers, best first (parameters as there).

    Placements whose tile centres lie within ``separation`` target pixels of a better one are dropped.
    """
    tile = np.nan_to_num(zscore(tile))
    target = np.nan_to_num(zscore(target))
    if tile.shape[0] > target.shape[0] or tile.shape[1] > target.shape[1]:
        raise ValueError(f"tile {tile.shape} is larger than the target {target.shape}")
    n = _levels(tile.shape, target.shape, min_size)
    pyramid = [target]
    for _ in range(n):
        pyramid.append(pyramid_reduce(pyramid[-1], 2, preserve_range=True).astype(np.float32))
    found: list[Match] = []
    center = np.array([[(tile.shape[1] - 1) / 2.0, (tile.shape[0] - 1) / 2.0]])
    for angle in angles:
        core, core_to_tile = rotated_core(tile, float(angle))
        cores = [core]
        for _ in range(n):
            cores.append(pyramid_reduce(cores[-1], 2, preserve_range=True).astype(np.float32))
        coarse, ccore = pyramid[n], cores[n]
        if ccore.shape[0] > coarse.shape[0] or ccore.shape[1] > coarse.shape[1]:
            continue
        ncc = match_template(coarse, ccore)
        peaks = peak_local_max(ncc, min_distance=2, num_peaks=candidates, exclude_border=False)
        if len(peaks) == 0:
            peaks = np.array([np.unravel_index(int(np.argmax(ncc)), ncc.shape)])
        tile_to_core = SimilarityTransform(matrix=np.linalg.inv(core_to_tile.params))
        for pr, pc in peaks:
            r, c = int(pr), int(pc)
            score, m, r0, c0 = float(ncc[r, c]), ncc, 0, 0
            for level in range(n - 1, -1, -1):
                r, c, score, m, r0, c0 = _refine(pyramid[level], cores[level], 2 * r, 2 * c, radius)
            fr, fc = _subpixel(m, r - r0, c - c0) if m.size > 1 else (float(r - r0), float(c - c0))
            # core point q <-> target point q + (col, row); tile point p = core_to_tile(q)
            tile_to_target = compose(similarity(translation=(c0 + fc, r0 + fr)), tile_to_core)
            found.append(Match(tile_to_target, score, float(angle)))
    if not found:
        raise ValueError(f"tile {tile.shape} does not fit into the target {target.shape} at any angle")
    found.sort(key=lambda mt: -mt.score)
    kept: list[Match] = []
    for mt in found:
        p = mt.transform(center)[0]
        if all(np.hypot(*(p - k.transform(center)[0])) > separation for k in kept):
            kept.append(mt)
    return kept
