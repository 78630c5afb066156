"""Test-time augmentation: the dihedral views, their average and spread, through predict_array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.inference.tiling import dihedral_views, predict_array, tta_predictor


class _Shift(torch.nn.Module):
    """Not equivariant: output = input shifted one pixel along X (plus a learned-like offset)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=-1) + 0.0 * x


def test_views_of_square_and_oblong_windows():
    assert len(dihedral_views(True)) == 8 and len(set(dihedral_views(True))) == 8
    assert dihedral_views(False) == [(0, False), (0, True), (2, False), (2, True)]


def test_tta_of_an_equivariant_model_is_the_model_and_spread_is_zero():
    x = torch.randn(2, 3, 16, 16)
    identity = tta_predictor(lambda t: 2 * t, square=True, spread=True)(x)
    assert identity.shape == (2, 6, 16, 16)
    assert torch.allclose(identity[:, :3], 2 * x, atol=1e-6) and torch.allclose(
        identity[:, 3:], torch.zeros(1)
    )


def test_tta_averages_the_turned_back_views():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1.0
    out = tta_predictor(_Shift(), square=True, spread=True)(x)
    mean, spread = out[0, 0], out[0, 1]
    # each view moves the dot one pixel in another direction; turned back, the average spreads it evenly
    # over the four neighbours
    assert float(mean.sum()) == pytest.approx(1.0)
    for y, xx in [(3, 4), (3, 2), (2, 3), (4, 3)]:
        assert float(mean[y, xx]) == pytest.approx(0.25)
    assert float(spread[3, 4]) == pytest.approx(np.sqrt(0.25 * 0.75))


def test_predict_array_with_tta_and_uncertainty_channels():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(1, 40, 56)).astype(np.float32)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    torch.manual_seed(0)
    plain = predict_array(conv, img, spatial_dims=2, roi_size=(32, 32), divisor=1)
    both = predict_array(conv, img, spatial_dims=2, roi_size=(32, 32), divisor=1, tta=True, uncertainty=True)
    assert plain.shape == (1, 40, 56) and both.shape == (2, 40, 56)
    assert np.all(both[1] >= 0) and float(both[1].mean()) > 0  # a random conv is not rotation-invariant
    assert np.corrcoef(plain.ravel(), both[0].ravel())[0, 1] > 0.3
    only = predict_array(conv, img, spatial_dims=2, roi_size=(32, 32), divisor=1, tta=True)
    np.testing.assert_allclose(only[0], both[0], atol=1e-5)
