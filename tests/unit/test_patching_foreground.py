"""Foreground-biased patch sampling: default unchanged, rare classes seen, pure in (seed, index)."""

import numpy as np
import pytest

from stainfree.data.dataset import PatchDataset
from stainfree.data.patching import (
    centred_start,
    foreground_index,
    image_weights,
    patch_slices,
    sample_patch,
    sample_rng,
)

SHAPES = [(4, 40, 50), (6, 64, 32)]
PATCH = (2, 16, 16)


def _uniform_reference(seed, index, shapes, patch):
    """The sampler as it was before foreground sampling (image by size, then a uniform corner)."""
    rng = sample_rng(seed, index)
    w = image_weights(shapes)
    image = int(rng.choice(len(w), p=w))
    return image, tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shapes[image], patch, strict=True))


def _sparse_targets():
    """Label maps with a few voxels of classes 1 and 2 (about 0.03 % of the voxels)."""
    a = np.zeros((1, *SHAPES[0]), np.int64)
    a[0, 1, 30, 40] = 1
    a[0, 3, 2, 3] = 2
    b = np.zeros((1, *SHAPES[1]), np.int64)
    b[0, 5, 60, 31] = 2
    return [a, b]


def test_fraction_zero_is_exactly_the_uniform_sampler():
    fg = [foreground_index(t) for t in _sparse_targets()]
    for index in [0, 1, 2, 17, 1234]:
        ref = _uniform_reference(3, index, SHAPES, PATCH)
        assert sample_patch(3, index, SHAPES, PATCH) == ref
        assert sample_patch(3, index, SHAPES, PATCH, foreground=fg, foreground_fraction=0.0) == ref
    ds0 = PatchDataset(
        [np.zeros((1, *s), np.float32) for s in SHAPES], _sparse_targets(), PATCH, seed=3, length=5
    )
    ds = PatchDataset(
        [np.zeros((1, *s), np.float32) for s in SHAPES],
        _sparse_targets(),
        PATCH,
        seed=3,
        length=5,
        foreground_fraction=0.0,
    )
    assert ds.foreground is None
    assert [ds.location(i) for i in range(5)] == [ds0.location(i) for i in range(5)]
    assert ds0.location(0) == _uniform_reference(3, 0, SHAPES, PATCH)


def test_foreground_index_per_class_and_per_channel():
    a = _sparse_targets()[0]
    idx = foreground_index(a)
    assert len(idx) == 2
    assert np.unravel_index(int(idx[0][0]), SHAPES[0]) == (1, 30, 40)
    assert np.unravel_index(int(idx[1][0]), SHAPES[0]) == (3, 2, 3)
    binary = np.zeros((2, 3, 4, 5), np.float32)
    binary[0, 1, 2, 3] = 1.0
    binary[0, 2, 0, 0] = 1.0
    per_channel = foreground_index(binary)
    assert len(per_channel) == 1  # channel 1 is empty and left out
    assert per_channel[0].tolist() == [1 * 20 + 2 * 5 + 3, 2 * 20]
    big = np.ones((1, 1, 10, 10), np.int64)
    capped = foreground_index(big, max_per_class=7)[0]
    assert capped.size == 7 and capped[0] == 0 and capped[-1] == 99


def test_centred_start_is_clipped_inside_the_image():
    assert centred_start((1, 30, 40), (4, 40, 50), (2, 16, 16)) == (0, 22, 32)
    assert centred_start((3, 39, 49), (4, 40, 50), (2, 16, 16)) == (2, 24, 34)
    assert centred_start((3, 2, 3), (4, 40, 50), (2, 16, 16)) == (2, 0, 0)
    assert centred_start((2, 20, 25), (4, 40, 50), (2, 16, 16)) == (1, 12, 17)


def test_fraction_one_every_patch_has_foreground_and_classes_are_balanced():
    targets = _sparse_targets()
    ds = PatchDataset(
        [np.zeros((1, *s), np.float32) for s in SHAPES],
        targets,
        PATCH,
        seed=5,
        length=400,
        foreground_fraction=1.0,
        multiclass=True,
    )
    hits = np.zeros(3, int)
    for i in range(400):
        image, corner = ds.location(i)
        patch = targets[image][(slice(None), *patch_slices(corner, PATCH))]
        assert patch.max() > 0
        hits[np.unique(patch[patch > 0])] += 1
    # image 0 holds classes 1 and 2 (each drawn half the time there), image 1 only class 2
    w0 = image_weights(SHAPES)[0]
    assert hits[1] / 400 == pytest.approx(w0 / 2, abs=0.08)
    assert hits[2] / 400 == pytest.approx(1 - w0 / 2, abs=0.08)
    # uniform patches almost never see these voxels
    uniform = PatchDataset(
        [np.zeros((1, *s), np.float32) for s in SHAPES], targets, PATCH, seed=5, length=400
    )
    seen = sum(
        int(targets[im][(slice(None), *patch_slices(c, PATCH))].max() > 0)
        for im, c in (uniform.location(i) for i in range(400))
    )
    assert seen < 60


def test_fraction_half_about_half_of_patches_and_deterministic():
    targets = _sparse_targets()
    fg = [foreground_index(t) for t in targets]
    n = 1000
    draws = [sample_patch(11, i, SHAPES, PATCH, foreground=fg, foreground_fraction=0.5) for i in range(n)]
    with_fg = [targets[im][(slice(None), *patch_slices(c, PATCH))].max() > 0 for im, c in draws]
    uniform_rate = np.mean(
        [
            targets[im][(slice(None), *patch_slices(c, PATCH))].max() > 0
            for im, c in (sample_patch(11, i, SHAPES, PATCH) for i in range(n))
        ]
    )
    # half centred on foreground, plus the uniform half's own (small) chance
    assert np.mean(with_fg) == pytest.approx(0.5 + 0.5 * uniform_rate, abs=0.05)
    again = [sample_patch(11, i, SHAPES, PATCH, foreground=fg, foreground_fraction=0.5) for i in range(n)]
    assert again == draws
    # a resumed dataset (start > 0) sees the same patches as the uninterrupted one
    sig = [np.zeros((1, *s), np.float32) for s in SHAPES]
    full = PatchDataset(sig, targets, PATCH, seed=11, length=40, foreground_fraction=0.5, multiclass=True)
    resumed = PatchDataset(sig, targets, PATCH, seed=11, length=20, start=20, foreground_fraction=0.5)
    assert [resumed.location(i) for i in range(20)] == [full.location(20 + i) for i in range(20)]
    assert draws[:20] == [full.location(i) for i in range(20)]


def test_fraction_out_of_range_and_empty_target_fall_back():
    sig = [np.zeros((1, *SHAPES[0]), np.float32)]
    with pytest.raises(ValueError, match="foreground_fraction"):
        PatchDataset(
            sig, [np.zeros((1, *SHAPES[0]), np.int64)], PATCH, seed=0, length=1, foreground_fraction=1.5
        )
    empty = PatchDataset(
        sig, [np.zeros((1, *SHAPES[0]), np.int64)], PATCH, seed=0, length=5, foreground_fraction=1.0
    )
    assert [empty.location(i) for i in range(5)] == [
        _uniform_reference(0, i, SHAPES[:1], PATCH) for i in range(5)
    ]


def test_foreground_labels_can_include_label_zero():
    # a net whose classes fill the volume (nucleus 0, cytosol 1, outside 2): label 0 is a class too
    labels = np.full((1, 2, 8, 8), 2, np.int64)
    labels[0, :, 2:4, 2:4] = 0
    labels[0, :, 5:7, 5:7] = 1
    default = foreground_index(labels, multiclass=True)
    assert len(default) == 2  # labels 1 and 2 only
    every = foreground_index(labels, multiclass=True, labels=[0, 1, 2])
    assert len(every) == 3
    assert sorted(np.unravel_index(every[0], (2, 8, 8))[1].tolist()) == [2, 2, 2, 2, 3, 3, 3, 3]
    only_zero = foreground_index(labels, multiclass=True, labels=[0])
    assert len(only_zero) == 1 and only_zero[0].size == 8
