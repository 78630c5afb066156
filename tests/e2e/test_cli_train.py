"""`stainfree manifest` and `stainfree train` through the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.config import TrainingJob, load_yaml
from stainfree.io.writers import write_ome_tiff

runner = CliRunner()


def _data(root, n=3):
    rng = np.random.default_rng(0)
    for i in range(n):
        s = rng.normal(size=(2, 24, 24)).astype(np.float32)
        write_ome_tiff(root / "signal" / f"img{i}.ome.tif", s, "ZYX", voxel_size_um=(0.29, 0.29, 0.29))
        write_ome_tiff(
            root / "target" / f"img{i}.ome.tif", s * 2 + 1, "ZYX", voxel_size_um=(0.29, 0.29, 0.29)
        )


def test_manifest_write_default_train_and_resume(tmp_path):
    _data(tmp_path)
    res = runner.invoke(
        app,
        [
            "manifest",
            str(tmp_path / "signal"),
            str(tmp_path / "target"),
            "--out",
            str(tmp_path / "m.csv"),
            "--test-fraction",
            "0.34",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "m.csv")
    assert len(df) == 3 and (df.split == "test").sum() == 1 and df.signal[0].startswith("signal/")

    res = runner.invoke(app, ["train", "--write-default", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    job = load_yaml(TrainingJob, tmp_path / "job.yaml")
    # the little-data recipe: network and patches left to `recipe: auto`, a 15-minute budget
    assert (
        job.recipe == "auto"
        and job.model.depth is None
        and job.model.base_channels is None
        and job.train.max_time == "15m"
        and job.train.augment.enabled
        and job.data.voxel_size_um == (0.29, 0.29, 0.29)
    )

    data = yaml.safe_load((tmp_path / "job.yaml").read_text())
    data["data"].update(manifest="m.csv", input_mode="2d", patch_shape=[16, 16])
    data["model"].update(depth=2, base_channels=4)
    data["train"].update(batch_size=2, val_every_n_steps=2, checkpoint_every_n_steps=2, val_patches=2)
    data["output_dir"] = str(tmp_path / "run")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["train", str(tmp_path / "job.yaml"), "--max-steps", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    bundle = tmp_path / "run" / "model.stainfree"
    assert (
        str(bundle) in res.output.splitlines()
        and (bundle / "weights.pt").is_file()
        and (bundle / "weights.pt").is_file()
    )
    res = runner.invoke(app, ["train", str(tmp_path / "job.yaml"), "--max-steps", "4", "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = yaml.safe_load((bundle / "bundle.yaml").read_text())["training"]
    assert summary["steps"] == 4 and summary["resumed_from_step"] == 2


def test_bad_manifest_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "m.csv").write_text("signal,target\nnope.tif,nada.tif\n")
    job = TrainingJob(output_dir=tmp_path / "run")
    job.data.manifest = tmp_path / "m.csv"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json")))
    res = runner.invoke(app, ["train", str(tmp_path / "job.yaml")])
    assert res.exit_code == 2
    assert "error:" in res.output and "nope.tif" in res.output and "nada.tif" in res.output
    res = runner.invoke(app, ["train"])
    assert res.exit_code == 2 and "--write-default" in res.output
    res = runner.invoke(app, ["manifest", str(tmp_path / "none"), str(tmp_path / "none2")])
    assert res.exit_code == 2 and "no image files" in res.output


def test_pretrain_cli_and_bad_time_budget(tmp_path):
    _data(tmp_path, n=2)
    job = TrainingJob.model_validate(
        {
            "data": {"input_mode": "2d", "patch_shape": [16, 16]},
            "model": {"depth": 2, "base_channels": 4},
            "train": {"batch_size": 2},
        }
    )
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json")))
    res = runner.invoke(
        app,
        [
            "pretrain",
            str(tmp_path / "signal"),
            "--job",
            str(tmp_path / "job.yaml"),
            "--out",
            str(tmp_path / "pre"),
            "--max-steps",
            "2",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    bundle = tmp_path / "pre" / "pretrained.stainfree"
    assert str(bundle) in res.output.splitlines() and (bundle / "weights.pt").is_file()
    summary = yaml.safe_load((bundle / "bundle.yaml").read_text())["training"]
    assert summary["steps"] == 2 and len(summary["train_images"]) + len(summary["val_images"]) >= 2
    res = runner.invoke(app, ["train", str(tmp_path / "job.yaml"), "--max-time", "a while"])
    assert res.exit_code == 2 and "not a duration" in res.output and "Traceback" not in res.output
