"""Ratiometric input of any block from whole-image numbers computed in Z slabs: equal to prepare_input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stainfree.data.ratioblocks import stream_kth, stream_preconditions


def _cfg(**kw):
    base = {
        "signal_channels": None,
        "input_transform": "ratiometric",
        "ratio_offset": "auto",
        "ratio_background_threshold": None,
        "ratio_clip_percentile": 99.9,
        "ratio_normalization": "image",
        "ratio_max": 3.0,
        "channel_alignment": "none",
        "voxel_size_um": None,
        "normalization": "zscore",
        "percentile_range": (1.0, 99.8),
        "normalization_scope": "image",
        "input_mode": "2d",
    }
    return SimpleNamespace(**{**base, **kw})


def _nilered(shape=(6, 40, 36), seed=0):
    """Yellow and red with a camera offset, bright cells and red = yellow shifted by (0, 1.4, -0.6)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cells = ndimage.gaussian_filter(rng.random(shape), (1, 3, 3)) > 0.5
    yellow = 100 + 400 * cells * rng.random(shape) + 5 * rng.random(shape)
    red = ndimage.shift(yellow * 0.8, (0.0, 1.4, -0.6), order=1, mode="nearest") + 3 * rng.random(shape)
    return np.stack([yellow, red]).astype(np.float32)


@pytest.mark.parametrize("k", [0, 1, 4999, 9000, 14399])
def test_stream_kth_is_the_exact_order_statistic(k):
    v = np.random.default_rng(1).normal(size=(6, 40, 60)).astype(np.float32)
    v[2] = 0.5  # ties
    assert stream_kth(lambda: (v[i : i + 2] for i in range(0, 6, 2)), k, cap=50) == np.sort(v.ravel())[k]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"ratio_normalization": "fixed", "normalization": "percentile"},
        {"ratio_normalization": "median", "ratio_offset": (90.0, 80.0)},
        {"input_transform": "intensity_only", "ratio_background_threshold": 150.0},
    ],
)
def test_blocks_of_the_view_equal_prepare_input(kw):
    from stainfree.data.align import ratio_shift
    from stainfree.data.preprocess import prepare_input
    from stainfree.inference.segblocks import RatiometricView, ratio_slabs

    img = _nilered()
    cfg = _cfg(channel_alignment="auto", **kw)
    ref = prepare_input(img, cfg)
    shift = ratio_shift(img[0], img[1], "auto")
    assert shift[1] < -0.8 and shift[2] > 0.2  # a real (subpixel) shift, applied block by block
    pre = stream_preconditions(ratio_slabs(img, 0, 1, shift, max_voxels=3000), cfg)  # 2-plane slabs
    view = RatiometricView(img, 0, 1, shift, pre)
    assert view.shape == ref.shape
    for region in [(slice(0, 6), slice(0, 40), slice(0, 36)), (slice(1, 4), slice(7, 30), slice(20, 36))]:
        got = view[(slice(None), *region)]
        assert np.abs(got - ref[(slice(None), *region)]).max() <= 1e-5
