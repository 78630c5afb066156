"""Evaluate predictions against targets: tidy tables (one row per image and structure).

Regression (virtual staining): Pearson r, NMSE and the ceiling C_max of r set by the target's noise, from the
noise-free target (simulator) or from unlabeled control images (fnet's method). Segmentation: accuracy,
precision, recall, F1, IoU and Manders' overlap per structure, and confusion matrices for multi-class outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from stainfree.errors import InputError
from stainfree.evaluate import metrics

__all__ = [
    "REGRESSION_COLUMNS",
    "SEGMENTATION_COLUMNS",
    "evaluate_regression",
    "evaluate_segmentation",
    "labels_from_prediction",
    "total_confusion_matrix",
]

REGRESSION_COLUMNS = ["image", "structure", "pearson_r", "nmse", "c_max", "r_over_cmax", "c_max_method"]
SEGMENTATION_COLUMNS = [
    "image",
    "structure",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "iou",
    "moc",
    "tp",
    "fp",
    "fn",
    "tn",
]

Pair = tuple[str, np.ndarray, np.ndarray]  # (image name, truth, prediction), channels first


def _zscore(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    sd = a.std()
    return (a - a.mean()) / sd if sd > 0 else a - a.mean()


def _channels(a: np.ndarray, n: int | None, what: str, name: str) -> np.ndarray:
    a = np.asarray(a)
    if n is not None and a.shape[0] != n:
        raise InputError(name, f"{what} has {a.shape[0]} channel(s), expected {n} (one per structure)")
    return a


def evaluate_regression(
    pairs: Sequence[Pair],
    structures: Sequence[str],
    *,
    clean_targets: Sequence[np.ndarray] | None = None,
    controls: Mapping[str, Sequence[np.ndarray]] | None = None,
    nmse_scale: Literal["truth_zscore", "both_zscore", "none"] = "truth_zscore",
) -> Any:
    """Score virtual-staining predictions: one row per image and structure.

    Parameters
    ----------
    pairs : sequence of (name, truth, prediction)
        Truth and prediction as ``(C, ...)`` arrays of the same shape, one channel per structure.
    structures : sequence of str
        The structure of each channel.
    clean_targets : sequence of ndarray, optional
        Noise-free targets aligned with ``pairs`` (simulated data): exact C_max per image
        (:func:`~stainfree.evaluate.metrics.c_max_from_clean`).
    controls : mapping of structure -> images, optional
        Unlabeled control images per structure: C_max per structure from the targets of all pairs and the
        controls (:func:`~stainfree.evaluate.metrics.c_max_from_controls`). Used where no clean target is
        given.
    nmse_scale : {"truth_zscore", "both_zscore", "none"}
        Intensity scale of the NMSE: the truth z-scored and the prediction as is (right for stainfree
        predictions, which are in z-scored target units), both z-scored, or both raw.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REGRESSION_COLUMNS`; ``c_max`` and ``r_over_cmax`` are NaN (method ``"none"``) when
        neither clean targets nor controls are given.
    """
    import pandas as pd

    n = len(structures)
    if clean_targets is not None and len(clean_targets) != len(pairs):
        raise InputError("clean targets", f"{len(clean_targets)} given for {len(pairs)} prediction(s)")
    control_cmax: dict[str, float] = {}
    if controls:
        for c, s in enumerate(structures):
            if s in controls and len(controls[s]):
                targets = [np.asarray(t)[c] for _, t, _ in pairs]
                control_cmax[s] = metrics.c_max_from_controls(targets, list(controls[s]))
    rows = []
    for i, (name, truth, pred) in enumerate(pairs):
        truth = _channels(truth, n, "target", name)
        pred = _channels(pred, n, "prediction", name)
        clean = _channels(clean_targets[i], n, "clean target", name) if clean_targets is not None else None
        for c, s in enumerate(structures):
            t, p = np.asarray(truth[c], dtype=np.float64), np.asarray(pred[c], dtype=np.float64)
            r = metrics.pearson(t, p)
            if nmse_scale == "truth_zscore":
                err = metrics.nmse(_zscore(t), p)
            elif nmse_scale == "both_zscore":
                err = metrics.nmse(_zscore(t), _zscore(p))
            else:
                err = metrics.nmse(t, p)
            if clean is not None:
                cmax, method = metrics.c_max_from_clean(t, clean[c]), "clean"
            elif s in control_cmax:
                cmax, method = control_cmax[s], "controls"
            else:
                cmax, method = float("nan"), "none"
            ratio = r / cmax if cmax > 0 else float("nan")
            rows.append([name, s, r, err, cmax, ratio, method])
    return pd.DataFrame(rows, columns=REGRESSION_COLUMNS)


def labels_from_prediction(pred: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Masks or a label map from a prediction.

    ``binary``: ``(C, ...)`` probabilities (float, thresholded) or masks -> bool ``(C, ...)``. ``multiclass``:
    ``(K, ...)`` probabilities -> argmax label map ``(...)``; an integer array is taken as a label map
    already.
    """
    pred = np.asarray(pred)
    if task == "binary":
        return pred >= threshold if np.issubdtype(pred.dtype, np.floating) else pred.astype(bool)
    if np.issubdtype(pred.dtype, np.floating):
        return np.argmax(pred, axis=0)
    return pred


def evaluate_segmentation(
    pairs: Sequence[Pair],
    structures: Sequence[str],
    *,
    task: Literal["binary", "multiclass"] = "binary",
    threshold: float = 0.5,
    skip_background: bool = True,
) -> Any:
    """Score segmentations: one row per image and structure.

    Parameters
    ----------
    pairs : sequence of (name, truth, prediction)
        ``binary``: truth masks ``(C, ...)`` and probabilities or masks ``(C, ...)``, one channel per
        structure. ``multiclass``: truth label map ``(...)`` with values ``0..K-1`` and probabilities ``(K,
        ...)`` or a label map ``(...)``.
    structures : sequence of str
        Structure of each channel (binary) or name of each class id (multiclass, class 0 first).
    task : {"binary", "multiclass"}
        Kind of output.
    threshold : float
        Probability threshold of binary outputs.
    skip_background : bool
        Multiclass: leave class 0 out of the table.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SEGMENTATION_COLUMNS` (MOC uses the probabilities when given).
    """
    import pandas as pd

    rows = []
    for name, truth, pred in pairs:
        truth, pred = np.asarray(truth), np.asarray(pred)
        if task == "binary":
            truth = _channels(truth, len(structures), "target", name)
            pred = _channels(pred, len(structures), "prediction", name)
            for c, s in enumerate(structures):
                score = metrics.segmentation_scores(truth[c] > 0, pred[c], threshold=threshold)
                rows.append({"image": name, "structure": s, **score})
            continue
        labels = labels_from_prediction(pred, "multiclass")
        probs = pred if np.issubdtype(pred.dtype, np.floating) and pred.ndim == truth.ndim + 1 else None
        if labels.shape != truth.shape:
            raise InputError(name, f"prediction labels {labels.shape} do not match the target {truth.shape}")
        for k, s in enumerate(structures):
            if k == 0 and skip_background:
                continue
            t = truth == k
            p_in = probs[k] if probs is not None else labels == k
            score = metrics.segmentation_scores(t, p_in, threshold=threshold)
            if probs is not None:  # the class decision is the argmax, not a threshold on one channel
                hard = metrics.segmentation_scores(t, labels == k)
                score = {**hard, "moc": score["moc"]}
            rows.append({"image": name, "structure": s, **score})
    return pd.DataFrame(rows, columns=SEGMENTATION_COLUMNS)


def total_confusion_matrix(pairs: Sequence[Pair], n_classes: int) -> np.ndarray:
    """Confusion matrix (rows truth, columns prediction) summed over multiclass pairs."""
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    for _, truth, pred in pairs:
        total += metrics.confusion_matrix(
            np.asarray(truth), labels_from_prediction(pred, "multiclass"), n_classes
        )
    return total
