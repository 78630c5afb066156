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
        enabled=True,
        prob=1.0,
        rotation_degrees=0,
        scale_range=(1, 1),
        flip_axes=[],
        rot90=False,
        gain_range=(2, 3),
        offset_range=(0, 0),
        noise_std=0,
    )
    aug = build_augmenter(cfg, spatial_dims=2, task="binary", input_transform="ratiometric")
    s = _sample(2)
    out = aug(s, 3)
    ratio_gain = out["signal"][0] / s["signal"][0]
    assert 2 <= float(ratio_gain.mean()) <= 3 and torch.allclose(ratio_gain, ratio_gain.flatten()[0])
    assert torch.equal(out["signal"][1], s["signal"][1])
    assert build_augmenter(AugmentConfig(enabled=False), spatial_dims=2, task="binary") is None


def test_default_recipe_is_lossless_geometry_and_input_only_intensity():
    cfg = AugmentConfig()
    assert cfg.enabled and cfg.rot90 and cfg.rotation_degrees == 0 and tuple(cfg.scale_range) == (1, 1)
    aug = build_augmenter(
        cfg.model_copy(update={"prob": 1.0}), spatial_dims=2, task="binary", input_transform="ratiometric"
    )
    s = _sample(2)
    s["signal"][1] = torch.arange(s["signal"][1].numel(), dtype=torch.float32).reshape(s["signal"][1].shape)
    s["target"] = (s["signal"][1:2] > 20).float()
    for seed in range(12):
        out = aug(s, seed)
        # ratio channel: moved (flips, 90-degree turns) but never scaled, shifted or noised: same values
        assert torch.equal(out["signal"][1].flatten().sort().values, s["signal"][1].flatten().sort().values)
        # the mask moved with it, exactly
        assert torch.equal(out["target"][0], (out["signal"][1] > 20).float())
    # intensity channel changes by gain, offset and noise
    assert not torch.allclose(aug(s, 0)["signal"][0].abs().sum(), s["signal"][0].abs().sum())


def test_rot90_turns_image_and_target_together_in_yx_of_a_3d_patch():
    aug = Augmenter(
        spatial_dims=3, rotation_degrees=0, scale_range=(1, 1), gain_range=(1, 1), flip_axes=[], rot90=True
    )
    sig = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    s = {"signal": sig, "target": sig[:1].clone()}
    outs = [aug(s, seed) for seed in range(16)]
    turns = {k for o in outs for k in range(4) if torch.equal(o["signal"], torch.rot90(sig, k, dims=(2, 3)))}
    assert len(turns) >= 3  # several of the four turns seen, each a pure Y-X rotation (Z untouched)
    assert all(torch.equal(o["signal"][:1], o["target"]) for o in outs)


def test_intensity_changes_that_are_off_draw_no_random_numbers():
    # a recipe without offset and noise consumes the random stream exactly as before they existed, so that
    # runs of the benchmarked catalog recipe repeat their augmentations
    import numpy as np

    from stainfree.data.augment import RandGaind

    t = RandGaind("signal", (2, 3), None, 1.0)
    t.set_random_state(seed=5)
    out = t({"signal": torch.ones(1, 4, 4)})
    ref = np.random.RandomState(5)
    ref.rand()  # the "apply or not" draw
    assert torch.allclose(out["signal"], torch.full((1, 4, 4), ref.uniform(2, 3), dtype=torch.float32))
    assert t.R.rand() == ref.rand()  # nothing else was drawn


def test_batch_augmentation_is_per_sample_and_equals_the_single_sample_path():
    from stainfree.data.augment import BatchAugmenter

    cfg = AugmentConfig(prob=1.0, mask_fraction=0.0)
    aug = build_augmenter(cfg, spatial_dims=3, task="regression")
    assert isinstance(aug, BatchAugmenter) and aug.batched
    # the interpolating catalog recipe stays on the per-sample MONAI path
    assert isinstance(
        build_augmenter(AugmentConfig(rotation_degrees=30), spatial_dims=2, task="binary"), Augmenter
    )
    sig = torch.rand(4, 2, 3, 8, 8)
    sig[3] = sig[0]
    tgt = sig[:, :1].clone()
    seeds = torch.tensor([5, 6, 7, 5])
    out = aug.batch({"signal": sig, "target": tgt, "seed": seeds})
    assert set(out) == {"signal", "target"} and out["signal"].shape == sig.shape
    for i, s in enumerate(seeds.tolist()):
        one = aug({"signal": sig[i], "target": tgt[i]}, s)
        assert torch.equal(out["signal"][i], one["signal"]) and torch.equal(out["target"][i], one["target"])
    # the same sample and seed give the same result wherever it sits in the batch; other seeds other draws
    assert torch.equal(out["signal"][0], out["signal"][3])
    assert not torch.equal(out["signal"][0], out["signal"][1])
    # geometry only moves voxels (target = a moved copy of the input's first channel, Z never turned)
    for i in range(4):
        assert torch.equal(out["target"][i, 0].flatten().sort().values, tgt[i, 0].flatten().sort().values)


def test_batch_masking_hides_blocks_of_the_input_only():
    from stainfree.data.augment import BatchAugmenter

    aug = BatchAugmenter(spatial_dims=2, flip_axes=[], rot90=False, mask_fraction=0.5)
    x = torch.full((3, 1, 32, 32), 7.0)
    out = aug.batch({"signal": x, "target": x.clone(), "seed": torch.arange(3)})
    hidden = (out["signal"] != 7.0).float().mean().item()
    assert 0.2 < hidden < 0.8  # about half the 4 x 4 blocks
    assert torch.equal(out["target"], x)
    # hidden regions are whole blocks of 1/8 of the patch on a side
    h = (out["signal"][0, 0] != 7.0).reshape(8, 4, 8, 4)
    assert bool((h.all(dim=(1, 3)) | ~h.any(dim=(1, 3))).all())
