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
