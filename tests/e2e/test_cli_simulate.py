"""`stainfree simulate` writes the documented layout; bad options exit with code 2 and one line."""

from __future__ import annotations

import json

import pandas as pd
import tifffile
import yaml
from typer.testing import CliRunner

from stainfree.cli import app


def test_cli_simulate_writes_layout(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump({"voxel_size_um": [0.4, 0.25, 0.25], "cells_per_field": [1, 1]}))
    out = tmp_path / "out"
    args = ["simulate", str(out), "--config", str(cfg), "--seed", "3", "--n-fields", "2"]
    args += ["--shape", "12", "48", "48", "--n-frames", "2", "--microscope", "widefield"]
    args += ["--cell-shape", "elongated", "--gfp", "mitochondria"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["field"].tolist() == ["field_000", "field_001"]
    for col in ("brightfield", "fluorescence", "fluorescence_clean", "nilered", "labels", "instances"):
        assert (out / manifest.loc[0, col]).is_file(), col
    meta = json.loads((out / "field_000" / "field.json").read_text())
    assert meta["microscope"]["name"] == "widefield" and meta["n_frames"] == 2
    assert meta["cells"][0]["shape"] == "elongated"
    assert meta["nilered"]["channels"] == ["yellow", "red", "gfp"]
    assert meta["voxel_size_um"] == [0.4, 0.25, 0.25]
    assert tifffile.imread(out / "field_000" / "nilered.ome.tif").shape == (2, 3, 12, 48, 48)


def test_cli_simulate_bad_option(tmp_path):
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "x"), "--microscope", "confocal9000"])
    assert result.exit_code == 2
    assert "microscope" in result.output
