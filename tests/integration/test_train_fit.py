"""Training end to end on tiny data: loss decreases, bundles restore, resume is exact, segmentation runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob
from stainfree.io.writers import write_ome_tiff
from stainfree.models.bundle import load_bundle
from stainfree.models.registry import build_model, encoder_parameter_names
from stainfree.train.fit import fit, fit_arrays


def _pairs(n=3, shape=(1, 16, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    sig = [rng.normal(size=shape).astype(np.float32) for _ in range(n)]
    return sig, [gaussian_filter(s, (0, 1, 1.5, 1.5)).astype(np.float32) for s in sig]


def _job(out, *, steps=10, dims=3, **train):
    """A tiny job with the plain mechanics these tests check (no weight averaging, constant learning rate,
    no augmentation unless asked, selection on val_loss, validation on the training images, float32: 'auto'
    is bf16-mixed on a CPU that computes bf16 natively); the little-data recipe's defaults are tested in
    test_recipe.py."""
    patch = [8, 16, 16] if dims == 3 else [16, 16]
    kw = {
        "max_steps": steps,
        "batch_size": 4,
        "lr": 3e-3,
        "val_every_n_steps": 5,
        "checkpoint_every_n_steps": 5,
        "val_patches": 4,
        "ema_decay": None,
        "scheduler": "none",
        "gradient_clip": None,
        "monitor": "val_loss",
        "augment": AugmentConfig(enabled=False),
        "precision": "32",
        **train,
    }
    return TrainingJob(
        name="tiny",
        output_dir=out,
        data=DataConfig(
            voxel_size_um=None, patch_shape=patch, input_mode="3d" if dims == 3 else "2d", validation="train"
        ),
        model=ModelConfig(depth=2, base_channels=8),
        train=TrainConfig(**kw),
    )


def test_tiny_fit_from_manifest_lowers_loss_and_bundle_restores(tmp_path):
    sig, tgt = _pairs(3)
    rows = []
    for i, (s, t) in enumerate(zip(sig, tgt, strict=True)):
        write_ome_tiff(tmp_path / "data" / f"s{i}.ome.tif", s[0], "ZYX", voxel_size_um=(0.29, 0.29, 0.29))
        write_ome_tiff(tmp_path / "data" / f"t{i}.ome.tif", t[0], "ZYX", voxel_size_um=(0.29, 0.29, 0.29))
        rows.append((f"data/s{i}.ome.tif", f"data/t{i}.ome.tif", "val" if i == 2 else "train"))
    pd.DataFrame(rows, columns=["signal", "target", "split"]).to_csv(tmp_path / "m.csv", index=False)
    job = _job(tmp_path / "run", steps=10, export="last")
    job.data.manifest = tmp_path / "m.csv"
    job.data.voxel_size_um = (0.29, 0.29, 0.29)
    bundle = fit(job, progress=False)
    assert bundle == tmp_path / "run" / "tiny.stainfree"
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    losses = log["train_loss"].dropna().to_numpy()
    assert len(losses) == 10
    assert losses[-3:].mean() < 0.8 * losses[:3].mean(), losses
    assert log["val_loss"].notna().sum() == 2
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert {"last.ckpt", "best.ckpt", "step0000005.ckpt", "step0000010.ckpt"} <= set(ckpts)
    b = load_bundle(bundle)
    cfg = b.config
    assert (
        cfg.task == "regression"
        and cfg.voxel_size_um == (0.29, 0.29, 0.29)
        and cfg.patch_shape == [8, 16, 16]
    )
    assert (
        cfg.training["steps"] == 10
        and len(cfg.normalization_stats) == 1
        and cfg.normalization_stats[0].std > 0
    )
    assert cfg.training["val_images"][0].endswith("s2.ome.tif")
    # the bundle holds exactly the weights of the last checkpoint
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ref = build_model(cfg.model)
    ref.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    ref.eval()
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(ref(x), b.model(x))


def test_resume_gives_identical_weights(tmp_path):
    sig, tgt = _pairs(2, shape=(1, 8, 24, 24))
    kw = {"steps": 6, "checkpoint_every_n_steps": 3, "val_every_n_steps": 3, "export": "last"}
    kw["augment"] = AugmentConfig(enabled=True, prob=0.5)
    full = load_bundle(fit_arrays(sig, tgt, _job(tmp_path / "full", **kw)))
    kw3 = {**kw, "steps": 3}
    fit_arrays(sig, tgt, _job(tmp_path / "part", **kw3))
    resumed = load_bundle(fit_arrays(sig, tgt, _job(tmp_path / "part", **kw), resume=True))
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert resumed.config.training["resumed_from_step"] == 3 and resumed.config.training["steps"] == 6
    log = pd.read_csv(tmp_path / "part" / "logs" / "metrics.csv")
    assert log["train_loss"].notna().sum() == 6  # losses of both parts are kept


def test_binary_and_multiclass_fits_report_val_f1(tmp_path):
    rng = np.random.default_rng(1)
    sig = [rng.normal(size=(1, 1, 32, 32)).astype(np.float32) for _ in range(2)]
    binary = [(gaussian_filter(s, (0, 0, 2, 2)) > 0).astype(np.uint8) for s in sig]
    smooth = [gaussian_filter(s, (0, 0, 2, 2)) for s in sig]
    labels = [np.digitize(m, [-0.1, 0.1]).astype(np.uint8) for m in smooth]  # 0, 1, 2
    job = _job(
        tmp_path / "bin",
        dims=2,
        steps=6,
        task="binary",
        pos_weight=2.0,
        monitor="val_f1",
        val_every_n_steps=3,
    )
    job.model.architecture = "monai_unet"
    b = load_bundle(fit_arrays(sig, binary, job))
    assert b.config.task == "binary" and b.config.model.out_channels == 1 and b.config.spatial_dims == 2
    assert 0.0 <= b.config.training["best_val_f1"] <= 1.0 and b.config.training["exported"] == "best"
    job = _job(tmp_path / "multi", dims=2, steps=6, task="multiclass", loss="dice_ce", monitor="val_f1")
    job.train.class_weights = [0.5, 1.0, 1.0]
    job.train.val_every_n_steps = 3
    job.model.architecture = "attention_unet"
    job.data.class_names = ["background", "low", "high"]
    m = load_bundle(fit_arrays(sig, labels, job))
    assert m.config.model.out_channels == 3 and m.config.class_names == ["background", "low", "high"]
    assert 0.0 <= m.config.training["best_val_f1"] <= 1.0
    log = pd.read_csv(tmp_path / "multi" / "logs" / "metrics.csv")
    assert log["val_f1"].notna().sum() == 2


def test_fine_tuning_with_frozen_encoder(tmp_path):
    sig, tgt = _pairs(2, shape=(1, 1, 32, 32))
    first = fit_arrays(sig, tgt, _job(tmp_path / "a", dims=2, steps=2, export="last"))
    job = _job(tmp_path / "b", dims=2, steps=3, export="last", init_from=first, freeze_encoder=True)
    tuned = load_bundle(fit_arrays(sig, tgt, job))
    base = load_bundle(first)
    enc = set(encoder_parameter_names(tuned.model))
    before, after = dict(base.model.named_parameters()), dict(tuned.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in enc)
    assert any(not torch.equal(before[n], after[n]) for n in after if n not in enc)


def test_bad_configurations_are_reported(tmp_path):
    from stainfree.errors import ConfigError, InputError

    sig, tgt = _pairs(1, shape=(1, 8, 24, 24))
    job = _job(tmp_path / "x", steps=1)
    job.data.patch_shape = [8, 14, 14]
    with pytest.raises(ConfigError, match="divisible"):
        fit_arrays(sig, tgt, job)
    with pytest.raises(InputError, match="no checkpoint"):
        fit_arrays(sig, tgt, _job(tmp_path / "y", steps=1), resume=True)
    with pytest.raises(ConfigError, match="val_f1"):
        fit_arrays(sig, tgt, _job(tmp_path / "z", steps=1, monitor="val_f1"))


def test_plateau_schedule_stops_below_min_lr(tmp_path):
    sig, tgt = _pairs(1, shape=(1, 1, 32, 32))
    job = _job(tmp_path / "p", dims=2, steps=20, lr=1e-7, scheduler="plateau", val_every_n_steps=2)
    job.train.plateau_patience = 0
    job.train.min_lr = 1e-7
    b = load_bundle(fit_arrays(sig, tgt, job))
    # validation at step 2 sets the reference, step 4 does not improve (lr far too small): lr * 0.3 < min_lr,
    # seen at the end of the next step
    assert b.config.training["steps"] == 5
    log = pd.read_csv(tmp_path / "p" / "logs" / "metrics.csv")
    assert log["lr"].dropna().iloc[-1] == pytest.approx(3e-8, rel=1e-3)  # reduced by plateau_factor 0.3


def test_dataset_normalization_scope_and_resume_after_the_end(tmp_path):
    from stainfree.data.preprocess import prepare_input

    rng = np.random.default_rng(5)
    sig = [(rng.normal(size=(1, 1, 32, 32)) * (i + 1) + 10 * i).astype(np.float32) for i in range(2)]
    tgt = [s.copy() for s in sig]
    job = _job(tmp_path / "d", dims=2, steps=2, export="last")
    job.data.normalization_scope = "dataset"
    job.data.val_fraction = 0.0
    bundle = fit_arrays(sig, tgt, job)
    cfg = load_bundle(bundle).config
    st = cfg.normalization_stats[0]
    assert st.mean == pytest.approx(np.mean([s.mean() for s in sig]), rel=1e-5)
    assert st.std == pytest.approx(np.mean([s.std() for s in sig]), rel=1e-5)
    # prediction uses the stored statistics, not the image's own
    x = prepare_input(sig[1], cfg, None)
    np.testing.assert_allclose(x, (sig[1] - st.mean) / st.std, rtol=1e-5, atol=1e-5)
    # resuming a finished run exports the same weights again
    first = load_bundle(bundle)
    again = load_bundle(fit_arrays(sig, tgt, job, resume=True))
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])


def test_zstack_to_2d_fit_in_bf16(tmp_path):
    sig, tgt = _pairs(2, shape=(1, 4, 32, 32))
    job = _job(tmp_path / "z", dims=2, steps=2, export="last", precision="bf16-mixed")
    job.data.input_mode = "zstack_to_2d"
    b = load_bundle(fit_arrays(sig, tgt, job))
    assert b.config.model.in_channels == 4 and b.config.n_z == 4 and b.config.spatial_dims == 2
    with torch.no_grad():
        assert b.model(torch.randn(1, 4, 16, 16)).shape == (1, 1, 16, 16)


def test_real_phase_to_dapi_pair_trains(shared_data, tmp_path):
    d = shared_data / "phase_dapi_2d"
    pd.DataFrame({"signal": [str(d / "phase.tif")], "target": [str(d / "dapi.tif")]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    job = _job(tmp_path / "r", dims=2, steps=3, export="last")
    job.data.manifest = tmp_path / "m.csv"
    job.data.patch_shape = [64, 64]
    b = load_bundle(fit(job, progress=False))
    t = b.config.training
    assert t["steps"] == 3 and np.isfinite(t["final_train_loss"]) and t["val_images"] == t["train_images"]


def test_only_the_newest_periodic_checkpoints_are_kept(tmp_path):
    sig, tgt = _pairs(1, shape=(1, 1, 32, 32))
    job = _job(tmp_path / "k", steps=8, dims=2, checkpoint_every_n_steps=2, keep_checkpoints=2, export="last")
    fit_arrays(sig, tgt, job)
    ckpts = {p.name for p in (tmp_path / "k" / "checkpoints").iterdir()}
    steps = sorted(n for n in ckpts if n.startswith("step"))
    assert steps == ["step0000006.ckpt", "step0000008.ckpt"] and "last.ckpt" in ckpts
