"""stainfree simulate --phases, then quantify --group-by phase, from the command line."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from stainfree.cli import app


def test_simulate_phases_then_group_by_phase(tmp_path):
    runner = CliRunner()
    sim = tmp_path / "sim"
    res = runner.invoke(
        app,
        [
            "simulate",
            str(sim),
            "--n-fields",
            "1",
            "--shape",
            "16",
            "96",
            "96",
            "--phases",
            "anaphase,telophase",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((sim / "field_000" / "field.json").read_text())
    phases = {c["phase"] for c in meta["cells"]}
    assert phases <= {"anaphase", "telophase"} and meta["mitosis"]["phases"] == ["anaphase", "telophase"]
    res = runner.invoke(
        app, ["quantify", str(sim), "--out", str(tmp_path / "q"), "--group-by", "phase", "--no-figures"]
    )
    assert res.exit_code == 0, res.output
    groups = pd.read_csv(tmp_path / "q" / "groups.csv")
    assert set(groups["phase"]) == phases
    bad = runner.invoke(app, ["simulate", str(tmp_path / "bad"), "--phases", "prometaphase"])
    assert bad.exit_code == 2 and "phases" in bad.output
