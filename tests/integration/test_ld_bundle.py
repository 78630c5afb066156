"""make-masks --ld-bundle: the LD network runs on each colocalization image and its droplets are zeroed,
exactly as if its thresholded prediction had been given as --ld-mask."""

from __future__ import annotations

import numpy as np
import tifffile
import torch
from typer.testing import CliRunner

from stainfree.config import BundleConfig, ModelConfig
from stainfree.io.writers import write_ome_tiff
from stainfree.models.bundle import load_bundle, save_bundle
from stainfree.models.registry import build_model
from stainfree.types import ImageMeta


def test_ld_bundle_zeroes_what_the_network_calls_droplets(tmp_path):
    from stainfree.cli import app
    from stainfree.inference.predict import predict_with_bundle

    torch.manual_seed(3)
    model_cfg = ModelConfig(spatial_dims=2, in_channels=2, out_channels=1, depth=2, base_channels=4)
    cfg = BundleConfig(
        name="LD",
        task="binary",
        spatial_dims=2,
        input_mode="2d",
        model=model_cfg,
        signal_channels=["yellow", "red"],
        class_names=["lipid_droplet"],
    )
    bundle = save_bundle(tmp_path / "LD.stainfree", build_model(model_cfg).eval(), cfg)
    rng = np.random.default_rng(0)
    yellow = rng.gamma(2.0, 50.0, (64, 64)).astype(np.float32)
    red = (0.8 * yellow + rng.normal(0, 5, yellow.shape)).astype(np.float32)
    gfp = np.zeros_like(yellow)
    for y, x in [(12, 12), (12, 50), (50, 12), (50, 50), (32, 32)]:
        gfp[y - 3 : y + 4, x - 3 : x + 4] = 500.0
    stack = np.stack([yellow, red, gfp])[:, None]  # (C, Z=1, Y, X)
    write_ome_tiff(tmp_path / "in" / "cell.ome.tif", stack, "CZYX", channel_names=["yellow", "red", "gfp"])
    # what the network calls droplets, computed independently; a threshold that zeroes part of the image
    meta = ImageMeta(axes="CZYX", shape=stack.shape, dtype="float32", channel_names=("yellow", "red", "gfp"))
    prob, _ = predict_with_bundle(load_bundle(bundle), stack, meta)
    t = float(np.quantile(prob, 0.7))
    expected = (prob[0].reshape(1, 64, 64) > t).astype(np.uint8)
    assert 0.1 < expected.mean() < 0.5
    write_ome_tiff(tmp_path / "expected_ld.ome.tif", expected[0], "YX")

    runner = CliRunner()
    common = ["make-masks", str(tmp_path / "in"), "--bleed", "0"]
    res = runner.invoke(
        app, [*common, "--out", str(tmp_path / "a"), "--ld-bundle", str(bundle), "--ld-threshold", str(t)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, [*common, "--out", str(tmp_path / "b"), "--ld-mask", str(tmp_path / "expected_ld.ome.tif")]
    )
    assert res.exit_code == 0, res.output
    a = tifffile.imread(tmp_path / "a" / "cell_mask.ome.tif")
    b = tifffile.imread(tmp_path / "b" / "cell_mask.ome.tif")
    assert np.array_equal(a, b) and a.any()
    res = runner.invoke(app, [*common, "--out", str(tmp_path / "n")])  # no LD zeroing at all
    assert res.exit_code == 0, res.output
    assert not np.array_equal(a, tifffile.imread(tmp_path / "n" / "cell_mask.ome.tif"))  # zeroing took effect
    both = runner.invoke(
        app,
        [
            *common,
            "--out",
            str(tmp_path / "c"),
            "--ld-bundle",
            str(bundle),
            "--ld-mask",
            str(tmp_path / "expected_ld.ome.tif"),
        ],
    )
    assert both.exit_code == 2 and "not both" in both.output
