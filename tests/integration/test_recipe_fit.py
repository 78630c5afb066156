"""The little-data recipe end to end on tiny data: spatial hold-out, selection on validation r, weight
averaging with an exact resume, a time budget, and weights carried over from another bundle."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter

from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
from stainfree.data.patching import holdout_region
from stainfree.models.bundle import load_bundle
from stainfree.train.fit import fit_arrays


def _pair(shape=(1, 1, 48, 128), seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=shape).astype(np.float32)
    return [s], [gaussian_filter(s, (0, 0, 1.5, 1.5)).astype(np.float32)]


def _job(out, **train):
    kw = {"max_steps": 6, "batch_size": 2, "checkpoint_every_n_steps": 3, "val_every_n_steps": 3, **train}
    return TrainingJob(
        name="recipe",
        output_dir=out,
        data=DataConfig(voxel_size_um=None, input_mode="2d", patch_shape=[16, 16]),
        model=ModelConfig(depth=2, base_channels=4),
        train=TrainConfig(**kw),
    )


def test_default_recipe_holds_out_a_region_selects_on_val_r_and_resumes_exactly(tmp_path):
    sig, tgt = _pair()
    job = _job(tmp_path / "full", export="last")  # the last weights, to compare with the resumed run
    assert job.train.augment.enabled and job.train.ema_decay and job.train.scheduler == "cosine"
    full = load_bundle(fit_arrays(sig, tgt, job))
    t = full.config.training
    v = t["validation"]
    assert v["mode"] == "region" and t["monitor"] == "val_r" and t["recipe"] == "auto"
    (region,) = v["regions"]
    # a block at an end of y or x, the one whose target is most like the whole image's, a gap of 8 (half a
    # patch) from the training part; recorded on the model grid
    want = holdout_region((1, 48, 128), (1, 16, 16), 0.2, target=tgt[0][0])
    assert region["axis"] == "yx"[want["axis"] - 1]
    assert region["train"] == [want["train_start"], want["train_stop"]]
    assert region["val"] == [want["val_start"], want["val_stop"]]
    assert abs(region["val"][0] - region["train"][1]) == 8 or abs(region["train"][0] - region["val"][1]) == 8
    log = pd.read_csv(tmp_path / "full" / "logs" / "metrics.csv")
    assert log["val_r"].notna().sum() == 2 and -1 <= t["best_val_r"] <= 1
    lr = log["lr"].dropna().to_numpy()
    assert lr.max() <= 1e-3 * (1 + 1e-6) and lr[-1] < lr.max()  # cosine decay
    # killed after the checkpoint of step 3 and resumed: the same averaged weights as the uninterrupted run
    # (schedule, weight average, augmentation and patches all continue where they were)
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    ckpts = tmp_path / "part" / "checkpoints"
    shutil.copy(ckpts / "step0000003.ckpt", ckpts / "last.ckpt")
    (ckpts / "step0000006.ckpt").unlink()
    shutil.rmtree(tmp_path / "part" / "recipe.stainfree")
    resumed = load_bundle(fit_arrays(sig, tgt, _job(tmp_path / "part", export="last"), resume=True))
    assert resumed.config.training["resumed_from_step"] == 3
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_exported_weights_are_the_moving_average(tmp_path):
    sig, tgt = _pair()
    b = load_bundle(fit_arrays(sig, tgt, _job(tmp_path / "r", export="last")))
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ema = {k[len("ema.module.") :]: v for k, v in state.items() if k.startswith("ema.module.")}
    raw = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    got = b.model.state_dict()
    assert all(torch.equal(got[k], ema[k]) for k in got)
    assert any(not torch.equal(got[k], raw[k]) for k in got if got[k].is_floating_point())


def test_time_budget_sizes_the_run(tmp_path):
    sig, tgt = _pair()
    job = _job(tmp_path / "t", max_steps=None, val_every_n_steps=None, max_time=4)
    b = load_bundle(fit_arrays(sig, tgt, job))
    t = b.config.training
    assert t["max_time_s"] == 4 and t["max_steps"] > 3 and t["steps"] <= t["max_steps"]
    assert t["seconds"] < 4 + 2  # Lightning's own start-up is the slack
    saved = (tmp_path / "t" / "job.yaml").read_text()
    assert f"max_steps: {t['max_steps']}" in saved  # what --resume continues with


def test_weights_carry_over_where_names_and_shapes_fit(tmp_path):
    sig, tgt = _pair()
    two = [np.concatenate([t, -t]) for t in tgt]  # a 2-channel head
    first = fit_arrays(sig, two, _job(tmp_path / "a", max_steps=2))
    job = _job(tmp_path / "b", max_steps=1, lr=1e-12, init_from=first, ema_decay=None)
    tuned = load_bundle(fit_arrays(sig, tgt, job))
    before = load_bundle(first).model.state_dict()
    after = tuned.model.state_dict()
    head = [k for k in after if k.startswith("head.")]
    assert head and all(before[k].shape != after[k].shape for k in head if k.endswith("weight"))
    enc = [k for k in after if k.startswith("encoders.0.0.")]
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in enc)
    info = tuned.config.training["init_from"]
    assert info["loaded"] == len(after) - len(head)


def test_pretrain_on_label_free_images_then_start_training_from_it(tmp_path):
    from stainfree import api
    from stainfree.io.writers import write_ome_tiff

    rng = np.random.default_rng(3)
    for i in range(2):
        img = gaussian_filter(rng.normal(size=(48, 64)), 2).astype(np.float32)
        write_ome_tiff(tmp_path / "bf" / f"f{i}.ome.tif", img, "YX")
    template = _job(tmp_path / "unused")
    pre = api.pretrain(tmp_path / "bf", tmp_path / "pre", job=template, max_steps=4, progress=False)
    p = load_bundle(pre)
    assert p.config.training["steps"] == 4 and p.config.model.out_channels == 1
    job = tmp_path / "pre" / "job.yaml"
    assert "mask_fraction: 0.5" in job.read_text() and "task: regression" in job.read_text()
    # the real training starts from it: depth and width follow the pretrained network
    sig, tgt = _pair()
    start = _job(tmp_path / "real", max_steps=1, lr=1e-12, ema_decay=None, init_from=pre)
    start = start.model_copy(update={"model": ModelConfig()})  # network left to the recipe
    tuned = load_bundle(fit_arrays(sig, tgt, start))
    assert (tuned.config.model.depth, tuned.config.model.base_channels) == (2, 4)
    assert tuned.config.training["init_from"]["loaded"] == len(tuned.model.state_dict())


def test_loader_workers_cut_the_same_batches_as_the_main_process(tmp_path):
    from stainfree.train.fit import loader_workers

    assert loader_workers("auto", gpu=False) == 0  # the CPU's cores compute the network
    assert 0 <= loader_workers("auto", gpu=True) <= 4 and loader_workers(2, gpu=False) == 2
    sig, tgt = _pair()
    runs = [
        load_bundle(fit_arrays(sig, tgt, _job(tmp_path / str(n), export="last", num_workers=n))).model
        for n in (0, 1)
    ]
    a, b = (m.state_dict() for m in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)  # patches and augmentation drawn from per-sample seeds
