"""Bundle-based prediction: stored normalization, activations, resampling back, files and collections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.config import BundleConfig, ChannelStats, ModelConfig
from stainfree.inference.predict import predict_array, predict_file, predict_with_bundle
from stainfree.models.bundle import load_bundle, save_bundle
from stainfree.models.registry import build_model
from stainfree.types import ImageMeta


def _bundle(tmp_path, name="dna", task="regression", dims=3, mode="3d", out=1, **cfg):
    torch.manual_seed(0)
    model_cfg = ModelConfig(spatial_dims=dims, in_channels=1, out_channels=out, depth=1, base_channels=2)
    config = BundleConfig(
        name=name,
        task=task,
        spatial_dims=dims,
        input_mode=mode,
        model=model_cfg,
        target_channels=[name] if task == "regression" else None,
        voxel_size_um=None,
        **cfg,
    )
    return save_bundle(tmp_path / f"{name}.stainfree", build_model(model_cfg), config)


@pytest.fixture
def stack() -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(6, 20, 18)) * 5 + 100).astype(np.float32)


def test_stored_dataset_normalization_is_applied(tmp_path, stack):
    path = _bundle(
        tmp_path,
        normalization_scope="dataset",
        normalization_stats=[ChannelStats(method="zscore", mean=90, std=4)],
    )
    bundle = load_bundle(path)
    meta = ImageMeta(axes="ZYX", shape=stack.shape, dtype="float32")
    pred, out_meta = predict_with_bundle(bundle, stack, meta, roi_size=(8, 16, 16))
    ref = predict_array(
        bundle.model, ((stack - 90) / 4)[None], spatial_dims=3, roi_size=(8, 16, 16), divisor=2
    )
    np.testing.assert_allclose(pred, ref, atol=1e-5)
    assert out_meta.axes == "CZYX" and out_meta.channel_names == ("dna",)
    # per-image statistics give a different (z-scored) input
    other = predict_array(
        bundle.model, ((stack - 100) / 5)[None], spatial_dims=3, roi_size=(8, 16, 16), divisor=2
    )
    assert np.abs(pred - other).max() > 1e-3


def test_binary_sigmoid_and_2d_image(tmp_path, stack):
    path = _bundle(tmp_path, name="nucleus", task="binary", dims=2, mode="2d", class_names=["nucleus"])
    image = stack[0]
    pred, meta = predict_with_bundle(path, image, ImageMeta(axes="YX", shape=image.shape, dtype="float32"))
    assert pred.shape == (1, 20, 18) and meta.axes == "CYX" and meta.channel_names == ("nucleus",)
    assert 0.0 <= pred.min() and pred.max() <= 1.0


def test_multiclass_softmax_sums_to_one(tmp_path, stack):
    path = _bundle(tmp_path, name="volume", task="multiclass", out=3, class_names=["bg", "a", "b"])
    pred, meta = predict_with_bundle(path, stack, None)
    assert pred.shape == (3, 6, 20, 18)
    np.testing.assert_allclose(pred.sum(axis=0), 1.0, atol=1e-5)
    assert meta.channel_names == ("bg", "a", "b")


def test_resampled_back_to_input_grid(tmp_path, stack):
    path = _bundle(tmp_path, dims=2, mode="2d")
    bundle = load_bundle(path)
    bundle.config.voxel_size_um = (
        1.0,
        0.2,
        0.2,
    )  # trained at 0.2 um, image at 0.1 um
    meta = ImageMeta(axes="ZYX", shape=stack.shape, dtype="float32", voxel_size_um=(1.0, 0.1, 0.1))
    pred, out_meta = predict_with_bundle(bundle, stack, meta)
    assert pred.shape == (1, 6, 20, 18)
    assert out_meta.voxel_size_um == (1.0, 0.1, 0.1)


def test_predict_file_writes_ome_tiff_and_zarr(tmp_path, stack):
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    src = write_ome_tiff(tmp_path / "bf.ome.tif", stack, "ZYX", voxel_size_um=(0.5, 0.2, 0.2))
    bundle = _bundle(tmp_path)
    out = predict_file(bundle, src, tmp_path / "pred.ome.tif", progress=False)
    arr, meta = read_image(out)
    assert arr.shape == (6, 20, 18) and meta.channel_names[0] == "dna"
    assert meta.voxel_size_um == pytest.approx((0.5, 0.2, 0.2))
    zout = predict_file(bundle, src, tmp_path / "pred.ome.zarr", progress=False)
    zarr_arr, _ = read_image(zout)
    np.testing.assert_allclose(np.asarray(zarr_arr), arr, atol=1e-5)
    from stainfree.errors import InputError

    with pytest.raises(InputError, match="overwrite"):
        predict_file(bundle, src, src)


def test_collection_writes_named_channels_and_png(tmp_path, stack):
    from PIL import Image

    from stainfree.inference.collection import color_of, merge_rgb, predict_collection_file
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    src = write_ome_tiff(tmp_path / "bf.ome.tif", stack, "ZYX")
    bundles = [_bundle(tmp_path, name=n) for n in ("dna", "membrane")]
    out = predict_collection_file(bundles, src, tmp_path / "all.ome.tif", progress=False)
    arr, meta = read_image(out["image"])
    assert arr.shape == (2, 6, 20, 18) and meta.channel_names == ("dna", "membrane")
    png = np.asarray(Image.open(out["merge"]))
    assert png.shape == (20, 2 * 18 + 4, 3) and png.dtype == np.uint8
    # a single bright DNA voxel shows in the DNA colour only, in both views
    one = np.zeros((1, 3, 4, 4), dtype=np.float32)
    one[0, 1, 2, 2] = 1.0
    rgb = merge_rgb(one, ["dna"], low=0, high=100, gap=1)
    assert tuple(rgb[2, 2]) == color_of("dna") and tuple(rgb[2, 4 + 1 + 2]) == color_of("dna")
    assert rgb[0, 0].sum() == 0


@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.zarr"])
def test_streaming_path_matches_in_memory(tmp_path, stack, suffix):
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    src3d = write_ome_tiff(tmp_path / "bf.ome.tif", stack, "ZYX")
    src2d = write_ome_tiff(tmp_path / "bf2d.ome.tif", stack[0], "YX")
    for bundle, src in (
        (_bundle(tmp_path), src3d),
        (_bundle(tmp_path, name="nucleus", task="binary", dims=2, mode="2d", class_names=["nucleus"]), src2d),
    ):
        a = predict_file(bundle, src, tmp_path / f"mem{suffix}", progress=False)
        b = predict_file(bundle, src, tmp_path / f"stream{suffix}", progress=False, stream_above_voxels=0)
        (ma, meta_a), (mb, meta_b) = read_image(a), read_image(b)
        assert meta_a.axes == meta_b.axes and meta_a.channel_names == meta_b.channel_names
        np.testing.assert_allclose(np.asarray(mb), np.asarray(ma), atol=1e-4)


def test_time_lapse_frame_by_frame_with_bundle(tmp_path, stack):
    path = _bundle(tmp_path, dims=2, mode="2d")
    frames = np.stack([stack, stack[::-1]])
    meta = ImageMeta(axes="TZYX", shape=frames.shape, dtype="float32")
    pred, out_meta = predict_with_bundle(path, frames, meta)
    assert pred.shape == (2, 1, 6, 20, 18) and out_meta.axes == "TCZYX"
    single, _ = predict_with_bundle(
        path, stack[::-1], ImageMeta(axes="ZYX", shape=stack.shape, dtype="float32")
    )
    np.testing.assert_allclose(pred[1], single, atol=1e-5)
