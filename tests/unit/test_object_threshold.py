"""Object-level detection scores and the per-bundle probability threshold chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.evaluate.metrics import object_scores


def test_object_scores_match_one_to_one_at_iou_half():
    truth = np.zeros((20, 40), bool)
    truth[2:6, 2:6] = True  # found exactly
    truth[10:14, 10:14] = True  # found shifted: IoU 8/24 < 0.5
    truth[2:6, 30:34] = True  # missed
    pred = np.zeros_like(truth)
    pred[2:6, 2:6] = True
    pred[10:14, 12:16] = True
    pred[15:19, 30:34] = True  # false positive
    s = object_scores(truth, pred)
    assert (s["n_truth"], s["n_pred"], s["matched"]) == (3, 3, 1)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(1 / 3)
    assert s["mean_matched_iou"] == 1.0
    # a lower IoU threshold accepts the shifted object too
    assert object_scores(truth, pred, iou_threshold=0.3)["matched"] == 2


def test_object_scores_one_prediction_covers_two_objects_matches_at_most_one():
    truth = np.zeros((10, 10), bool)
    truth[1:4, 1:4] = True
    truth[1:4, 5:8] = True
    pred = np.zeros_like(truth)
    pred[1:4, 1:8] = True  # one merged component: IoU 9/21 with each
    s = object_scores(truth, pred, iou_threshold=0.4)
    assert (s["matched"], s["n_truth"], s["n_pred"]) == (1, 2, 1)
    assert s["recall"] == 0.5 and s["precision"] == 1.0


def test_object_scores_empty_conventions():
    e = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    assert object_scores(e, e)["f1"] == 1.0
    assert object_scores(full, e)["f1"] == 0.0 and object_scores(e, full)["precision"] == 0.0


def test_choose_threshold_best_pooled_f1_closest_to_half():
    torch = pytest.importorskip("torch")
    from stainfree.data.dataset import PreparedImages
    from stainfree.train.fit_data import THRESHOLD_GRID, choose_threshold

    class Logit(torch.nn.Module):
        def forward(self, x):  # the input is already the probability: logit of it
            return torch.logit(x[:, :1].clamp(1e-4, 1 - 1e-4))

    truth = np.zeros((1, 1, 32, 32), np.float32)
    truth[0, 0, 8:16, 8:16] = 1
    prob = np.where(truth > 0, 0.82, 0.6).astype(np.float32)  # negatives at 0.6 -> best from 0.62
    val = PreparedImages(signals=[prob], targets=[truth])
    t, table = choose_threshold(Logit(), val, 2, (16, 16))
    assert t == pytest.approx(0.62)
    assert THRESHOLD_GRID[0] == 0.02 and THRESHOLD_GRID[-1] == 0.98 and len(THRESHOLD_GRID) == 49
    assert [r["threshold"] for r in table] == list(THRESHOLD_GRID)
    by = {r["threshold"]: r for r in table}
    assert by[0.62]["f1"] == pytest.approx(1.0) and by[0.8]["f1"] == pytest.approx(1.0)
    assert by[0.84]["f1"] == 0.0
    assert by[0.5]["precision"] == pytest.approx(64 / 1024)
    assert by[0.86]["recall"] == 0.0


def test_segment_uses_each_bundles_threshold_unless_given(tmp_path, constant_bundle):
    from stainfree.inference.segment import bundle_threshold, segment
    from stainfree.types import ImageMeta, compartment_id

    d = tmp_path / "b"
    logit = float(np.log(0.6 / 0.4))  # every voxel at probability 0.6
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [logit], (32, 32), threshold=0.7)
    img = (np.random.default_rng(0).random((2, 2, 32, 32)) * 100 + 10).astype(np.float32)
    meta = ImageMeta(axes="CZYX", shape=img.shape, dtype="float32", channel_names=("yellow", "red"))
    ld = compartment_id("lipid_droplet") - 1
    masks, _ = segment(d, img, meta)
    assert not masks[ld].any()  # 0.6 < the bundle's 0.7
    masks, _ = segment(d, img, meta, threshold=0.5)
    assert masks[ld].all()
    assert bundle_threshold(type("C", (), {"threshold": None})()) == 0.5
