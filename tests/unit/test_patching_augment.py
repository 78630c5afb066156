"""Augmentation: image and mask move together, seeded draws, gain only on the chosen channels."""

from __future__ import annotations

import torch

from stainfree.config import AugmentConfig
from stainfree.data.augment import Augmenter, build_augmenter


def _sample(dims):
    sp = (8, 16, 16) if dims == 3 else (16, 16)
    sig = torch.rand(2, *sp) + 1.0
    mask = torch.zeros(1, *sp, dtype=torch.int64)
    mask[(0,) + (slice(4, 12),) * dims] = 2
    return {"signal": sig, "target": mask}


def test_same_seed_same_augmentation_masks_stay_labels():
    for dims in (2, 3):
        aug = Augmenter(spatial_dims=dims, prob=1.0, target_is_mask=True)
        s = _sample(dims)
        a, b, c = aug(s, 11), aug(s, 11), aug(s, 12)
        assert torch.equal(a["signal"], b["signal"]) and torch.equal(a["target"], b["target"])
        assert not torch.equal(a["signal"], c["signal"])
        assert a["signal"].shape == s["signal"].shape and a["target"].shape == s["target"].shape
        assert a["target"].dtype == torch.int64 and set(a["target"].unique().tolist()) <= {0, 2}


def test_flip_moves_image_and_mask_together():
    aug = Augmenter(spatial_dims=2, rotation_degrees=0, scale_range=(1, 1), gain_range=(1, 1), flip_axes=[-1])
    sig = torch.zeros(1, 4, 4)
    sig[0, :, 0] = 1
    s = {"signal": sig, "target": sig.clone()}
    flipped = [aug(s, seed) for seed in range(8)]
    assert any(torch.equal(f["signal"], s["signal"].flip(-1)) for f in flipped)
    assert all(torch.equal(f["signal"], f["target"]) for f in flipped)


def test_gain_never_touches_the_ratio_channel():
    cfg = AugmentConfig(
        enabled=True, prob=1.0, rotation_degrees=0, scale_range=(1, 1), flip_axes=[], gain_range=(2, 3)
    )
    aug = build_augmenter(cfg, spatial_dims=2, task="binary", input_transform="ratiometric")
    s = _sample(2)
    out = aug(s, 3)
    ratio_gain = out["signal"][0] / s["signal"][0]
    assert 2 <= float(ratio_gain.mean()) <= 3 and torch.allclose(ratio_gain, ratio_gain.flatten()[0])
    assert torch.equal(out["signal"][1], s["signal"][1])
    assert build_augmenter(AugmentConfig(enabled=False), spatial_dims=2, task="binary") is None
