"""`stainfree simulate --events` writes known events; `stainfree quantify` on the field gives them back as
tables and figures."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from stainfree.cli import app


def test_simulate_events_then_quantify_tracks(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", str(out), "--seed", "3", "--n-fields", "1", "--shape", "16", "112", "112"]
    args += ["--n-frames", "7", "--events", "2", "1", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    events = pd.read_csv(out / "field_000" / "events.csv")
    meta = json.loads((out / "field_000" / "field.json").read_text())
    assert len(events) == len(meta["events"]) >= 3
    assert meta["parameters"]["events"] == [2, 1, 1]
    assert set(events["kind"]) <= {"fission", "fusion", "contact"}
    q = tmp_path / "q"
    result = CliRunner().invoke(
        app, ["quantify", str(out / "field_000"), "--out", str(q), "--link", "laptrack"]
    )
    assert result.exit_code == 0, result.output
    for name in ("track_events", "event_rates", "contact_events"):
        assert (q / f"{name}.csv").is_file()
    for png in ("event_rates.png", "contact_events_over_time.png", "contacts_over_time.png"):
        assert (q / png).stat().st_size > 1000
    rates = pd.read_csv(q / "event_rates.csv")
    fis = rates[(rates["kind"] == "fission") & (rates["structure_a"] == "mitochondria")]
    assert int(fis["events"].iloc[0]) >= 1


def test_simulate_events_bad_count(tmp_path):
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "x"), "--events", "1", "-1", "0"])
    assert result.exit_code == 2
    assert "events" in result.output


def test_cli_segment_time_lapse_then_quantify_the_folder(tmp_path):
    import numpy as np
    import pytest

    pytest.importorskip("torch")
    from fakes import random_nilered_bundle
    from stainfree.io.writers import write_ome_tiff

    random_nilered_bundle(tmp_path / "b", "LD", "binary", ["lipid_droplet"], seed=4)
    img = (np.random.default_rng(1).random((3, 2, 2, 24, 32)) * 100 + 10).astype(np.float32)
    write_ome_tiff(tmp_path / "tl.ome.tif", img, "TCZYX", (0.5, 0.2, 0.2), ["yellow", "red"])
    args = [
        "segment",
        str(tmp_path / "tl.ome.tif"),
        "--bundles",
        str(tmp_path / "b"),
        "--out",
        str(tmp_path / "s"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "masks_zarr:" in result.output
    args = ["quantify", str(tmp_path / "s"), "--out", str(tmp_path / "q"), "--no-figures"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    objects = pd.read_csv(tmp_path / "q" / "objects.csv")
    assert sorted(objects["frame"].unique()) == [0, 1, 2]
