"""CLI: `stainfree simulate-clem` and `stainfree register` on a small simulated case (known transforms)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.io.readers import read_image
from stainfree.io.writers import write_ome_tiff

runner = CliRunner()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("clem")
    res = runner.invoke(
        app, ["simulate-clem", str(out), "--n-tiles", "2", "--size-um", "25.6", "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return out


def test_cli_register_same_modality_recovers_the_known_transform(case, tmp_path):
    tiles = sorted((case / "if_tiles").glob("*.ome.tif"))
    out = tmp_path / "reg"
    res = runner.invoke(
        app,
        [
            "register",
            *map(str, tiles),
            str(case / "if.ome.tif"),
            "--no-predict",
            "--out",
            str(out),
            "--truth",
            str(case / "if_tiles" / "truth.json"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "converged 2 of 2" in res.output
    table = pd.read_csv(out / "registration.csv")
    assert table["converged"].all()
    assert (table["error_px"] < 0.5).all()
    record = json.loads((out / "tile_000.json").read_text())
    truth = json.loads((case / "if_tiles" / "truth.json").read_text())["tile_000.ome.tif"]["matrix"]
    assert np.allclose(record["tile_to_target"], truth, atol=0.05)
    # the OME-TIFF: target, registered tile and prediction in the target frame, the affine in the description
    image, meta = read_image(out / "tile_000.ome.tif")
    target, _ = read_image(case / "if.ome.tif")
    assert meta.channel_names == ("target", "em_registered", "prediction_registered")
    assert meta.voxel_size_um[2] == pytest.approx(0.1)
    assert np.allclose(image[0], target)
    inside = image[1] != 0
    assert np.corrcoef(image[1][inside], target[inside])[0, 1] > 0.95
    with tifffile.TiffFile(out / "tile_000.ome.tif") as tif:
        assert "stainfree_registration" in tif.ome_metadata
    assert (out / "tile_000_overlay.png").stat().st_size > 0


def test_cli_register_errors_are_one_line(case, tmp_path):
    target = str(case / "if.ome.tif")
    tile = str(sorted((case / "em").glob("*.ome.tif"))[0])
    missing = runner.invoke(app, ["register", str(tmp_path / "nope.tif"), target, "--out", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no such file" in missing.output and len(missing.output.strip().splitlines()) == 1
    no_bundle = runner.invoke(app, ["register", tile, target, "--out", str(tmp_path)])
    assert no_bundle.exit_code == 2 and "bundle" in no_bundle.output
    big = write_ome_tiff(tmp_path / "big.ome.tif", np.ones((300, 300), np.float32), "YX", (None, 0.1, 0.1))
    too_big = runner.invoke(app, ["register", str(big), target, "--no-predict", "--out", str(tmp_path / "o")])
    assert too_big.exit_code == 2
    assert "does not fit" in too_big.output and len(too_big.output.strip().splitlines()) == 1


def test_cli_register_ncc_refinement_recovers_the_known_transform(case, tmp_path):
    tiles = sorted((case / "if_tiles").glob("*.ome.tif"))
    out = tmp_path / "reg_ncc"
    args = ["register", *map(str, tiles), str(case / "if.ome.tif"), "--no-predict", "--out", str(out)]
    res = runner.invoke(
        app, [*args, "--truth", str(case / "if_tiles" / "truth.json"), "--refine", "ncc", "-q"]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "registration.csv")
    assert table["converged"].all()
    assert (table["error_px"] < 0.5).all()
    bad = runner.invoke(app, [*args, "--refine", "sift"])
    assert bad.exit_code == 2 and "--refine" in bad.output and len(bad.output.strip().splitlines()) == 1
