"""Register a tile to a large image of the same modality: match, refine, fit, test convergence.

This is the method of Ounkomol et al. 2018 (their EM -> MBP-IF result) with numpy and scikit-image: rigid
normalized cross-correlation template matching (coarse to fine, over a few angles), residual optical flow, a
robust similarity fitted to the flow, and a convergence test. The tile is the *prediction* of the target's
modality from an EM tile (or, for same-modality data, the tile itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.transform import SimilarityTransform

from stainfree.register.match import Match, match_candidates
from stainfree.register.refine import flow_step, ncc, ncc_refine
from stainfree.register.transform import mean_displacement_error, params, warp_into


@dataclass(frozen=True)
class Registration:
    """The result of :func:`register`.

    Attributes
    ----------
    transform : SimilarityTransform
        Tile (x, y) -> target (x, y), in pixels.
    converged : bool
        Whether the convergence test passed.
    score : float
        Normalized cross-correlation of the tile and the target sampled through ``transform``.
    match_score : float
        Peak normalized cross-correlation of the rigid template match.
    inlier_fraction : float
        RANSAC inliers / flow points of the last refinement (0 when none ran).
    last_update_px : float
        Mean displacement of the tile pixels by the last flow refinement (``refine="ncc"``: by the whole
        refinement from the template match), in target pixels.
    reason : str
        Why the test failed ("" when converged).
    """

    transform: SimilarityTransform
    converged: bool
    score: float
    match_score: float
    inlier_fraction: float
    last_update_px: float
    reason: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def summary(self) -> dict[str, float | bool | str]:
        """Plain values for a table row or JSON."""
        return {
            **params(self.transform),
            "converged": self.converged,
            "score": round(self.score, 4),
            "match_score": round(self.match_score, 4),
            "inlier_fraction": round(self.inlier_fraction, 4),
            "last_update_px": round(self.last_update_px, 4),
            "reason": self.reason,
        }


def content_fraction(image: np.ndarray, level: float) -> float:
    """Fraction of the finite pixels of ``image`` above ``level``."""
    a = np.asarray(image)
    ok = np.isfinite(a)
    return float((a[ok] > level).mean()) if ok.any() else 0.0


def has_content(
    image: np.ndarray, maximum: float, *, background: float = 0.0, fraction: float = 0.01, level: float = 0.5
) -> bool:
    """The content filter of Ounkomol et al.: more than ``fraction`` of the pixels above ``level`` of the
    maximum (measured from ``background``).

    Parameters
    ----------
    image : ndarray
        A predicted (or same-modality) tile, in the units of ``maximum``.
    maximum : float
        The reference maximum, in the units of ``image`` (for predictions: a robust maximum of the predictions
        of every tile of a run, so that an empty tile does not pass on its own noise).
    background : float
        The reference zero (e.g. the median of those predictions).
    fraction, level : float
        More than ``fraction`` of the pixels must exceed ``background + level * (maximum - background)``
        (paper: 1% above 50% of the maximum).
    """
    return content_fraction(image, background + level * (float(maximum) - background)) > fraction


def register(
    tile: np.ndarray,
    target: np.ndarray,
    *,
    angles: Sequence[float] = (-10.0, -5.0, 0.0, 5.0, 10.0),
    iterations: int = 5,
    flow: Literal["ilk", "tvl1"] = "ilk",
    min_score: float = 0.5,
    min_inliers: float = 0.15,
    max_update_px: float = 0.5,
    max_scale_change: float = 0.15,
    seed: int = 0,
    candidates: int = 3,
    accept_score: float = 0.6,
    smooth: float = 0.0,
    residual_px: float = 1.0,
    refine: Literal["flow", "ncc"] = "flow",
    min_margin: float = 0.05,
    target_content: float = 0.0,
) -> Registration:
    """Register a tile to a larger image of the same modality and about the same pixel size.

    Parameters
    ----------
    tile : ndarray (h, w)
        The tile: a predicted target-modality image, or a same-modality image.
    target : ndarray (H, W)
        The large image.
    angles : sequence of float
        Rotations (degrees) tried by the template match; the flow refines between them.
    iterations : int
        Flow + similarity refinements after the match.
    flow : {"ilk", "tvl1"}
        Optical flow method.
    min_score : float
        Convergence: lowest normalized cross-correlation of tile and registered target.
    min_inliers : float
        Convergence: lowest fraction of RANSAC inliers among the flow points.
    max_update_px : float
        Convergence: the last refinement moved the tile by at most this mean distance (target pixels).
    max_scale_change : float
        Convergence: the fitted scale stays within ``1 +/- max_scale_change``.
    seed : int
        RANSAC seed.
    candidates : int
        The best distinct template matches refined; the one that converges with the highest correlation wins.
    accept_score : float
        A match that converges with at least this correlation is taken without refining the others.
    smooth : float
        Gaussian sigma (pixels) applied to tile and target first (0: none); helps where the prediction
        matches the target only in its coarse features.
    residual_px : float
        RANSAC inlier distance (target pixels) of the similarity fit to the flow.
    refine : {"flow", "ncc"}
        How a template match is refined: optical flow + RANSAC similarity (the paper's method; for targets
        with structure everywhere), or the similarity that maximizes the correlation directly
        (:func:`~stainfree.register.refine.ncc_refine`; for sparse targets such as a few labelled nuclei,
        where the flow has nothing to follow). ``"ncc"`` refines every candidate and tests the inlier-free
        criteria below.
    min_margin : float
        ``"ncc"`` only, convergence: the best refined candidate's correlation exceeds that of every other
        refined candidate placed elsewhere (more than 5 px away) by at least this (an ambiguous match fails).
    target_content : float
        Convergence: more than this fraction of the target pixels under the registered tile lie above half
        the target's robust maximum (its 99.9th percentile, from its median): the content filter applied to
        the target side, so that a tile is not "registered" onto empty background (0: off).

    Returns
    -------
    Registration
    """
    tile = np.asarray(tile, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if smooth > 0:
        tile = ndimage.gaussian_filter(tile, smooth, mode="reflect")
        target = ndimage.gaussian_filter(target, smooth, mode="reflect")
    found = match_candidates(tile, target, angles=angles)
    margin = found[0].score - found[1].score if len(found) > 1 else 1.0
    level = None
    if target_content > 0:
        finite = target[np.isfinite(target)]
        bg, top = np.percentile(finite, (50.0, 99.9)) if finite.size else (0.0, 0.0)
        level = float(bg + 0.5 * (top - bg))
    if refine == "ncc":
        r = _refine_ncc(
            tile,
            target,
            found[: max(1, candidates)],
            min_score,
            min_margin,
            max_scale_change,
            target_content,
            level,
        )
        r.extra["match_margin"] = margin
        return r
    best: Registration | None = None
    for m in found[: max(1, candidates)]:
        r = _refine(
            tile,
            target,
            m,
            iterations,
            flow,
            seed,
            min_score,
            min_inliers,
            max_update_px,
            max_scale_change,
            residual_px,
        )
        if r.converged and level is not None:
            r = _check_target_content(r, tile.shape, target, target_content, level)
        if best is None or (r.converged, r.score) > (best.converged, best.score):
            best = r
        if best.converged and best.score >= accept_score:
            break
    assert best is not None
    best.extra["match_margin"] = margin
    return best


def _refine(
    tile: np.ndarray,
    target: np.ndarray,
    m: Match,
    iterations: int,
    flow: Literal["ilk", "tvl1"],
    seed: int,
    min_score: float,
    min_inliers: float,
    max_update_px: float,
    max_scale_change: float,
    residual_px: float,
) -> Registration:
    """Flow + similarity refinements from one template match, and the convergence test."""
    t = m.transform
    last, inl, reason = float("inf"), 0.0, ""
    for i in range(iterations):
        step = flow_step(tile, target, t, method=flow, seed=seed + i, residual_px=residual_px)
        if step is None:
            reason = "no similarity fits the flow (too few points with structure, or no consensus)"
            break
        if abs(step.transform.scale - 1.0) > 2 * max_scale_change:
            reason = f"flow fit a scale of {step.transform.scale:.3f}"
            break
        t, last, inl = step.transform, step.update_px, step.inliers / max(step.points, 1)
        if last < 0.05:
            break
    score = ncc(tile, warp_into(target, t, tile.shape))
    if not reason:
        if score < min_score:
            reason = f"correlation {score:.2f} < {min_score}"
        elif inl < min_inliers:
            reason = f"inlier fraction {inl:.2f} < {min_inliers}"
        elif last > max_update_px:
            reason = f"last update {last:.2f} px > {max_update_px}"
        elif abs(t.scale - 1.0) > max_scale_change:
            reason = f"scale {t.scale:.3f} outside 1 +/- {max_scale_change}"
        elif mean_displacement_error(m.transform, t, tile.shape) > 0.25 * min(tile.shape):
            reason = "the flow moved the tile far from the template match"
    return Registration(
        transform=t,
        converged=not reason,
        score=score,
        match_score=m.score,
        inlier_fraction=inl,
        last_update_px=last if np.isfinite(last) else -1.0,
        reason=reason,
        extra={"match_angle_deg": m.angle_deg},
    )


def _check_target_content(
    r: Registration, shape: tuple[int, ...], target: np.ndarray, fraction: float, level: float
) -> Registration:
    """``r`` failed when too little of the target under the registered tile is above ``level``."""
    under = warp_into(target, r.transform, shape)
    found = content_fraction(under, level)
    r.extra["target_content"] = found
    if found > fraction:
        return r
    reason = f"target content {found:.3f} <= {fraction} under the registered tile"
    return replace(r, converged=False, reason=reason, extra=r.extra)


def _refine_ncc(
    tile: np.ndarray,
    target: np.ndarray,
    found: Sequence[Match],
    min_score: float,
    min_margin: float,
    max_scale_change: float,
    target_content: float,
    level: float | None,
) -> Registration:
    """Every template match refined by :func:`ncc_refine`; the best one and the convergence test."""
    refined = [(m, *ncc_refine(tile, target, m.transform)) for m in found]
    refined.sort(key=lambda x: -x[2])
    m, t, score = refined[0]
    others = [s for _, o, s in refined[1:] if mean_displacement_error(o, t, tile.shape) > 5.0]
    margin = score - max(others) if others else 1.0
    update = mean_displacement_error(m.transform, t, tile.shape)
    reason = ""
    if score < min_score:
        reason = f"correlation {score:.2f} < {min_score}"
    elif margin < min_margin:
        reason = f"ambiguous: another placement correlates within {margin:.3f} (< {min_margin})"
    elif abs(t.scale - 1.0) > max_scale_change:
        reason = f"scale {t.scale:.3f} outside 1 +/- {max_scale_change}"
    elif update > 0.25 * min(tile.shape):
        reason = "the refinement moved the tile far from the template match"
    r = Registration(
        transform=t,
        converged=not reason,
        score=ncc(tile, warp_into(target, t, tile.shape)),
        match_score=m.score,
        inlier_fraction=0.0,
        last_update_px=update,
        reason=reason,
        extra={
            "match_angle_deg": m.angle_deg,
            "refined_score": score,
            "refined_margin": margin,
        },
    )
    if r.converged and level is not None:
        r = _check_target_content(r, tile.shape, target, target_content, level)
    return r
