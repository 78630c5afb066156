"""stainfree fine-tune: any regression bundle continues on the user's pairs; the new bundle says where it came
from; --freeze-encoder keeps the encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob
from stainfree.io.writers import write_ome_tiff
from stainfree.models.bundle import load_bundle
from stainfree.models.registry import encoder_parameter_names
from stainfree.train.fit import fit_arrays


def _pair(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, 1, 48, 48)).astype(np.float32)
    return x, gaussian_filter(x, (0, 0, 1.5, 1.5)).astype(np.float32)


def _start_bundle(tmp_path: Path) -> Path:
    x, y = _pair(0)
    job = TrainingJob(
        name="start",
        output_dir=tmp_path / "start",
        data=DataConfig(input_mode="2d", voxel_size_um=None, patch_shape=[16, 16], validation="train"),
        model=ModelConfig(depth=2, base_channels=4),
        train=TrainConfig(
            max_steps=2, batch_size=2, val_every_n_steps=2, augment=AugmentConfig(enabled=False)
        ),
    )
    return fit_arrays([x], [y], job)


def _manifest(tmp_path: Path) -> Path:
    rows = []
    for i in (1, 2):
        x, y = _pair(i)
        write_ome_tiff(tmp_path / "data" / f"s{i}.ome.tif", x[0, 0], "YX")
        write_ome_tiff(tmp_path / "data" / f"t{i}.ome.tif", y[0, 0], "YX")
        rows.append((f"data/s{i}.ome.tif", f"data/t{i}.ome.tif"))
    pd.DataFrame(rows, columns=["signal", "target"]).to_csv(tmp_path / "pairs.csv", index=False)
    return tmp_path / "pairs.csv"


def test_fine_tune_cli_continues_a_regression_bundle_and_records_its_origin(tmp_path):
    from stainfree.cli import app

    start = _start_bundle(tmp_path)
    manifest = _manifest(tmp_path)
    runner = CliRunner()
    args = ["fine-tune", str(start), str(manifest), "--out", str(tmp_path / "ft"), "--steps", "3", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    tuned_path = Path(res.output.strip().splitlines()[-1])
    assert tuned_path == tmp_path / "ft" / "start_ft.stainfree"
    tuned, original = load_bundle(tuned_path), load_bundle(start)
    t = tuned.config.training
    assert t["steps"] == 3 and t["init_from"]["bundle"] == str(start)
    assert t["init_from"]["loaded"] == t["init_from"]["of"]  # every weight came from the start bundle
    assert tuned.config.patch_shape == original.config.patch_shape and tuned.config.task == "regression"
    a, b = original.model.state_dict(), tuned.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())

    res = runner.invoke(app, [*args[:-3], "--steps", "3", "--freeze-encoder", "--name", "frozen", "-q"])
    assert res.exit_code == 0, res.output
    frozen = load_bundle(tmp_path / "ft" / "frozen.stainfree").model.state_dict()
    enc = [n for n in encoder_parameter_names(original.model)]
    assert enc and all(torch.equal(a[n], frozen[n]) for n in enc)
    dec = [n for n in a if n not in enc and a[n].is_floating_point() and "running" not in n]
    assert any(not torch.equal(a[n], frozen[n]) for n in dec)


def test_fine_tune_rejects_an_unknown_setting(tmp_path):
    from stainfree import api
    from stainfree.errors import ConfigError

    start = _start_bundle(tmp_path)
    try:
        api.fine_tune(start, _manifest(tmp_path), tmp_path / "ft", bogus=1)
    except ConfigError as exc:
        assert "bogus" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("an unknown setting must be refused")
