"""Window plans, cross-fade weights and the inference preparation of a network (inference/windows.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.inference.tiling import predict_array
from stainfree.inference.windows import (
    axis_plan,
    crossfade_weights,
    fold_batch_norms,
    native_bf16,
    prepare_model,
    processed_fraction,
    tile_plan,
)
from stainfree.models.unet import UNet


def test_a_512_plane_is_two_by_two_windows_of_288() -> None:
    # 512 plus a mirrored margin of 8 on each side, a 256 tile, overlap 3/16
    assert axis_plan(528, 256, 3 / 16, 16) == (288, [0, 240])
    size, starts, _ = tile_plan((32, 528, 528), (32, 256, 256), 3 / 16, (16, 16, 16))
    assert size == (32, 288, 288) and [len(s) for s in starts] == [1, 2, 2]
    # 4 windows of 32 x 288 x 288 over the 32 x 512 x 512 image: 1.27x its voxels (MONAI's 128-tiles: 3x)
    frac = processed_fraction((32, 528, 528), (32, 256, 256), 3 / 16, (16, 16, 16))
    assert frac * 528**2 / 512**2 == pytest.approx(1.2656, abs=1e-3)


@pytest.mark.parametrize(
    ("length", "tile"), [(528, 256), (1000, 256), (100, 16), (45, 16), (37, 16), (17, 16)]
)
def test_windows_cover_the_axis_and_weights_sum_to_one(length: int, tile: int) -> None:
    size, starts = axis_plan(length, tile, 3 / 16, 16)
    assert size % 16 == 0 and starts[0] == 0
    assert starts[-1] + size >= length and (len(starts) == 1 or starts[-1] + size == length)
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + size - b >= int(np.ceil(3 / 16 * tile))  # neighbours share at least the overlap
    if tile > 16:  # pooling grids line up (impossible with overlap when the tile is the divisor)
        assert all(s % 16 == 0 for s in starts[:-1])
    total = np.zeros(starts[-1] + size)
    for s, w in zip(starts, crossfade_weights(size, starts), strict=True):
        assert w.min() > 0
        total[s : s + size] += w
    np.testing.assert_allclose(total[:length], 1.0, atol=1e-5)


def test_crossfade_is_seamless_and_close_to_one_window() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1)
    )
    x = np.random.default_rng(0).standard_normal((1, 200, 184)).astype(np.float32)
    whole = predict_array(net, x, spatial_dims=2, roi_size=(256, 256), divisor=1)
    tiled = predict_array(net, x, spatial_dims=2, roi_size=(64, 64), divisor=1)
    # a two-layer net sees 2 voxels: the cross-fades keep window edges out, so tiles equal one window
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_fold_batch_norms_keeps_the_function_and_the_model() -> None:
    torch.manual_seed(0)
    net = UNet(1, 2, spatial_dims=3, depth=2, base_channels=4)
    for m in net.modules():  # running statistics as after training
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(1, 1, 8, 16, 16)
    folded = fold_batch_norms(net)
    assert folded is not net
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules()) > 0  # the original is untouched
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), net(x).numpy(), atol=1e-4)


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Conv2d(1, 1, 3, padding=1).eval()

    def broken(model: object, **kwargs: object) -> object:
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    run = prepare_model(net, device="cpu", compile=True)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(run(x).numpy(), net(x).numpy())


def test_native_bf16_is_a_bool() -> None:
    assert isinstance(native_bf16("cpu"), bool)
    assert native_bf16("mps") is False
