"""Preprocessing shared by training and prediction: normalization, resampling, prepare_input/target."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stainfree.config import DataConfig
from stainfree.data.preprocess import (
    apply_normalization,
    channel_indices,
    invert_normalization,
    mean_stats,
    normalize,
    prepare_input,
    prepare_input_with_stats,
    prepare_target,
    resample,
    resampled_shape,
    restore_output,
    zoom_factors,
)
from stainfree.errors import InputError
from stainfree.types import ImageMeta


def _meta(shape, vox=(0.58, 0.29, 0.29), names=("bf", "dna")):
    return ImageMeta(
        axes="CZYX", shape=shape, dtype="float32", voxel_size_um=vox, channel_names=names, path="x.tif"
    )


def test_zscore_stats_round_trip():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(4, 20, 20)).astype(np.float32)
    y, stats = normalize(x, "zscore")
    assert stats["method"] == "zscore"
    assert stats["mean"] == pytest.approx(float(x.mean()), rel=1e-5)
    assert stats["std"] == pytest.approx(float(x.std()), rel=1e-5)
    assert abs(float(y.mean())) < 1e-5 and float(y.std()) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(apply_normalization(x, stats), y)
    np.testing.assert_allclose(invert_normalization(y, stats), x, atol=1e-4)


def test_percentile_stats_and_constant_image():
    x = np.arange(1000, dtype=np.float32)
    y, stats = normalize(x, "percentile", low=1, high=99)
    assert stats["low"] == pytest.approx(9.99) and stats["high"] == pytest.approx(989.01)
    assert y[10] == pytest.approx((10 - 9.99) / (989.01 - 9.99), rel=1e-4)
    np.testing.assert_allclose(invert_normalization(y, stats), x, atol=1e-3)
    const, s = normalize(np.full((3, 3), 7.0), "zscore")
    assert s["std"] == 0.0 and np.all(const == 0.0)  # zero spread treated as 1, no NaN
    assert mean_stats(
        [[{"method": "zscore", "mean": 1.0, "std": 2.0}], [{"method": "zscore", "mean": 3.0, "std": 4.0}]]
    ) == [{"method": "zscore", "mean": 2.0, "std": 3.0}]


def test_zoom_factor_arithmetic_and_resampled_shape():
    f = zoom_factors((0.58, 0.145, 0.145), (0.29, 0.29, 0.29), (10, 40, 40))
    assert f == pytest.approx((2.0, 0.5, 0.5))
    assert resampled_shape((10, 40, 40), f) == (20, 20, 20)
    x = np.random.default_rng(1).random((2, 10, 40, 40)).astype(np.float32)
    assert resample(x, f).shape == (2, 20, 20, 20)
    # a single plane is never resampled along z, nor any stack for 2D models
    assert zoom_factors((None, 0.145, 0.145), (0.29, 0.29, 0.29), (1, 40, 40)) == pytest.approx(
        (1.0, 0.5, 0.5)
    )
    assert zoom_factors((0.58, 0.145, 0.145), (0.29,) * 3, (10, 40, 40), resample_z=False)[0] == 1.0
    # unknown or identical voxel sizes: no resampling
    assert zoom_factors((None, 0.29, 0.29), (0.29,) * 3, (10, 40, 40)) is None
    assert zoom_factors((0.29, 0.29, 0.29), (0.29,) * 3, (10, 40, 40)) is None


def test_resample_labels_nearest_keeps_values():
    lab = np.zeros((1, 4, 16, 16), np.uint8)
    lab[0, :, 4:12, 4:12] = 3
    lab[0, :, :2, :2] = 7
    out = resample(lab, (1.0, 1.7, 1.7), order=0)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 3, 7}


def test_prepare_input_selects_resamples_normalizes():
    rng = np.random.default_rng(2)
    x = np.stack([rng.normal(100, 10, (6, 20, 20)), rng.normal(5, 2, (6, 20, 20))]).astype(np.float32)
    cfg = DataConfig(signal_channels=["dna"], voxel_size_um=(0.29, 0.29, 0.29))
    out, stats = prepare_input_with_stats(x, cfg, _meta(x.shape))
    assert out.shape == (1, 12, 20, 20) and out.dtype == np.float32
    assert abs(out.mean()) < 1e-3 and out.std() == pytest.approx(1.0, abs=1e-3)
    assert stats[0]["mean"] == pytest.approx(5.0, abs=0.3)
    # dataset scope: given statistics are applied as they are
    fixed = prepare_input(x, cfg, _meta(x.shape), stats=[{"method": "zscore", "mean": 0.0, "std": 1.0}])
    assert fixed.mean() == pytest.approx(float(x[1].mean()), rel=0.02)
    with pytest.raises(InputError, match="no channel named 'gfp'"):
        prepare_input(x, DataConfig(signal_channels=["gfp"]), _meta(x.shape))


def test_unknown_voxel_size_skips_resampling_with_warning(caplog):
    x = np.ones((1, 4, 8, 8), np.float32)
    meta = _meta(x.shape, vox=(None, None, None), names=("bf",))
    with caplog.at_level(logging.WARNING):
        out = prepare_input(x, DataConfig(), meta)
    assert out.shape == x.shape
    assert "voxel size unknown" in caplog.text


def test_zstack_to_2d_makes_planes_channels_and_projects_target():
    rng = np.random.default_rng(3)
    x = rng.random((1, 5, 16, 16)).astype(np.float32)
    cfg = DataConfig(input_mode="zstack_to_2d", voxel_size_um=None)
    out = prepare_input(x, cfg, None)
    assert out.shape == (5, 1, 16, 16)
    t, stats = prepare_target(x, cfg.model_copy(update={"target_normalization": "none"}), None)
    np.testing.assert_allclose(t[0, 0], x[0].max(axis=0))
    assert stats == [{"method": "none"}]


def test_prepare_target_tasks_and_restore_output():
    lab = np.zeros((1, 4, 10, 10), np.int32)
    lab[0, :, 2:6, 2:6] = 2
    meta = _meta(lab.shape, vox=(0.29, 0.145, 0.145), names=("labels",))
    cfg = DataConfig(voxel_size_um=(0.29, 0.29, 0.29))
    binary, _ = prepare_target(lab, cfg, meta, task="binary")
    assert (
        binary.shape == (1, 4, 5, 5) and set(np.unique(binary)) == {0.0, 1.0} and binary.dtype == np.float32
    )
    multi, _ = prepare_target(lab, cfg, meta, task="multiclass")
    assert multi.dtype == np.int64 and set(np.unique(multi)) == {0, 2}
    back = restore_output(multi, (4, 10, 10), labels=True)
    assert back.shape == (1, 4, 10, 10) and set(np.unique(back)) == {0, 2}
    assert restore_output(np.ones((2, 4, 5, 5), np.float32), (4, 11, 9)).shape == (2, 4, 11, 9)


def test_ratiometric_input_gives_intensity_and_ratio():
    rng = np.random.default_rng(4)
    yr = rng.uniform(10, 100, (2, 3, 16, 16)).astype(np.float32)
    meta = _meta(yr.shape, names=("yellow", "red"))
    cfg = DataConfig(signal_channels=["yellow", "red"], input_transform="ratiometric", voxel_size_um=None)
    assert prepare_input(yr, cfg, meta).shape == (2, 3, 16, 16)
    only = cfg.model_copy(update={"input_transform": "intensity_only"})
    assert prepare_input(yr, only, meta).shape == (1, 3, 16, 16)


def test_ratiometric_input_subtracts_the_configured_offset():
    yr = np.full((2, 2, 8, 8), 100.0, np.float32)  # camera offset 100
    yr[0, :, 2:6, 2:6] += 20.0
    yr[1, :, 2:6, 2:6] += 40.0  # R / Y = 2 above the offset
    meta = _meta(yr.shape, names=("yellow", "red"))
    base = {"signal_channels": ["yellow", "red"], "input_transform": "ratiometric", "voxel_size_um": None}
    raw = prepare_input(yr, DataConfig(**base, ratio_offset=None, normalization="none"), meta)
    fixed = prepare_input(yr, DataConfig(**base, ratio_offset=100.0, normalization="none"), meta)
    auto = prepare_input(yr, DataConfig(**base, normalization="none"), meta)  # default: "auto"
    assert raw[1, 0, 4, 4] == pytest.approx(140 / 120)
    assert fixed[1, 0, 4, 4] == pytest.approx(2.0) and auto[1, 0, 4, 4] == pytest.approx(2.0)
    assert fixed[0, 0, 4, 4] == pytest.approx(30.0) and fixed[1, 0, 0, 0] == 0.0


def test_channel_indices_by_name_and_index():
    assert channel_indices(["b", 0, "-1"], ("a", "b", "c"), 3) == [1, 0, 2]
    with pytest.raises(InputError, match="out of range"):
        channel_indices([5], ("a",), 1)


def test_ratio_normalization_fixed_is_absolute_image_is_relative():
    from stainfree.config import DataConfig
    from stainfree.data.preprocess import prepare_input

    rng = np.random.default_rng(0)
    yellow = np.full((1, 16, 16), 10.0, np.float32) + rng.random((1, 16, 16)).astype(np.float32)
    yellow[:, :4] = 0.0  # background
    red = 1.5 * yellow
    img = np.stack([yellow, red])
    redder = np.stack([yellow, 1.3 * red])
    kw = {"input_transform": "ratiometric", "voxel_size_um": None, "ratio_offset": None}
    kw["ratio_background_threshold"] = 1.0
    fixed = DataConfig(ratio_normalization="fixed", ratio_max=3.0, **kw)
    a, b = prepare_input(img, fixed), prepare_input(redder, fixed)
    assert a[1, 0, 8, 8] == pytest.approx(1.5 / 3.0, rel=1e-5)
    assert b[1, 0, 8, 8] == pytest.approx(1.95 / 3.0, rel=1e-5)  # the redder field stays redder
    image = DataConfig(ratio_normalization="image", **kw)
    np.testing.assert_allclose(prepare_input(img, image)[1], prepare_input(redder, image)[1], atol=1e-4)
    median = DataConfig(ratio_normalization="median", **kw)
    m = prepare_input(redder, median)
    assert m[1, 0, 8, 8] == pytest.approx(1.0, rel=1e-5) and m[1, 0, 0, 0] == 0.0
    # the intensity channel is z-scored per image whatever the ratio does
    np.testing.assert_allclose(a[0], prepare_input(img, image)[0])
