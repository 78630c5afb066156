"""A tiny binary catalog net through the shared fit learns an easy, ratio-separable case."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _ratio_field(seed, shape=(64, 64), n=14):
    """Blobs of equal brightness; half are 'red' (R/Y = 3, the target), half 'yellow' (R/Y = 1/3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    y = np.full(shape, 2.0)
    r = np.full(shape, 2.0)
    target = np.zeros(shape, np.uint8)
    for i in range(n):
        cy, cx = rng.integers(5, shape[0] - 5), rng.integers(5, shape[1] - 5)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        red = i % 2 == 0
        y[disk] = 25.0 if red else 75.0
        r[disk] = 75.0 if red else 25.0
        if red:
            target[disk] = 1
        else:
            target[disk] = 0
    y = ndimage.gaussian_filter(y, 0.7) + rng.normal(0, 1, shape)
    r = ndimage.gaussian_filter(r, 0.7) + rng.normal(0, 1, shape)
    return np.stack([y, r])[:, None].astype(np.float32), target[None, None]


def test_tiny_binary_fit_beats_chance_on_ratio_separable_case(tmp_path):
    from stainfree import api
    from stainfree.catalog import load_catalog
    from stainfree.evaluate.metrics import f1
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays
    from stainfree.types import ImageMeta

    net = load_catalog().network_of("early_endosome")
    job = api.catalog_training_job(
        net,
        tmp_path / "unused.csv",
        tmp_path / "run",
        spatial_dims=2,
        patch_shape=[32, 32],
        depth=2,
        base_channels=8,
        max_steps=60,
        batch_size=4,
        lr=3e-3,
        val_every_n_steps=30,
        val_patches=4,
        augment=False,
    )
    assert job.train.scheduler == "plateau" and job.train.monitor == "val_f1" and job.model.in_channels == 2
    pairs = [_ratio_field(s) for s in range(4)]
    meta = ImageMeta(axes="CZYX", shape=pairs[0][0].shape, dtype="float32", channel_names=("yellow", "red"))
    bundle = fit_arrays(
        [p[0] for p in pairs[:3]],
        [p[1] for p in pairs[:3]],
        job,
        signal_metas=[meta] * 3,
        splits=["train", "train", "val"],
    )
    b = load_bundle(bundle)
    assert b.config.class_names == ["early_endosome"] and b.config.input_transform == "ratiometric"
    assert b.config.channel_alignment == "auto"  # red onto yellow before the ratio, as trained
    assert b.config.ratio_normalization == "fixed"  # the catalog default: the absolute ratio
    # the threshold chosen on the validation image: the best pooled F1 of the recorded table
    table = b.config.training["threshold_f1"]
    assert len(table) == 49 and table[0]["threshold"] == 0.02 and table[-1]["threshold"] == 0.98
    assert b.config.threshold == max(table, key=lambda r: (r["f1"], -abs(r["threshold"] - 0.5)))["threshold"]
    x, truth = pairs[3]
    prob, _ = predict_with_bundle(b, x, meta)
    pred = np.asarray(prob)[0] >= b.config.threshold
    chance = 2 * truth.mean() / (1 + truth.mean())  # F1 of predicting everything as foreground
    score = f1(truth[0], pred)
    assert score > max(0.45, chance + 0.3), score
