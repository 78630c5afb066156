"""The prediction path of registration: a tiny EM -> MBP bundle trained a few steps, then ``api.register``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from stainfree import api
from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob
from stainfree.train.fit import fit_arrays


def test_register_through_a_prediction_writes_every_output(tmp_path):
    case = api.simulate_clem(tmp_path / "case", n_tiles=1, size_um=25.6, seed=1, training_fields=1)
    manifest = pd.read_csv(case["train"])
    assert list(manifest.columns) == ["signal", "target"]
    from stainfree.config import load_yaml

    written_job = load_yaml(TrainingJob, case["job"])
    assert written_job.data.manifest == case["train"].resolve() and written_job.data.input_mode == "2d"
    from stainfree.io.readers import read_image

    em, _ = read_image(case["train"].parent / manifest["signal"][0])
    fl, _ = read_image(case["train"].parent / manifest["target"][0])
    job = TrainingJob(
        name="em2mbp",
        output_dir=tmp_path / "run",
        data=DataConfig(input_mode="2d", patch_shape=[32, 32], validation="train"),
        model=ModelConfig(depth=2, base_channels=4),
        train=TrainConfig(
            max_steps=3,
            batch_size=2,
            val_every_n_steps=3,
            val_patches=2,
            augment=AugmentConfig(enabled=False),
        ),
    )
    bundle = fit_arrays([em[None, None]], [fl[None, None]], job)
    tiles = sorted(case["tiles"].glob("*.ome.tif"))
    written = api.register(
        tiles,
        case["target"],
        tmp_path / "out",
        bundle=bundle,
        truth=case["truth"],
        content_fraction=-1.0,  # filter off: a 3-step model's prediction may look empty
        progress=False,
    )
    table = pd.read_csv(written["table"])
    assert list(table["tile"]) == [t.name for t in tiles]
    assert {"converged", "content_fraction", "skipped"} <= set(table.columns)
    assert not table["skipped"].any()
    for _, row in table.iterrows():
        stem = row["tile"].split(".")[0]
        record = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert record["predicted"] is True and record["factor"] == 0.5
        assert np.asarray(record["tile_to_target"]).shape == (3, 3)
        assert (tmp_path / "out" / f"{stem}.ome.tif").is_file()
        assert (tmp_path / "out" / f"{stem}_overlay.png").is_file()
        assert np.isfinite(row["error_px"])
