"""Patch sampling: a pure function of (seed, index), uniform over images (by size) and space."""

from __future__ import annotations

import numpy as np
import torch

from stainfree.data.dataset import PatchDataset
from stainfree.data.patching import image_weights, patches_per_epoch, sample_patch


def test_sampling_is_deterministic_and_seed_dependent():
    shapes = [(10, 40, 40), (6, 20, 30)]
    a = [sample_patch(0, i, shapes, (4, 8, 8)) for i in range(50)]
    b = [sample_patch(0, i, shapes, (4, 8, 8)) for i in range(50)]
    c = [sample_patch(1, i, shapes, (4, 8, 8)) for i in range(50)]
    assert a == b and a != c


def test_sampling_covers_images_by_size_and_every_position():
    shapes = [(1, 10, 10), (1, 30, 10)]  # 1:3 voxels
    assert np.allclose(image_weights(shapes), [0.25, 0.75])
    draws = [sample_patch(3, i, shapes, (1, 4, 4)) for i in range(4000)]
    images = np.array([d[0] for d in draws])
    assert abs(images.mean() - 0.75) < 0.03
    starts0 = {d[1] for d in draws if d[0] == 0}
    assert starts0 == {(0, y, x) for y in range(7) for x in range(7)}  # every position of image 0 reached
    for img, (z, y, x) in draws:
        assert 0 <= y <= shapes[img][1] - 4 and 0 <= x <= shapes[img][2] - 4 and z == 0
    assert patches_per_epoch(shapes, (1, 4, 4)) == 25


def test_dataset_item_is_global_index_so_resume_sees_same_patches():
    rng = np.random.default_rng(0)
    sig = [rng.random((1, 8, 24, 24)).astype(np.float32), rng.random((1, 8, 16, 16)).astype(np.float32)]
    tgt = [s * 2 for s in sig]

    def aug(sample, seed):
        g = np.random.default_rng(seed).random()
        return {"signal": sample["signal"] * g, "target": sample["target"]}

    full = PatchDataset(sig, tgt, (4, 8, 8), seed=5, length=10, augment=aug)
    tail = PatchDataset(sig, tgt, (4, 8, 8), seed=5, length=4, start=6, augment=aug)
    for i in range(4):
        assert torch.equal(full[6 + i]["signal"], tail[i]["signal"])
        assert torch.equal(full[6 + i]["target"], tail[i]["target"])
    plain = PatchDataset(sig, tgt, (4, 8, 8), seed=5, length=10)
    val = PatchDataset(sig, tgt, (4, 8, 8), seed=5, length=10, stream=1)  # validation: another stream
    assert [val.location(i) for i in range(10)] != [plain.location(i) for i in range(10)]


def test_2d_patches_from_planes_and_small_images_padded():
    sig = [np.arange(3 * 6 * 6, dtype=np.float32).reshape(1, 3, 6, 6)]
    ds = PatchDataset(sig, [np.zeros_like(sig[0])], (8, 8), seed=0, length=3)
    item = ds[0]
    assert item["signal"].shape == (1, 8, 8) and item["target"].shape == (1, 8, 8)
