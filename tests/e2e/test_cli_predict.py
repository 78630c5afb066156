"""CLI: ``stainfree predict`` (one bundle, a collection) and ``stainfree evaluate`` on tiny files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.config import BundleConfig, ModelConfig
from stainfree.io.readers import read_image
from stainfree.io.writers import write_ome_tiff
from stainfree.models.bundle import save_bundle
from stainfree.models.registry import build_model

runner = CliRunner()


def _bundle(tmp_path, name):
    torch.manual_seed(0)
    model_cfg = ModelConfig(spatial_dims=3, in_channels=1, out_channels=1, depth=1, base_channels=2)
    config = BundleConfig(name=name, model=model_cfg, target_channels=[name], voxel_size_um=None)
    return save_bundle(tmp_path / f"{name}.stainfree", build_model(model_cfg), config)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(6, 24, 20)).astype(np.float32)
    clean = np.stack([signal * 2, -signal]).astype(np.float32)
    noisy = clean + rng.normal(size=clean.shape).astype(np.float32)
    return {
        "signal": write_ome_tiff(tmp_path / "bf.ome.tif", signal, "ZYX", voxel_size_um=(0.5, 0.2, 0.2)),
        "target": write_ome_tiff(tmp_path / "t.ome.tif", noisy, "CZYX", channel_names=["dna", "membrane"]),
        "clean": write_ome_tiff(tmp_path / "c.ome.tif", clean, "CZYX", channel_names=["dna", "membrane"]),
        "dna": _bundle(tmp_path, "dna"),
        "membrane": _bundle(tmp_path, "membrane"),
    }


def test_cli_predict_one_bundle(tmp_path, files):
    out = tmp_path / "pred.ome.tif"
    res = runner.invoke(
        app,
        [
            "predict",
            str(files["dna"]),
            str(files["signal"]),
            "--out",
            str(out),
            "-q",
            "--tile",
            "8",
            "16",
            "16",
            "--overlap",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    arr, meta = read_image(out)
    assert arr.shape == (6, 24, 20) and meta.channel_names == ("dna",)


def test_cli_predict_with_tta_and_uncertainty(tmp_path, files):
    out = tmp_path / "tta.ome.tif"
    args = [
        "predict",
        str(files["dna"]),
        str(files["signal"]),
        "--out",
        str(out),
        "-q",
        "--tile",
        "8",
        "16",
        "16",
    ]
    res = runner.invoke(app, [*args, "--tta", "--uncertainty"])
    assert res.exit_code == 0, res.output
    arr, meta = read_image(out)
    assert arr.shape == (2, 6, 24, 20) and meta.channel_names == ("dna", "dna_tta_spread")
    assert float(arr[1].min()) >= 0 and float(arr[1].max()) > 0  # an untrained net is not symmetric
    res = runner.invoke(app, [*args[:4], str(tmp_path / "u.ome.tif"), "-q", "--uncertainty"])
    assert res.exit_code == 2 and "add tta" in res.output


def test_cli_predict_collection_then_evaluate(tmp_path, files):
    out = tmp_path / "pred.ome.tif"
    res = runner.invoke(
        app,
        ["predict", str(files["dna"]), str(files["membrane"]), str(files["signal"]), "--out", str(out), "-q"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pred_merge.png").is_file()
    arr, meta = read_image(out)
    assert arr.shape == (2, 6, 24, 20) and meta.channel_names == ("dna", "membrane")

    ev = tmp_path / "eval"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(out),
            "--target",
            str(files["target"]),
            "--clean",
            str(files["clean"]),
            "--signal",
            str(files["signal"]),
            "--out",
            str(ev),
        ],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(ev / "evaluation.csv")
    assert list(table["structure"]) == ["dna", "membrane"]
    assert set(table["c_max_method"]) == {"clean"}
    # C_max of signal*2 + N(0,1) noise: sqrt(4/(4+1)) ~ 0.89; of -signal + noise: sqrt(1/2) ~ 0.71
    assert table["c_max"].iloc[0] == pytest.approx(np.sqrt(0.8), abs=0.03)
    assert table["c_max"].iloc[1] == pytest.approx(np.sqrt(0.5), abs=0.03)
    assert (ev / "pearson_r.png").is_file() and (ev / "slices.png").is_file()


def test_cli_errors_are_one_line(tmp_path, files):
    res = runner.invoke(app, ["predict", str(files["signal"]), "--out", str(tmp_path / "x.ome.tif")])
    assert res.exit_code == 2 and "at least one bundle" in res.output
    res = runner.invoke(
        app,
        ["predict", str(tmp_path / "nope.stainfree"), str(files["signal"]), "--out", str(tmp_path / "x.tif")],
    )
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(files["signal"]),
            "--target",
            str(files["target"]),
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2 and "channels" in res.output
