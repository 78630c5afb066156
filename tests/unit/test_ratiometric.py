"""intensity_ratio: hand-computed cases, background, zero yellow, shapes, clipping, finiteness."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from stainfree.data.ratiometric import (
    auto_background_threshold,
    estimate_offset,
    intensity_ratio,
    li_threshold,
    otsu_threshold,
)
from stainfree.errors import InputError


def test_hand_case_intensity_and_ratio():
    y = np.array([[10.0, 20.0], [40.0, 8.0]])
    r = np.array([[30.0, 10.0], [40.0, 2.0]])
    intensity, ratio = intensity_ratio(y, r, background_threshold=0, clip_percentile=None)
    np.testing.assert_allclose(intensity, [[20, 15], [40, 5]])
    np.testing.assert_allclose(ratio, [[3.0, 0.5], [1.0, 0.25]], rtol=1e-6)
    assert intensity.dtype == np.float32 and ratio.dtype == np.float32


def test_background_below_threshold_gets_ratio_zero():
    y = np.array([1.0, 1.0, 10.0, 10.0])
    r = np.array([3.0, 1.0, 20.0, 5.0])  # intensities 2, 1, 15, 7.5
    _, ratio = intensity_ratio(y, r, background_threshold=5.0, clip_percentile=None)
    np.testing.assert_allclose(ratio, [0.0, 0.0, 2.0, 0.5])


def test_automatic_threshold_separates_background_from_cells():
    rng = np.random.default_rng(0)
    y = rng.normal(2, 0.3, (64, 64)).clip(0)
    r = rng.normal(2, 0.3, (64, 64)).clip(0)
    y[20:40, 20:40] = 100
    r[20:40, 20:40] = 150
    intensity, ratio = intensity_ratio(y, r)
    t = auto_background_threshold(intensity)
    assert 3 < t < 100
    assert np.all(ratio[:10, :10] == 0)
    np.testing.assert_allclose(ratio[25:35, 25:35], 1.5, rtol=1e-5)


def test_zero_yellow_gives_zero_ratio_and_warning_never_nan():
    y = np.zeros((4, 4))
    r = np.full((4, 4), 5.0)
    with pytest.warns(UserWarning, match="yellow"):
        intensity, ratio = intensity_ratio(y, r)
    assert np.all(ratio == 0) and np.all(np.isfinite(ratio))
    np.testing.assert_allclose(intensity, 2.5)


def test_zero_yellow_voxels_inside_signal_get_zero():
    y = np.array([0.0, 10.0, 10.0])
    r = np.array([50.0, 10.0, 30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, ratio = intensity_ratio(y, r, background_threshold=0, clip_percentile=None)
    np.testing.assert_allclose(ratio, [0.0, 1.0, 3.0])


def test_nan_and_inf_inputs_never_propagate():
    y = np.array([np.nan, 1e-30, 10.0, np.inf])
    r = np.array([1.0, 1e10, 10.0, 1.0])
    intensity, ratio = intensity_ratio(y, r, background_threshold=0)
    assert np.all(np.isfinite(intensity)) and np.all(np.isfinite(ratio))


def test_mismatched_shapes_raise_input_error_naming_inputs():
    with pytest.raises(InputError, match="yellow.*red"):
        intensity_ratio(np.ones((4, 4)), np.ones((4, 5)))


def test_outliers_clipped_at_percentile():
    y = np.ones(1000)
    r = np.ones(1000)
    r[0] = 1000.0  # one outlier ratio of 1000
    _, ratio = intensity_ratio(y, r, background_threshold=0, clip_percentile=99.0)
    assert ratio.max() < 1000.0
    assert ratio.max() == pytest.approx(np.percentile(np.r_[np.ones(999), 1000.0], 99.0), rel=1e-5)
    _, unclipped = intensity_ratio(y, r, background_threshold=0, clip_percentile=None)
    assert unclipped.max() == 1000.0


def test_otsu_threshold_bimodal_and_degenerate():
    v = np.r_[np.full(100, 1.0), np.full(100, 9.0)]
    assert 1.0 <= otsu_threshold(v) < 9.0
    assert otsu_threshold(np.full(5, 3.0)) == 3.0
    assert otsu_threshold(np.array([])) == 0.0


@pytest.mark.parametrize(
    ("fractions", "low", "high"),
    [((0.9, 0.0, 0.1), 3.0, 100.0), ((0.2, 0.7, 0.1), 3.0, 12.0), ((0.05, 0.9, 0.05), 3.0, 12.0)],
)
def test_auto_threshold_between_camera_background_and_cytoplasm(fractions, low, high):
    # camera background ~2, dim cytoplasm ~20, bright droplets ~200: the threshold keeps the cytoplasm
    rng = np.random.default_rng(1)
    n = (np.asarray(fractions) * 20000).astype(int)
    v = np.r_[rng.normal(2, 0.3, n[0]), rng.normal(20, 4, n[1]), rng.normal(200, 40, n[2])].clip(0)
    assert low < auto_background_threshold(v) < high


def test_li_threshold_matches_skimage():
    from skimage.filters import threshold_li

    v = np.log1p(np.random.default_rng(2).gamma(2.0, 10.0, 5000))
    assert li_threshold(v) == pytest.approx(threshold_li(v), rel=0.02)


def test_camera_offset_subtracted_before_the_ratio():
    # true ratio 2 on a camera offset of 100: without subtraction R/Y = 140 / 120, with it 40 / 20
    y = np.array([120.0, 100.0])
    r = np.array([140.0, 100.0])
    _, raw = intensity_ratio(y, r, background_threshold=0, clip_percentile=None)
    intensity, ratio = intensity_ratio(y, r, offset=100.0, background_threshold=0, clip_percentile=None)
    assert raw[0] == pytest.approx(140 / 120)
    assert ratio[0] == pytest.approx(2.0)
    np.testing.assert_allclose(intensity, [30.0, 0.0])
    assert ratio[1] == 0.0  # nothing left after the offset: Y = 0, ratio 0, never NaN
    _, per_channel = intensity_ratio(
        y, r, offset=(110.0, 100.0), background_threshold=0, clip_percentile=None
    )
    assert per_channel[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="offset"):
        intensity_ratio(y, r, offset="median")


def test_auto_offset_recovers_the_ratio_of_a_noisy_field():
    rng = np.random.default_rng(1)
    y = rng.normal(100.0, 2.0, (64, 64))
    r = rng.normal(100.0, 2.0, (64, 64))
    y[16:48, 16:48] += 40.0
    r[16:48, 16:48] += 60.0  # ratio 1.5 above the offset
    assert estimate_offset(y) == pytest.approx(100.0, abs=0.5)
    _, ratio = intensity_ratio(y, r, offset="auto", clip_percentile=None)
    assert np.median(ratio[20:44, 20:44]) == pytest.approx(1.5, rel=0.03)
    assert np.all(ratio[:8, :8] == 0)
    _, raw = intensity_ratio(y, r, clip_percentile=None)
    assert np.median(raw[20:44, 20:44]) == pytest.approx(160 / 140, rel=0.03)


def test_auto_offset_of_a_field_without_background_and_of_empty_input():
    rng = np.random.default_rng(2)
    packed = 100.0 + rng.uniform(20.0, 200.0, (64, 64))  # cells everywhere: no background voxels at all
    off = estimate_offset(packed)
    assert packed.min() <= off < np.median(packed)  # the dimmest stained level: pass the offset when known
    assert estimate_offset(np.array([])) == 0.0
    assert estimate_offset(np.full((4, 4), np.nan)) == 0.0
