"""Window plans, cross-fade weights and the inference preparation of a network (inference/windows.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.inference.tiling import border_margin, predict_array
from stainfree.inference.windows import (
    DEFAULT_WINDOW_MEMORY,
    axis_plan,
    budget_tile,
    crossfade_weights,
    fold_batch_norms,
    native_bf16,
    prepare_model,
    processed_fraction,
    tile_plan,
    window_voxel_budget,
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
    padded = -(-length // 16) * 16  # the caller pads the axis at its end to a multiple of the divisor
    assert starts[-1] + size == padded
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + size - b >= int(np.ceil(3 / 16 * tile))  # neighbours share at least the overlap
    if (
        tile > 16
    ):  # pooling grids line up, the last window's too (impossible with overlap when tile = divisor)
        assert all(s % 16 == 0 for s in starts)
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


def test_window_budget_follows_the_width_and_precision_of_the_network() -> None:
    net = UNet(1, 1, spatial_dims=3, depth=2, base_channels=32)
    bf16 = window_voxel_budget(net, bf16=True)
    assert bf16 == DEFAULT_WINDOW_MEMORY // (6 * 32 * 2)
    assert window_voxel_budget(net, bf16=False) == bf16 // 2
    assert window_voxel_budget(UNet(1, 1, spatial_dims=3, depth=2, base_channels=8), bf16=True) == 4 * bf16
    assert window_voxel_budget(net, bf16=True, memory=None) is None
    assert window_voxel_budget(lambda t: t, bf16=True) is None  # a plain callable: no estimate


def test_budget_splits_windows_only_where_they_exceed_it() -> None:
    args = ((32, 528, 528), (32, 256, 256), 3 / 16, (16, 16, 16))
    assert budget_tile(*args, None) == (32, 256, 256)
    assert budget_tile(*args, 32 * 288 * 288) == (32, 256, 256)  # the windows fit: the plan is unchanged
    # the fnet-size U-Net in bf16 (2.1 M voxels): the 2 x 2 windows of 288 become 2 x 4 of 288 x 160,
    # 1.11x the voxels rather than Z split in three
    size, starts, _ = tile_plan(*args, 2_097_152)
    assert size == (32, 288, 160) and [len(s) for s in starts] == [1, 2, 4]
    for budget in (1_000_000, 300_000, 50_000):
        size, starts, weights = tile_plan(*args, budget)
        assert int(np.prod(size)) <= budget
        for n, sz, st, w in zip(args[0], size, starts, weights, strict=True):
            assert st[0] == 0 and st[-1] + sz >= n
            total = np.zeros(st[-1] + sz)
            for a, ww in zip(st, w, strict=True):
                total[a : a + sz] += ww
            np.testing.assert_allclose(total[:n], 1.0, atol=1e-5)
    # nothing fits: the smallest windows there are
    size, _, _ = tile_plan(*args, 10)
    assert size == tile_plan(args[0], (16, 16, 16), *args[2:])[0]


def test_window_memory_changes_windows_but_not_the_result() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1))
    x = np.random.default_rng(0).standard_normal((1, 12, 90, 70)).astype(np.float32)
    kw = {"spatial_dims": 3, "roi_size": (16, 64, 64), "divisor": 4}
    free = predict_array(net, x, window_memory=None, **kw)
    # windows within the default budget of this thin network: the very same plan, the very same result
    np.testing.assert_array_equal(predict_array(net, x, **kw), free)
    shapes: list[tuple[int, ...]] = []
    net.register_forward_pre_hook(lambda _m, a: shapes.append(tuple(a[0].shape[2:])))
    # 6 copies of 4 channels of float32 = 96 bytes a voxel: at most 16 * 32 * 32 voxels a window, down to
    # 16-voxel tiles (3-voxel overlaps: the net sees one voxel, which the cross-fades keep out)
    small = predict_array(net, x, window_memory=96 * 16 * 32 * 32, **kw)
    assert shapes and max(int(np.prod(s)) for s in shapes) <= 16 * 32 * 32
    np.testing.assert_allclose(small, free, atol=1e-5)


def _padded_like_the_windows(x: np.ndarray, roi: tuple[int, ...], divisor: int) -> np.ndarray:
    """``x`` mirrored by the border margin in Y and X, then padded at its end to a multiple of the divisor:
    mirrored in Y and X, with zeros along Z."""
    m = border_margin(roi)
    mirrored = np.pad(x, [(0, 0), *((k, k) for k in m)], mode="reflect")
    z = mirrored.shape[1]
    mirrored = np.pad(mirrored, [(0, 0), (0, -z % divisor), (0, 0), (0, 0)])
    ends = [(0, 0), (0, 0), *((0, -n % divisor) for n in mirrored.shape[2:])]
    return np.pad(mirrored, ends, mode="reflect")


class GridMeans(torch.nn.Module):
    """The input plus its means over cells of 8 voxels a side: the output depends on where the pooling grid
    lies, as a U-Net's does, so windows agree with one pass over the whole image only where their grids
    line up with it."""

    divisor = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool3d(x, 8)
        return x + torch.nn.functional.interpolate(pooled, scale_factor=8, mode="nearest")


def test_last_window_of_an_axis_not_a_multiple_of_the_divisor_lines_up() -> None:
    x = np.random.default_rng(1).standard_normal((1, 19, 203, 157)).astype(np.float32)
    roi = (8, 48, 48)
    out = predict_array(GridMeans(), x, spatial_dims=3, roi_size=roi)
    # one pass over the image mirrored by the border margin and padded at its end to a multiple of 8:
    # mirrored in Y and X, zeros along Z (several windows share it)
    padded = _padded_like_the_windows(x, roi, 8)
    with torch.no_grad():
        whole = GridMeans()(torch.from_numpy(padded)[None])[0].numpy()
    m = border_margin(roi)
    ref = whole[:, :19, m[1] : m[1] + 203, m[2] : m[2] + 157]
    for n, k, r in zip(x.shape[1:], m, roi, strict=True):
        size, starts = axis_plan(n + 2 * k, r, 3 / 16, 8)
        assert len(starts) > 1 and all(s % 8 == 0 for s in starts)  # several windows, all on the grid
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)  # so no seam either


def test_unet_windows_close_to_one_pass_over_the_padded_image() -> None:
    torch.manual_seed(0)
    net = UNet(1, 1, spatial_dims=3, depth=2, base_channels=4).eval()
    x = np.random.default_rng(2).standard_normal((1, 19, 75, 61)).astype(np.float32)
    roi = (16, 48, 48)
    out = predict_array(net, x, spatial_dims=3, roi_size=roi)
    m = border_margin(roi)
    padded = _padded_like_the_windows(x, roi, 4)
    with torch.no_grad():
        whole = net(torch.from_numpy(padded)[None])[0].numpy()
    ref = whole[:, :19, m[1] : m[1] + 75, m[2] : m[2] + 61]
    # the cross-fades keep the windows' zero-padded edges out (here 0.004 std at most; with the last window
    # flush with the end, off the pooling grid, it was 2.6 std at the last plane)
    np.testing.assert_allclose(out, ref, rtol=0, atol=0.02 * float(ref.std()))
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99999
