"""Hand-computed cases for stainfree.evaluate.metrics, including the empty and constant conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stainfree.errors import InputError
from stainfree.evaluate import metrics as m

# ----- pearson ---------------------------------------------------------------------------------------------


def test_pearson_hand_cases():
    t = np.array([1.0, 2.0, 3.0])
    assert m.pearson(t, t) == pytest.approx(1.0)
    assert m.pearson(t, -t) == pytest.approx(-1.0)
    assert m.pearson(t, 5 * t + 7) == pytest.approx(1.0)
    # t = [1,2,3], p = [1,3,2]: deviations (-1,0,1) and (-1,1,0): cov 1, var 2 and 2 -> r = 0.5
    assert m.pearson(t, np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)


def test_pearson_constant_conventions():
    c = np.full((4, 4), 3.0)
    assert m.pearson(c, c) == 1.0
    assert m.pearson(c, c + 1) == 0.0
    assert m.pearson(c, np.arange(16.0).reshape(4, 4)) == 0.0
    assert m.pearson(np.arange(16.0).reshape(4, 4), c) == 0.0


def test_pearson_shape_mismatch_is_input_error():
    with pytest.raises(InputError, match="does not match"):
        m.pearson(np.zeros(3), np.zeros(4))


# ----- nmse -----------------------------------------------------------------------------------------------


def test_nmse_hand_cases():
    t = np.array([1.0, 2.0, 2.0])  # sum t^2 = 9
    assert m.nmse(t, np.zeros(3)) == pytest.approx(1.0)  # blank prediction scores 1
    assert m.nmse(t, t) == 0.0
    assert m.nmse(t, np.array([1.0, 2.0, 5.0])) == pytest.approx(9.0 / 9.0)
    assert m.nmse(t, np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0 / 9.0)


def test_nmse_zero_truth():
    assert m.nmse(np.zeros(5), np.zeros(5)) == 0.0
    assert math.isinf(m.nmse(np.zeros(5), np.ones(5)))


# ----- C_max ----------------------------------------------------------------------------------------------


def test_c_max_from_snr():
    assert m.c_max_from_snr(1.0) == pytest.approx(math.sqrt(0.5))
    assert m.c_max_from_snr(3.0) == pytest.approx(math.sqrt(0.75))
    assert m.c_max_from_snr(0.0) == 0.0
    assert m.c_max_from_snr(-2.0) == 0.0
    assert m.c_max_from_snr(float("nan")) == 0.0
    assert m.c_max_from_snr(float("inf")) == 1.0


def test_c_max_from_controls_hand_case():
    # controls: variance 1 (values +-1); targets: variance 4 (values +-2) -> signal var 3, SNR 3
    control = np.array([1.0, -1.0, 1.0, -1.0])
    target = np.array([2.0, -2.0, 2.0, -2.0])
    assert m.c_max_from_controls([target, target], [control]) == pytest.approx(math.sqrt(0.75))
    assert m.c_max_from_controls(target, control) == pytest.approx(math.sqrt(0.75))


def test_c_max_from_controls_edges():
    flat = np.zeros(4)
    target = np.array([2.0, -2.0, 2.0, -2.0])
    assert m.c_max_from_controls(target, flat) == 1.0  # noise-free controls
    assert m.c_max_from_controls(target, target * 2) == 0.0  # target varies less than the noise
    assert m.c_max_from_controls(flat, flat) == 0.0
    with pytest.raises(InputError):
        m.c_max_from_controls([], [flat])


def test_c_max_from_clean_matches_theory():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=200_000)
    noisy = clean + rng.normal(size=clean.size)  # SNR 1
    assert m.c_max_from_clean(noisy, clean) == pytest.approx(math.sqrt(0.5), abs=5e-3)
    assert m.c_max_from_clean(clean, clean) == pytest.approx(1.0)


# ----- binary segmentation --------------------------------------------------------------------------------

T = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
P = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)  # TP 2, FP 1, FN 1, TN 4


def test_binary_scores_hand_case():
    assert m.accuracy(T, P) == pytest.approx(6 / 8)
    assert m.precision(T, P) == pytest.approx(2 / 3)
    assert m.recall(T, P) == pytest.approx(2 / 3)
    assert m.f1(T, P) == pytest.approx(2 / 3)
    assert m.iou(T, P) == pytest.approx(2 / 4)
    assert m.manders(T, P) == pytest.approx(2 / 3)  # 2 / sqrt(3 * 3)


@pytest.mark.parametrize("fn", [m.precision, m.recall, m.f1, m.iou, m.manders])
def test_empty_conventions(fn):
    empty = np.zeros(6, dtype=bool)
    full = np.ones(6, dtype=bool)
    assert fn(empty, empty) == 1.0
    assert fn(empty, full) == 0.0
    assert fn(full, empty) == 0.0


def test_empty_specifics():
    empty = np.zeros(4, dtype=bool)
    some = np.array([1, 0, 0, 0], dtype=bool)
    # empty truth, non-empty prediction: precision 0 (all false positives), recall 0 by convention
    assert m.precision(empty, some) == 0.0
    assert m.recall(empty, some) == 0.0
    # empty prediction, non-empty truth: recall 0, precision 0 by convention
    assert m.recall(some, empty) == 0.0
    assert m.precision(some, empty) == 0.0
    assert m.accuracy(empty, some) == pytest.approx(0.75)
    assert m.accuracy(empty, empty) == 1.0


def test_manders_on_intensities():
    x = np.array([1.0, 2.0, 0.0])
    y = np.array([2.0, 1.0, 3.0])  # sum xy = 4, sum x^2 = 5, sum y^2 = 14
    assert m.manders(x, y) == pytest.approx(4 / math.sqrt(70))


def test_segmentation_scores_thresholds_probabilities():
    prob = np.array([0.9, 0.8, 0.2, 0.6, 0.1, 0.0, 0.0, 0.0])
    s = m.segmentation_scores(T, prob)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 1, 1, 4)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["iou"] == pytest.approx(0.5)
    # MOC uses the probabilities: sum = 0.9 + 0.8 + 0.2 = 1.9; sqrt(3 * (0.81 + 0.64 + 0.04 + 0.36 + 0.01))
    assert s["moc"] == pytest.approx(1.9 / math.sqrt(3 * 1.86))
    assert m.segmentation_scores(T, P.astype(np.uint8))["f1"] == pytest.approx(2 / 3)


# ----- confusion matrix -----------------------------------------------------------------------------------


def test_confusion_matrix_hand_case():
    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    cm = m.confusion_matrix(truth, pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert cm.sum() == truth.size
    norm = m.normalize_rows(np.array([[1, 1, 0], [0, 0, 0], [1, 0, 3]]))
    np.testing.assert_allclose(norm, [[0.5, 0.5, 0], [0, 0, 0], [0.25, 0, 0.75]])


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(InputError, match="labels must lie"):
        m.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
