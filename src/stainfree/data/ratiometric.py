"""Ratiometric images of one solvatochromic dye (Nile Red): intensity and emission ratio, pure numpy.

Nile Red emits yellow in apolar membranes (lipid droplets, ER) and red in polar ones (plasma membrane,
endosomes).
From the two emission channels Y and R we form two network inputs:

* ``intensity = (Y + R) / 2`` -- how much dye is there;
* ``ratio = R / Y`` -- the polarity of its surroundings, independent of the amount of dye.

The camera adds an offset (and the medium a dim background) to both channels alike; left in, it pulls every
ratio towards 1 and hides the dye's spectral shift. So each channel's background level is subtracted first
(estimated from the image, or given). The ratio is only meaningful where there is signal, so it is set to 0
in the background.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from stainfree.errors import InputError

__all__ = [
    "auto_background_threshold",
    "estimate_offset",
    "intensity_ratio",
    "li_threshold",
    "otsu_threshold",
]


def _finite_range(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The finite values (float64, flat) and their min and max; (empty, 0.0, 0.0) when there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return v, 0.0, 0.0
    return v, float(v.min()), float(v.max())


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of a set of finite values (numpy only).

    Parameters
    ----------
    values : ndarray
        Any shape; non-finite values are ignored.
    nbins : int
        Number of histogram bins.

    Returns
    -------
    float
        The threshold maximising the between-class variance; the single value when all values are equal,
        and 0.0 for an empty input.
    """
    v, lo, hi = _finite_range(values)
    if v.size == 0 or hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=nbins, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centers[int(np.argmax(between[:-1]))]) if between.size > 1 else float(centers[0])


def li_threshold(values: np.ndarray, max_iter: int = 200) -> float:
    """Li's minimum cross-entropy threshold of a set of finite values (numpy only, iterative).

    Returns the single value when all values are equal and 0.0 for an empty input.
    """
    v, lo, hi = _finite_range(values)
    if v.size == 0 or hi <= lo:
        return lo
    x = v - lo + 1e-12  # positive, so the logarithms exist

    def means(t: float) -> tuple[float, float]:
        fg = x > t
        return float(x[fg].mean()), float(x[~fg].mean())

    return float(li_iterate(means, float(x.mean()), (hi - lo) * 1e-5, max_iter) + lo)


def li_iterate(
    means: Callable[[float], tuple[float, float]], t: float, tol: float, max_iter: int = 200
) -> float:
    """Li's iteration: ``t <- (m_back - m_fore) / (ln m_back - ln m_fore)`` until it moves by at most ``tol``.

    ``means(t)`` gives the mean of the (positive) values above ``t`` and of the rest; in memory
    (:func:`li_threshold`) or streamed over slabs (:mod:`stainfree.data.ratioblocks`).
    """
    for _ in range(max_iter):
        m_fore, m_back = means(t)
        t_next = float((m_back - m_fore) / (np.log(m_back) - np.log(m_fore)))
        if abs(t_next - t) <= tol:
            return t_next
        t = t_next
    return t


def auto_background_threshold(intensity: np.ndarray) -> float:
    """Automatic background level of an intensity image: Li's threshold of ``log1p(intensity)``.

    Fluorescence intensities are strongly skewed (a dim camera background, a dim stained cytoplasm, a few
    very bright droplets), so the histogram is taken on a log scale. Li's minimum cross-entropy threshold on
    it separates the camera background from anything stained both in sparse fields (mostly background) and
    in fields packed with cells (mostly dim cytoplasm), where Otsu's threshold would cut into the cytoplasm.
    The result is transformed back to intensity units. Pass a fixed ``background_threshold`` to
    :func:`intensity_ratio` when the camera background is known.

    Parameters
    ----------
    intensity : ndarray
        Non-negative intensity image, any shape.

    Returns
    -------
    float
        Threshold in intensity units (voxels strictly below it are background).
    """
    v = np.asarray(intensity, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    return float(np.expm1(li_threshold(np.log1p(np.clip(v, 0, None)))))


def estimate_offset(channel: np.ndarray, min_background_fraction: float = 0.05) -> float:
    """Background level of one fluorescence channel (camera offset plus medium background), in its units.

    The median of the voxels that :func:`auto_background_threshold` calls background, when they are at least
    ``min_background_fraction`` of the image; otherwise (a field packed with cells) the 1st percentile of the
    channel smoothed over 2 voxels. In a field without any background the estimate is the level of the
    dimmest stained voxels, not the camera offset: pass the offset as a number when it is known.

    Parameters
    ----------
    channel : ndarray
        One channel, any shape; non-finite values are ignored.
    min_background_fraction : float
        Smallest fraction of background voxels for which their median is used.

    Returns
    -------
    float
        The level (0.0 for an empty input).
    """
    v = np.asarray(channel, dtype=np.float32)
    finite = np.isfinite(v)
    if not finite.any():
        return 0.0
    v = np.where(finite, v, 0.0).astype(np.float32)
    t = auto_background_threshold(v)
    back = v[(v < t) & finite]
    if back.size >= min_background_fraction * v.size and back.size > 0:
        return float(np.median(back))
    from scipy import ndimage

    smooth = ndimage.uniform_filter(v, size=5 if v.ndim <= 2 else (1,) * (v.ndim - 2) + (5, 5))
    return float(np.percentile(smooth[finite], 1.0))


def intensity_ratio(
    yellow: np.ndarray,
    red: np.ndarray,
    *,
    offset: float | tuple[float, float] | str | None = None,
    background_threshold: float | None = None,
    clip_percentile: float | None = 99.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity ``(Y+R)/2`` and emission ratio ``R/Y`` of a Nile Red image.

    Parameters
    ----------
    yellow, red : ndarray
        The two emission channels, same shape (any number of dimensions). NaN/Inf are treated as 0; values
        that are negative after the offset is subtracted are clipped to 0.
    offset : float, (float, float), "auto" or None
        Background level subtracted from each channel first (camera offset + medium): one number for both,
        one per channel (yellow, red), "auto" (:func:`estimate_offset` of each channel), or None (nothing
        subtracted: the channels are already background-corrected).
    background_threshold : float, optional
        Intensity below which a voxel is background and gets ratio 0. Default: automatic
        (:func:`auto_background_threshold`, Li's threshold of log intensity). Pass 0 to keep every voxel
        with signal.
    clip_percentile : float or None
        The ratio is clipped at this percentile of its foreground values (outliers from dim yellow voxels);
        None disables clipping.

    Returns
    -------
    intensity, ratio : ndarray of float32
        Same shape as the inputs, always finite. ``ratio`` is 0 where the intensity is below the threshold or
        where
        Y <= 0.

    Raises
    ------
    InputError
        When the channels differ in shape (the message names both inputs).

    Warns
    -----
    UserWarning
        When the yellow channel is zero everywhere (the ratio is then 0 everywhere).
    """
    y = np.asarray(yellow)
    r = np.asarray(red)
    if y.shape != r.shape:
        raise InputError(
            "yellow/red channels", f"yellow has shape {y.shape} but red has shape {r.shape}; they must match"
        )
    y = np.nan_to_num(y.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    r = np.nan_to_num(r.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    if isinstance(offset, str):
        if offset != "auto":
            raise ValueError(f"offset must be a number, two numbers, 'auto' or None, got {offset!r}")
        y -= estimate_offset(y)
        r -= estimate_offset(r)
    elif offset is not None:
        if isinstance(offset, tuple | list | np.ndarray):
            oy, orr = offset
        else:
            oy = orr = offset
        y -= float(oy)
        r -= float(orr)
    np.clip(y, 0, None, out=y)
    np.clip(r, 0, None, out=r)
    intensity = (y + r) / 2
    if not np.any(y > 0):
        warnings.warn(
            "the yellow channel is zero everywhere; the ratio R/Y is set to 0", UserWarning, stacklevel=2
        )
        return intensity.astype(np.float32), np.zeros_like(intensity, dtype=np.float32)
    t = auto_background_threshold(intensity) if background_threshold is None else float(background_threshold)
    valid = (y > 0) & (intensity >= t)
    ratio, valid = safe_ratio(y, r, valid)
    if clip_percentile is not None and np.any(valid):
        hi = float(np.percentile(ratio[valid], clip_percentile))
        np.clip(ratio, 0, hi, out=ratio)
    ratio[~np.isfinite(ratio)] = 0.0
    return intensity.astype(np.float32), ratio


def safe_ratio(y: np.ndarray, r: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R / Y as float32 where ``valid`` and the quotient is finite and within float32, 0 elsewhere.

    Returns
    -------
    ratio : ndarray of float32
    valid : ndarray of bool
        ``valid`` without the voxels whose quotient was dropped.
    """
    ratio64 = np.zeros(np.shape(valid), dtype=np.float64)
    np.divide(r, y, out=ratio64, where=valid, dtype=np.float64)
    too_big = ~np.isfinite(ratio64) | (ratio64 > np.finfo(np.float32).max)
    ratio64[too_big] = 0.0
    return ratio64.astype(np.float32), valid & ~too_big
