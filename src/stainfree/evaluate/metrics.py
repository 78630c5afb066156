"""Image-quality and segmentation metrics: pure numpy, ``(truth, prediction)`` argument order everywhere.

No function here divides by zero. Where a ratio is undefined (an empty mask, a constant image) the value is
fixed by a documented convention:

- a score that compares two sets (precision, recall, F1, IoU, Manders) is **1.0 when both are empty** (nothing
  to find, nothing found) and **0.0 when only one of them is empty**;
- Pearson's r of two constant images is 1.0 if they are equal and 0.0 otherwise; r of one constant image
  against a varying one is 0.0;
- the normalised MSE of an all-zero truth is 0.0 for an all-zero prediction and ``inf`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stainfree.errors import InputError

__all__ = [
    "accuracy",
    "c_max_from_clean",
    "c_max_from_controls",
    "c_max_from_snr",
    "confusion_matrix",
    "f1",
    "iou",
    "manders",
    "nmse",
    "normalize_rows",
    "object_scores",
    "pearson",
    "precision",
    "recall",
    "segmentation_scores",
]


def _pair(truth: np.ndarray, pred: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as ``dtype``, checked to have the same shape."""
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise InputError("prediction", f"shape {p.shape} does not match the truth shape {t.shape}")
    return t.astype(dtype, copy=False), p.astype(dtype, copy=False)


def _masks(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as boolean masks (non-zero = foreground), checked to have the same shape."""
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise InputError("prediction", f"shape {p.shape} does not match the truth shape {t.shape}")
    return t.astype(bool, copy=False), p.astype(bool, copy=False)


def _counts(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """True positives, false positives, false negatives, true negatives of two masks."""
    t, p = _masks(truth, pred)
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    tn = t.size - tp - fp - fn
    return tp, fp, fn, tn


def _ratio(num: float, den: float, both_empty: float) -> float:
    """``num / den``, or ``both_empty`` when ``den`` is zero."""
    return float(num) / float(den) if den > 0 else float(both_empty)


# ----- regression (virtual staining) ----------------------------------------------------------------------


def pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    """Pearson correlation coefficient r between two images of the same shape.

    Parameters
    ----------
    truth, pred : ndarray
        Target and prediction (any shape, same shape).

    Returns
    -------
    float
        r in [-1, 1]. Two constant images give 1.0 if they are equal and 0.0 otherwise; a constant image
        against a varying one gives 0.0.
    """
    t, p = _pair(truth, pred)
    if t.size == 0:
        return 1.0
    dt = t - t.mean()
    dp = p - p.mean()
    st = float(np.sum(dt * dt))
    sp = float(np.sum(dp * dp))
    if st == 0.0 or sp == 0.0:
        if st == 0.0 and sp == 0.0:
            return 1.0 if np.array_equal(t, p) else 0.0
        return 0.0
    r = float(np.sum(dt * dp)) / np.sqrt(st * sp)
    return float(np.clip(r, -1.0, 1.0))


def nmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mean squared error ``sum((t - p)^2) / sum(t^2)``.

    The normalisation makes a blank prediction (all zeros) score exactly 1.0 and a perfect one 0.0; values
    above 1 are worse than predicting nothing. Compare images on the same intensity scale (e.g. both z-scored
    or both raw).

    Returns
    -------
    float
        The ratio; for an all-zero truth, 0.0 when the prediction is all zero too and ``inf`` otherwise.
    """
    t, p = _pair(truth, pred)
    err = float(np.sum((t - p) ** 2))
    energy = float(np.sum(t * t))
    if energy == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return err / energy


def c_max_from_snr(snr: float) -> float:
    """Highest Pearson r any prediction can reach against a noisy target: ``sqrt(snr / (1 + snr))``.

    With target ``T = S + N`` (signal plus independent noise) the best possible prediction is ``S`` and
    ``corr(S, T) = sqrt(var S / (var S + var N))`` (Ounkomol et al. 2018, fnet).

    Parameters
    ----------
    snr : float
        Signal-to-noise *power* ratio ``var(S) / var(N)`` (not an amplitude ratio, not in dB). Values <= 0
        give 0.0, ``inf`` gives 1.0.
    """
    snr = float(snr)
    if not snr > 0.0:  # also catches nan
        return 0.0
    if np.isinf(snr):
        return 1.0
    return float(np.sqrt(snr / (1.0 + snr)))


def _as_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        return [images]
    return [np.asarray(im) for im in images]


def c_max_from_controls(
    target_images: np.ndarray | Sequence[np.ndarray], control_images: np.ndarray | Sequence[np.ndarray]
) -> float:
    """C_max estimated from unlabeled control images taken with the same settings (fnet's method).

    Noise variance = mean variance of the control images (cells without the fluorescent label, same microscope
    settings); signal variance = mean variance of the target images minus the noise variance (clipped at 0);
    then :func:`c_max_from_snr` of their ratio.

    Parameters
    ----------
    target_images : ndarray or sequence of ndarray
        Fluorescence targets of one structure.
    control_images : ndarray or sequence of ndarray
        Unlabeled controls on the same intensity scale.

    Returns
    -------
    float
        C_max in [0, 1]; 1.0 when the controls have no variance (noise-free), 0.0 when the targets vary no
        more than the controls.
    """
    targets = _as_list(target_images)
    controls = _as_list(control_images)
    if not targets or not controls:
        raise InputError("c_max", "need at least one target and one control image")
    noise_var = float(np.mean([np.var(c.astype(np.float64)) for c in controls]))
    target_var = float(np.mean([np.var(t.astype(np.float64)) for t in targets]))
    signal_var = max(target_var - noise_var, 0.0)
    if noise_var == 0.0:
        return 1.0 if signal_var > 0.0 else 0.0
    return c_max_from_snr(signal_var / noise_var)


def c_max_from_clean(noisy: np.ndarray, clean: np.ndarray) -> float:
    """Exact C_max when the noise-free target is known (simulated data): Pearson r of ``noisy`` against
    ``clean``.

    The noise-free image is the best any predictor can output, so its correlation with the noisy target is the
    ceiling for r computed against that target.

    Parameters
    ----------
    noisy : ndarray
        The target a prediction is scored against (with noise).
    clean : ndarray
        The same target without noise.
    """
    return pearson(noisy, clean)


# ----- segmentation ---------------------------------------------------------------------------------------


def accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of voxels where the masks agree (non-zero = foreground); 1.0 for zero-size arrays."""
    t, p = _masks(truth, pred)
    return _ratio(int(np.count_nonzero(t == p)), t.size, 1.0)


def precision(truth: np.ndarray, pred: np.ndarray) -> float:
    """TP / (TP + FP). Empty prediction: 1.0 if the truth is empty too, else 0.0."""
    tp, fp, fn, _ = _counts(truth, pred)
    if tp + fp == 0:
        return 1.0 if fn == 0 else 0.0
    return tp / (tp + fp)


def recall(truth: np.ndarray, pred: np.ndarray) -> float:
    """TP / (TP + FN). Empty truth: 1.0 if the prediction is empty too, else 0.0."""
    tp, fp, fn, _ = _counts(truth, pred)
    if tp + fn == 0:
        return 1.0 if fp == 0 else 0.0
    return tp / (tp + fn)


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice / F1 = 2 TP / (2 TP + FP + FN). Both empty: 1.0; only one empty: 0.0."""
    tp, fp, fn, _ = _counts(truth, pred)
    return _ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def iou(truth: np.ndarray, pred: np.ndarray) -> float:
    """Jaccard index TP / (TP + FP + FN). Both empty: 1.0; only one empty: 0.0."""
    tp, fp, fn, _ = _counts(truth, pred)
    return _ratio(tp, tp + fp + fn, 1.0)


def manders(truth: np.ndarray, pred: np.ndarray) -> float:
    """Manders' overlap coefficient ``sum(x y) / sqrt(sum(x^2) sum(y^2))``.

    Works on masks and on intensities or probabilities alike. Both all zero: 1.0; only one all zero: 0.0.
    """
    t, p = _pair(truth, pred)
    st = float(np.sum(t * t))
    sp = float(np.sum(p * p))
    if st == 0.0 or sp == 0.0:
        return 1.0 if st == sp else 0.0
    return float(np.sum(t * p)) / float(np.sqrt(st * sp))


def confusion_matrix(truth_labels: np.ndarray, pred_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (truth class, predicted class) pairs: rows are truth, columns prediction.

    Parameters
    ----------
    truth_labels, pred_labels : ndarray of int
        Label maps of the same shape with values in ``[0, n_classes)``.
    n_classes : int
        Number of classes (including background 0 when present).

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
    """
    t, p = _pair(truth_labels, pred_labels, dtype=np.int64)
    if n_classes < 1:
        raise InputError("confusion matrix", f"n_classes must be >= 1, got {n_classes}")
    for name, a in (("truth", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise InputError(name, f"labels must lie in [0, {n_classes}), found {a.min()}..{a.max()}")
    flat = t.ravel() * n_classes + p.ravel()
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum (recall per truth class on the diagonal); all-zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float64)
    sums = m.sum(axis=1, keepdims=True)
    out = np.zeros_like(m)
    np.divide(m, sums, out=out, where=sums > 0)
    return out


def segmentation_scores(
    truth_mask: np.ndarray, pred_mask_or_prob: np.ndarray, threshold: float = 0.5
) -> dict:
    """All binary segmentation scores of one structure.

    Parameters
    ----------
    truth_mask : ndarray
        Ground-truth mask (non-zero = foreground).
    pred_mask_or_prob : ndarray
        Predicted mask (bool or integer, non-zero = foreground) or probability map (floating point, foreground
        where ``>= threshold``).
    threshold : float
        Probability threshold for floating-point predictions.

    Returns
    -------
    dict
        ``accuracy, precision, recall, f1, iou`` on the thresholded mask, ``moc`` (Manders' overlap of the
        truth mask with the prediction as given, probabilities included) and the counts ``tp, fp, fn, tn``.
    """
    t, _ = _masks(truth_mask, pred_mask_or_prob)
    p = np.asarray(pred_mask_or_prob)
    mask = p >= threshold if np.issubdtype(p.dtype, np.floating) else p.astype(bool)
    tp, fp, fn, tn = _counts(t, mask)
    return {
        "accuracy": accuracy(t, mask),
        "precision": precision(t, mask),
        "recall": recall(t, mask),
        "f1": f1(t, mask),
        "iou": iou(t, mask),
        "moc": manders(t, p),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def object_scores(
    truth_mask: np.ndarray, pred_mask: np.ndarray, *, iou_threshold: float = 0.5, min_voxels: int = 1
) -> dict:
    """Object-level detection scores: connected components matched one to one.

    Components of truth and prediction (full connectivity) are paired by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) maximising the summed IoU; a pair counts as a detection
    when its IoU is at least ``iou_threshold``. With a threshold of 0.5 or more every match is unique anyway,
    the assignment only makes it explicit.

    Parameters
    ----------
    truth_mask, pred_mask : ndarray
        Binary masks of the same shape (non-zero = foreground).
    iou_threshold : float
        Smallest IoU of a matched pair, in (0, 1].
    min_voxels : int
        Components smaller than this are ignored on both sides.

    Returns
    -------
    dict
        ``precision, recall, f1`` (1.0 when both have no object, 0.0 when only one has), ``matched,
        n_truth, n_pred`` and ``mean_matched_iou`` (0.0 without matches).
    """
    from scipy import ndimage
    from scipy.optimize import linear_sum_assignment

    t, p = _masks(truth_mask, pred_mask)
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    structure = ndimage.generate_binary_structure(t.ndim, t.ndim) if t.ndim else None

    def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab, n = ndimage.label(mask, structure=structure)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = np.flatnonzero(sizes[1:] >= min_voxels) + 1
        remap = np.zeros(n + 1, np.int64)
        remap[keep] = np.arange(1, keep.size + 1)
        return remap[lab], sizes[keep]

    lt, st = components(t)
    lp, sp = components(p)
    nt, npred = st.size, sp.size
    matched, mean_iou = 0, 0.0
    if nt and npred:
        both = (lt > 0) & (lp > 0)
        pair = lt[both] * (npred + 1) + lp[both]
        inter = np.bincount(pair, minlength=(nt + 1) * (npred + 1)).reshape(nt + 1, npred + 1)[1:, 1:]
        union = st[:, None] + sp[None, :] - inter
        iou_m = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        rows, cols = linear_sum_assignment(iou_m, maximize=True)
        good = iou_m[rows, cols] >= iou_threshold
        matched = int(good.sum())
        mean_iou = float(iou_m[rows, cols][good].mean()) if matched else 0.0
    return {
        "precision": _ratio(matched, npred, 1.0 if nt == 0 else 0.0),
        "recall": _ratio(matched, nt, 1.0 if npred == 0 else 0.0),
        "f1": _ratio(2 * matched, nt + npred, 1.0),
        "matched": matched,
        "n_truth": int(nt),
        "n_pred": int(npred),
        "mean_matched_iou": mean_iou,
    }
