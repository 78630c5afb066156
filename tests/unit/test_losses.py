"""Loss numbers on hand-computed cases, and the validation F1."""

from __future__ import annotations

import math

import pytest
import torch

from stainfree.train.losses import build_loss
from stainfree.train.module import confusion_counts, f1_from_counts


def test_mse_l1():
    p, t = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])
    assert build_loss("mse", task="regression")(p, t).item() == pytest.approx((1 + 4) / 2)
    assert build_loss("l1", task="regression")(p, t).item() == pytest.approx((1 + 2) / 2)


def test_bce_pos_weight_scales_positive_term_only():
    logits = torch.zeros(1, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    plain = build_loss("bce", task="binary")(logits, target).item()
    weighted = build_loss("bce", task="binary", pos_weight=3.0)(logits, target).item()
    assert plain == pytest.approx(math.log(2))
    assert weighted == pytest.approx((3 * math.log(2) + math.log(2)) / 2)


def test_ce_class_weights_weighted_mean():
    # two voxels, 2 classes; voxel 0 true class 0 with p0 = sigmoid(2), voxel 1 true class 1 with p1 = 0.5
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # (B=1, K=2, N=2)
    target = torch.tensor([[[0, 1]]])  # (B, 1, N)
    l0 = -math.log(1 / (1 + math.exp(-2.0)))
    l1 = math.log(2)
    unweighted = build_loss("ce", task="multiclass")(logits, target).item()
    weighted = build_loss("ce", task="multiclass", class_weights=[1.0, 4.0])(logits, target).item()
    assert unweighted == pytest.approx((l0 + l1) / 2, rel=1e-5)
    assert weighted == pytest.approx((l0 + 4 * l1) / 5, rel=1e-5)


def test_dice_ce_prefers_right_answer():
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    target[..., :2, :] = 1
    good = torch.stack([1 - target[:, 0], target[:, 0]], dim=1).float() * 10 - 5
    loss = build_loss("dice_ce", task="multiclass", class_weights=[1.0, 2.0])
    assert loss(good, target).item() < loss(-good, target).item()
    bin_loss = build_loss("dice_ce", task="binary")
    t = target.float()
    assert bin_loss(t * 10 - 5, t).item() < bin_loss(5 - t * 10, t).item()


def test_wrong_loss_for_task_and_unknown_loss():
    with pytest.raises(ValueError, match="binary"):
        build_loss("bce", task="regression")
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("huber", task="regression")


def test_validation_f1_counts():
    logits = torch.tensor([[[[1.0, 1.0, -1.0, -1.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    counts = confusion_counts(logits, target, "binary", 1)
    assert counts.tolist() == [[1, 1, 1]]
    assert f1_from_counts(counts) == pytest.approx(0.5)
    # multiclass: class 1 perfect, class 2 never predicted
    ml = torch.zeros(1, 3, 1, 4)
    ml[0, 1, 0, :2] = 5
    ml[0, 0, 0, 2:] = 5
    lab = torch.tensor([[[[1, 1, 2, 0]]]])
    c = confusion_counts(ml, lab, "multiclass", 3)
    assert c.tolist() == [[2, 0, 0], [0, 0, 1]]
    assert f1_from_counts(c) == pytest.approx(0.5)


def test_binary_dice_ce_pools_the_batch_and_weights_positives():
    from monai.losses import DiceLoss

    target = torch.zeros(2, 1, 4, 4)
    target[1, 0, :2, :2] = 1.0  # patch 0 has nothing of the structure, patch 1 has four voxels
    logits = torch.full((2, 1, 4, 4), -2.0)
    logits[1, 0, :2, :2] = 2.0
    plain = build_loss("dice_ce", task="binary")(logits, target).item()
    pooled = DiceLoss(sigmoid=True, batch=True)(logits, target).item()
    per_patch = DiceLoss(sigmoid=True, batch=False)(logits, target).item()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target).item()
    assert plain == pytest.approx(pooled + bce, rel=1e-5)
    assert pooled < 0.5 < per_patch  # per patch, the empty patch's Dice is ~1 whatever the net predicts
    weighted = build_loss("dice_ce", task="binary", pos_weight=5.0)(logits, target).item()
    assert weighted > plain  # the missed part of each positive voxel counts five times
