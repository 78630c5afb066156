"""predict_array: tiling, padding, blockwise processing and blending against direct forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.errors import InputError
from stainfree.inference.tiling import (
    _block_grid,
    border_margin,
    gaussian_weights,
    model_divisor,
    predict_array,
)


class Constant(torch.nn.Module):
    """Outputs a constant everywhere (any tile seam would show as a deviation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 3.5) + 0 * x[:, :1]


class NeedsDivisor(torch.nn.Module):
    """A 1x1 convolution that refuses inputs not divisible by 16, like a U-Net of depth 4."""

    def __init__(self, spatial_dims: int = 3) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
        self.conv = conv(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert all(s % 16 == 0 for s in x.shape[2:]), x.shape
        return self.conv(x)


def _direct(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 19, 45, 37)).astype(np.float32)


def test_pointwise_model_exact_for_size_not_divisible_by_16(volume):
    torch.manual_seed(0)
    model = NeedsDivisor(3)
    out = predict_array(model, volume, spatial_dims=3, roi_size=(16, 32, 32))
    assert out.shape == (2, 19, 45, 37) and out.dtype == np.float32
    np.testing.assert_allclose(out, _direct(model.conv, volume), atol=1e-5)


def test_conv_model_close_to_direct_forward(volume):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(2, 3, 3, padding=1)
    out = predict_array(conv, volume, spatial_dims=3, roi_size=(16, 32, 32))
    # the image is mirrored beyond its border in Y and X (1/8 of the tile), so the border voxels see image,
    # not zeros; never along Z (a focus series is not mirror-symmetric)
    m = border_margin((16, 32, 32))
    assert m == (0, 4, 4) and border_margin((64, 64)) == (8, 8) and border_margin((1, 64, 64)) == (0, 8, 8)
    mirrored = np.pad(volume, [(0, 0), *((k, k) for k in m)], mode="reflect")
    ref = _direct(conv, mirrored)[:, :, m[1] : -m[1], m[2] : -m[2]]
    # 3x3x3 zero-padded convs differ only at tile edges, which the Gaussian weights all but ignore
    assert np.abs(out - ref).max() < 0.05
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9999
    zero_border = _direct(conv, volume)
    assert np.abs(out - zero_border)[:, :, 1:-1, 1:-1].max() < 0.05  # inside, as before
    assert np.abs(out - zero_border)[:, :, 0].max() > 0.1  # at the Y border, no zero padding


def test_blockwise_equals_whole(volume):
    torch.manual_seed(0)
    model = NeedsDivisor(3)
    whole = predict_array(model, volume, spatial_dims=3, roi_size=(16, 16, 16))
    blocks = predict_array(model, volume, spatial_dims=3, roi_size=(16, 16, 16), max_block_voxels=20_000)
    _, grid = _block_grid((19, 45, 37), (16, 16, 16), (8, 8, 8), 20_000)
    assert len(grid) > 1  # really more than one block
    np.testing.assert_allclose(blocks, whole, atol=1e-5)
    conv = torch.nn.Conv3d(2, 1, 3, padding=1)
    whole = predict_array(conv, volume, spatial_dims=3, roi_size=(16, 16, 16))
    blocks = predict_array(conv, volume, spatial_dims=3, roi_size=(16, 16, 16), max_block_voxels=20_000)
    m = border_margin((16, 16, 16))
    mirrored = np.pad(volume, [(0, 0), *((k, k) for k in m)], mode="reflect")
    ref = _direct(conv, mirrored)[:, :, m[1] : -m[1], m[2] : -m[2]]
    # both differ from one forward pass over the mirrored image only where tile edges meet
    assert np.abs(whole - ref).max() < 0.06 and np.abs(blocks - ref).max() < 0.06
    assert np.corrcoef(blocks.ravel(), whole.ravel())[0, 1] > 0.9999


def test_blockwise_into_memmap_and_from_dask(volume, tmp_path):
    da = pytest.importorskip("dask.array")
    model = NeedsDivisor(3)
    lazy = da.from_array(volume, chunks=(2, 8, 16, 16))
    path = tmp_path / "out.dat"

    def make(shape, dtype):
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    out = predict_array(model, lazy, spatial_dims=3, roi_size=16, max_block_voxels=20_000, out=make)
    assert isinstance(out, np.memmap)
    np.testing.assert_allclose(np.asarray(out), _direct(model.conv, volume), atol=1e-5)


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_gaussian_blending_has_no_seams(volume, overlap):
    out = predict_array(Constant(), volume, spatial_dims=3, roi_size=(16, 16, 16), overlap=overlap)
    np.testing.assert_allclose(out, 3.5, rtol=1e-5)


def test_2d_model_over_3d_input_slice_by_slice(volume):
    torch.manual_seed(0)
    model = NeedsDivisor(2)
    out = predict_array(model, volume, spatial_dims=2, roi_size=32)
    assert out.shape == (2, 19, 45, 37)
    ref = np.stack([_direct(model.conv, volume[:, z]) for z in range(19)], axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_time_lapse_frame_by_frame(volume):
    model = NeedsDivisor(3)
    frames = np.stack([volume, 2 * volume])
    out = predict_array(model, frames, spatial_dims=3, roi_size=16)
    assert out.shape == (2, 2, 19, 45, 37)
    np.testing.assert_allclose(out[1], _direct(model.conv, 2 * volume), atol=1e-5)


def test_image_smaller_than_tile_and_bf16():
    model = NeedsDivisor(2)
    x = np.random.default_rng(1).normal(size=(2, 5, 7)).astype(np.float32)
    out = predict_array(model, x, spatial_dims=2, roi_size=64)
    np.testing.assert_allclose(out, _direct(model.conv, x), atol=1e-5)
    low = predict_array(model, x, spatial_dims=2, roi_size=64, bf16=True)
    np.testing.assert_allclose(low, out, atol=0.1)


def test_bad_inputs_are_input_errors(volume):
    with pytest.raises(InputError, match="needs"):
        predict_array(NeedsDivisor(3), volume[0, 0], spatial_dims=3)
    with pytest.raises(InputError, match="overlap"):
        predict_array(NeedsDivisor(3), volume, spatial_dims=3, overlap=1.0)


def test_helpers():
    w = gaussian_weights((8, 8))
    assert w.shape == (8, 8) and w.max() <= 1 and w.min() >= 1e-6
    assert model_divisor(torch.nn.Identity(), 3) == (16, 16, 16)

    class Deep(torch.nn.Module):
        depth = 2

    assert model_divisor(Deep(), 2) == (4, 4)


def test_border_margin_costs_no_extra_tiles_on_a_small_image():
    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.windows: list[tuple[int, ...]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.windows.extend([tuple(x.shape[2:])] * x.shape[0])
            return x[:, :1] * 2

    model = Counting()
    planes = np.random.default_rng(1).normal(size=(2, 3, 40, 40)).astype(np.float32)
    out = predict_array(model, planes, spatial_dims=2, roi_size=(256, 256), divisor=8)
    np.testing.assert_allclose(out, planes[:1] * 2, rtol=1e-5, atol=1e-5)
    # one tile per plane, grown by the mirrored margin (40 + 2 x 5 -> 56 after rounding to the divisor)
    assert model.windows == [(56, 56)] * 3
