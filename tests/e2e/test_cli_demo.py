"""`stainfree demo` end to end on a tiny configuration: every step runs and the report holds its parts."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.io.movie import movie_frame_count

TINY = {
    "n_fields": 3,
    "shape": [16, 64, 64],
    "staining_steps": 3,
    "staining_patch": [8, 16, 16],
    "staining_depth": 2,
    "staining_channels": 4,
    "batch_size": 2,
    "organelle_nets": ["LD"],
    "organelle_steps": 3,
    "timelapse_frames": 6,
    "timelapse_shape": [8, 48, 48],
}


def test_demo_writes_report_with_every_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output folder, as `make demo` uses
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(app, ["demo", "--out", "demo", "--config", "demo.yaml", "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "demo"
    report = out / "report.html"
    assert report.is_file() and "report.html" in result.output
    html = report.read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    expected = ["The digital cell", "Virtual staining", "Organelles from one dye", "Quantification"]
    assert titles == [*expected, "Live-cell anatomy over time", "Run"]
    assert (
        html.count("<img") >= 7
    )  # montage, merge, slices, r box plot, overlay, scores, quantification, composite
    assert html.count('<source type="video/mp4" src="data:video/mp4;base64,') == 1  # the multi-colour movie

    timelapse = out / "timelapse"
    movie = timelapse / "colour" / "movie.mp4"
    assert movie_frame_count(movie) == 6
    masks = timelapse / "segmentation" / "timelapse_masks.ome.tif"
    from stainfree.io.readers import read_image

    arr, meta = read_image(masks)
    assert meta.axes.startswith("T") and arr.shape[0] == 6  # segmented frame by frame

    staining = pd.read_csv(out / "evaluation" / "evaluation.csv")
    assert set(staining["structure"]) == {"dna", "membrane"}
    assert np.isfinite(staining["pearson_r"]).all()
    assert ((staining["c_max"] > 0.5) & (staining["c_max"] <= 1)).all()  # exact, from the noise-free targets
    assert (staining["c_max_method"] == "clean").all()

    seg = pd.read_csv(out / "segmentation" / "evaluation" / "evaluation_trained.csv")
    assert set(seg["structure"]) == {"lipid_droplet"}  # only what the demo trained is scored
    assert seg[["precision", "recall", "f1"]].apply(lambda c: c.between(0, 1)).all().all()

    counts = pd.read_csv(out / "quantification" / "segmented_vs_truth.csv")
    assert list(counts["structure"]) == ["lipid_droplet"]
    assert counts["count_true"].iloc[0] >= 1


def test_demo_rejects_unknown_config_key(tmp_path):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "n_feilds": 2}))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2
    assert "n_feilds" in result.output
