"""Which weights a bundle gets: the best checkpoint, unless it is no better than nothing."""

from __future__ import annotations

from stainfree.train.fit import use_best_checkpoint


def test_best_checkpoint_unless_its_f1_is_zero(tmp_path):
    best = tmp_path / "best.ckpt"
    best.write_bytes(b"x")
    assert use_best_checkpoint("best", "val_f1", best, 0.4)
    assert use_best_checkpoint("best", "val_loss", best, 0.0)  # a loss of 0 is the best there is
    assert not use_best_checkpoint("best", "val_f1", best, 0.0)  # nothing found at any check: take the last
    assert not use_best_checkpoint("last", "val_f1", best, 0.9)
    assert not use_best_checkpoint("best", "val_f1", tmp_path / "missing.ckpt", 0.9)
    assert not use_best_checkpoint("best", "val_f1", "", 0.9)
    assert use_best_checkpoint("best", "val_f1", best, None)  # score unknown (resumed): trust the file


def test_dataset_scope_keeps_a_per_field_median_ratio():
    import numpy as np

    from stainfree.data.dataset import PreparedImages
    from stainfree.data.preprocess import mean_stats
    from stainfree.train.fit_data import renormalize_to_dataset

    x = [np.ones((2, 1, 4, 4), np.float32), 3 * np.ones((2, 1, 4, 4), np.float32)]
    own = [
        [{"method": "zscore", "mean": 1.0, "std": 1.0}, {"method": "percentile", "low": 0.0, "high": 1.2}],
        [{"method": "zscore", "mean": 3.0, "std": 1.0}, {"method": "percentile", "low": 0.0, "high": 1.5}],
    ]
    images = PreparedImages(signals=[a.copy() for a in x], targets=[], signal_stats=own)
    renormalize_to_dataset(images, mean_stats(own), keep=(1,))
    np.testing.assert_array_equal(images.signals[1][1], x[1][1])  # the ratio stays over its own median
    assert images.signal_stats[1][1]["high"] == 1.5 and images.signal_stats[1][0]["mean"] == 2.0
    np.testing.assert_allclose(images.signals[1][0], (3 * 1 + 3 - 2.0) / 1.0)  # intensity: dataset stats
