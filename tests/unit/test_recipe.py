"""The training recipe: settings chosen from image sizes and budget, steps sized to a budget, hold-out
regions, durations, warm-up + cosine and the weight average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
from stainfree.config.learning import parse_duration
from stainfree.data.patching import grid_corners, holdout_region
from stainfree.train.module import ema_average, pearson_from_sums, pearson_sums, warmup_cosine
from stainfree.train.recipe import (
    auto_settings,
    ema_decay_for,
    fill_settings,
    steps_for_budget,
    validation_interval,
)


def test_durations():
    assert parse_duration("15m") == 900 and parse_duration("1h30m") == 5400 and parse_duration(90) == 90
    assert parse_duration("2h") == 7200 and parse_duration("45s") == 45 and parse_duration(None) is None
    for bad in ("soon", "0", "-5", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert TrainConfig(max_time="15m").max_seconds() == 900
    with pytest.raises(ValueError):
        TrainConfig(max_time="a while")


def test_auto_settings_follow_sizes_budget_and_device():
    small = auto_settings([(1, 256, 512)], spatial_dims=2, budget_s=300, gpu=False)
    assert small == {"patch": [128, 128], "batch": 8, "depth": 4, "base": 16}
    big = auto_settings([(1, 1024, 1024)], spatial_dims=2, budget_s=300, gpu=True)
    assert big["patch"] == [256, 256] and big["base"] == 32 and big["batch"] == 16
    tiny = auto_settings([(1, 100, 90)], spatial_dims=2, budget_s=None, gpu=False)
    assert tiny["patch"] == [48, 48] and tiny["depth"] == 3  # 60 % of the smaller image, a multiple of 16
    three = auto_settings([(16, 128, 128), (16, 128, 200)], spatial_dims=3, budget_s=600, gpu=False)
    assert three == {"patch": [16, 64, 64], "batch": 4, "depth": 3, "base": 16}
    thin = auto_settings([(4, 128, 128)], spatial_dims=3, budget_s=600, gpu=False)
    assert thin["depth"] == 2 and thin["patch"][0] == 4 and all(p % 4 == 0 for p in thin["patch"])


def test_fill_settings_keeps_what_the_job_gives():
    job = TrainingJob(
        data=DataConfig(input_mode="2d", patch_shape=[64, 64]),
        model=ModelConfig(base_channels=8),
        train=TrainConfig(max_time="5m"),
    )
    filled = fill_settings(job, [(1, 256, 256)], gpu=False)
    assert filled.data.patch_shape == [64, 64] and filled.model.base_channels == 8
    assert filled.model.depth == 4 and filled.train.batch_size == 8
    fixed = fill_settings(TrainingJob(recipe="fixed"), [(32, 256, 256)], gpu=False)
    assert (
        fixed.data.patch_shape == [32, 64, 64] and fixed.model.depth == 4 and fixed.model.base_channels == 32
    )
    assert fixed.train.batch_size == 8
    assert job.model.depth is None  # the job itself is not changed


def test_steps_for_budget_leaves_room_for_validation_and_elapsed_time():
    assert steps_for_budget(100, 0.1, val_batches=0) == 900
    assert steps_for_budget(100, 0.1, val_batches=3) == 880  # 20 validations x 3 batches x 0.1 s / 3
    assert steps_for_budget(100, 0.1, val_batches=0, elapsed_s=50) == 450
    assert steps_for_budget(10, 5.0, val_batches=1) == 1
    assert (
        validation_interval(1000) == 50 and validation_interval(10) == 1 and validation_interval(10**6) == 500
    )


def test_holdout_region_is_disjoint_with_a_gap_and_grid_covers_it():
    r = holdout_region((1, 256, 512), (1, 128, 128), 0.2)
    assert r == {"axis": 2, "train_start": 0, "train_stop": 320, "val_start": 384, "val_stop": 512}
    assert r["val_start"] - r["train_stop"] == 64  # half a patch that no training patch touches
    r = holdout_region((16, 300, 100), (16, 32, 32), 0.2)
    assert r["axis"] == 1 and r["val_stop"] == 300 and r["val_start"] - r["train_stop"] == 16
    assert holdout_region((16, 128, 128), (16, 64, 64), 0.2) is None  # too small for both
    # a sparse stain: the default end block (x >= 384) is empty background, so validation there would
    # score every network alike; the block most like the whole image is held out instead
    t = np.zeros((1, 1, 256, 512), np.float32)
    t[0, 0, 200:240, 40:80] = 1.0
    t[0, 0, 20:60, 300:340] = 1.0
    r = holdout_region((1, 256, 512), (1, 128, 128), 0.2, target=t)
    assert r == {"axis": 2, "train_start": 192, "train_stop": 512, "val_start": 0, "val_stop": 128}
    assert r["train_start"] - r["val_stop"] == 64  # the gap, now before the training part
    assert holdout_region((1, 256, 512), (1, 128, 128), 0.2, target=np.ones((1, 256, 512))) == holdout_region(
        (1, 256, 512), (1, 128, 128), 0.2
    )  # nothing to choose between: the default end
    corners = grid_corners((1, 100, 70), (1, 32, 32))
    covered = np.zeros((100, 70), bool)
    for _, y, x in corners:
        covered[y : y + 32, x : x + 32] = True
    assert covered.all() and len(corners) == 4 * 3


def test_warmup_cosine_and_pooled_pearson():
    f = [warmup_cosine(s, warmup_steps=10, total_steps=110) for s in range(120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.505, abs=1e-3) and f[110] == pytest.approx(0.01) and f[119] == f[110]
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(6, 2, 8, 8)).astype(np.float32))
    y = x + 0.5 * torch.from_numpy(rng.normal(size=x.shape).astype(np.float32))
    sums = pearson_sums(x[:3], y[:3]) + pearson_sums(x[3:], y[3:])
    want = np.mean([np.corrcoef(x[:, c].ravel(), y[:, c].ravel())[0, 1] for c in range(2)])
    assert pearson_from_sums(sums) == pytest.approx(want, abs=1e-6)


def test_ema_ramps_up_then_averages():
    avg = ema_average(0.99)
    a, c = [torch.zeros(1), torch.zeros(2)], [torch.ones(1), torch.ones(2)]
    avg(a, c, torch.tensor(0))
    assert a[0].item() == pytest.approx(0.9) and a[1].tolist() == pytest.approx([0.9, 0.9])  # decay 1/10
    a = [torch.zeros(1)]
    avg(a, [torch.ones(1)], torch.tensor(10_000))
    assert a[0].item() == pytest.approx(0.01)  # then the configured 0.99
    counter = [torch.tensor(5)]
    avg(counter, [torch.tensor(6)], 3)  # integer buffers follow the network
    assert counter[0].item() == 6 and counter[0].dtype == torch.int64


def test_ema_decay_spans_the_last_tenth_of_short_runs():
    assert ema_decay_for(0.999, 100) == pytest.approx(0.9)
    assert ema_decay_for(0.999, 100_000) == pytest.approx(0.999)
    assert ema_decay_for(0.999, 5) == 0.5


def test_validation_falls_back_from_regions_to_whole_images_to_training_images():
    from stainfree.data.dataset import PreparedImages
    from stainfree.train.fit_data import split_for_validation

    def images(n, shape):
        p = PreparedImages()
        for i in range(n):
            p.signals.append(np.zeros((1, *shape), np.float32))
            p.targets.append(np.zeros((1, *shape), np.float32))
            p.signal_stats.append([{"method": "zscore", "mean": 0.0, "std": 1.0}])
            p.target_stats.append([])
            p.sources.append(f"im{i}")
        return p

    job = TrainingJob()
    patch = (1, 64, 64)
    _, val, _, rec = split_for_validation(job, images(2, (1, 256, 256)), ["train"] * 2, patch)
    assert rec["mode"] == "region" and len(rec["regions"]) == 2 and val.signals[0].shape[-1] == 64
    train, val, _, rec = split_for_validation(job, images(3, (1, 96, 96)), ["train"] * 3, patch)
    assert rec["mode"] == "images" and len(train) == 2 and len(val) == 1  # too small to carve
    train, val, _, rec = split_for_validation(job, images(1, (1, 96, 96)), ["train"], patch)
    assert rec["mode"] == "train" and val.sources == train.sources
    _, val, _, rec = split_for_validation(job, images(6, (1, 256, 256)), ["train"] * 6, patch)
    assert rec["mode"] == "images" and len(val) == 1


def test_auto_precision_is_bf16_mixed_where_the_device_computes_bf16():
    job = TrainingJob()
    assert fill_settings(job, [(32, 256, 256)], gpu=False, bf16=True).train.precision == "bf16-mixed"
    assert fill_settings(job, [(32, 256, 256)], gpu=False, bf16=False).train.precision == "32"
    assert fill_settings(job, [(32, 256, 256)], gpu=True, bf16=True).train.precision == "bf16-mixed"
