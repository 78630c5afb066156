"""Precision and recall of detected time-lapse events against known ones (pure numpy / pandas).

Matching rule: a detected fission or fusion matches a true one of the same kind at frame +-``frame_tol``
within ``distance_um`` (event positions); a detected contact event matches a true one of the same structure
pair (either order) whose start and end are both within +-``frame_tol`` frames and whose position is within
``distance_um``. Each true event matches at most one detection (greedy, closest first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["match_events", "event_scores"]


def match_events(
    truth: pd.DataFrame,
    detected: pd.DataFrame,
    *,
    frame_tol: int = 1,
    distance_um: float = 1.5,
    contact: bool = False,
) -> tuple[int, int, int]:
    """Match detected events to true ones.

    Parameters
    ----------
    truth, detected : DataFrame
        Columns ``frame`` (contact: ``frame`` = start and ``end_frame``), ``z_um``, ``y_um``, ``x_um``, and
        for contacts ``structure_a``, ``structure_b``; an optional ``field`` column keeps fields apart.
    frame_tol : int
        Largest frame difference (contacts: of start and of end).
    distance_um : float
        Largest distance between positions.
    contact : bool
        Contact events (pair, start and end) instead of point events.

    Returns
    -------
    (matched, n_truth, n_detected)
    """
    if truth.empty or detected.empty:
        return 0, len(truth), len(detected)
    t = truth.reset_index(drop=True)
    d = detected.reset_index(drop=True)
    xyz = ["z_um", "y_um", "x_um"]
    dist = np.sqrt(((t[xyz].to_numpy()[:, None] - d[xyz].to_numpy()[None]) ** 2).sum(-1))
    ok = dist <= distance_um
    ok &= np.abs(t["frame"].to_numpy()[:, None] - d["frame"].to_numpy()[None]) <= frame_tol
    if "field" in t.columns and "field" in d.columns:
        ok &= t["field"].to_numpy()[:, None] == d["field"].to_numpy()[None]
    if contact:
        ok &= np.abs(t["end_frame"].to_numpy()[:, None] - d["end_frame"].to_numpy()[None]) <= frame_tol
        pt = [frozenset(p) for p in zip(t["structure_a"], t["structure_b"], strict=True)]
        pd_ = [frozenset(p) for p in zip(d["structure_a"], d["structure_b"], strict=True)]
        ok &= np.array([[a == b for b in pd_] for a in pt], dtype=bool).reshape(ok.shape)
    pairs = sorted(zip(*np.nonzero(ok), strict=True), key=lambda ij: dist[ij])
    used_t: set[int] = set()
    used_d: set[int] = set()
    for i, j in pairs:
        if i not in used_t and j not in used_d:
            used_t.add(int(i))
            used_d.add(int(j))
    return len(used_t), len(t), len(d)


def event_scores(matched: int, n_truth: int, n_detected: int) -> tuple[float, float]:
    """(precision, recall); 1.0 where there is nothing to find or nothing was found."""
    precision = matched / n_detected if n_detected else 1.0
    recall = matched / n_truth if n_truth else 1.0
    return float(precision), float(recall)
