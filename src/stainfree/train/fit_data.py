"""Training data for :func:`stainfree.train.fit.fit`: images read and prepared from a manifest, the train /
validation split, and renormalization to whole-dataset statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from stainfree.config import TrainingJob
from stainfree.data.dataset import PreparedImages, prepare_pair
from stainfree.errors import InputError


def load_images(
    df: Any, job: TrainingJob, *, progress: bool = False
) -> tuple[PreparedImages, list[str], dict[str, Any]]:
    """Read and preprocess every usable manifest row once.

    Returns
    -------
    images : PreparedImages
        The preprocessed pairs (test rows skipped when the split column is used).
    splits : list of str
        Split of each pair.
    info : dict
        ``signal_names``, ``target_names``, ``signal_channels``, ``target_channels`` (the channel selection to
        store in the bundle).
    """
    from stainfree.data.preprocess import channel_label
    from stainfree.io.manifest import load_czyx, parse_channels

    cfg = job.data
    task = job.train.task
    rows = df.reset_index(drop=True)
    if cfg.use_split_column and "split" in rows.columns:
        rows = rows[rows["split"] != "test"].reset_index(drop=True)
    if len(rows) == 0:
        raise InputError(df.attrs.get("path", "manifest"), "no train/val rows to train on")
    images = PreparedImages()
    splits: list[str] = []
    info: dict[str, Any] = {"signal_channels": cfg.signal_channels, "target_channels": cfg.target_channels}
    with _progress(progress, len(rows), "preprocessing images") as advance:
        for i, row in rows.iterrows():
            s_refs = parse_channels(row["signal_channels"]) if "signal_channels" in row.index else None
            t_refs = parse_channels(row["target_channels"]) if "target_channels" in row.index else None
            sig, smeta = load_czyx(row[cfg.signal_column])
            tgt, tmeta = load_czyx(row[cfg.target_column])
            x, y, xs, ys = prepare_pair(
                sig,
                tgt,
                cfg,
                task=task,
                signal_meta=smeta,
                target_meta=tmeta,
                signal_channels=s_refs,
                target_channels=t_refs,
            )
            images.signals.append(x)
            images.targets.append(y)
            images.signal_stats.append(xs)
            images.target_stats.append(ys)
            images.sources.append(str(row[cfg.signal_column]))
            splits.append(str(row["split"]) if cfg.use_split_column and "split" in row.index else "train")
            if i == 0:
                s_sel = s_refs if s_refs is not None else cfg.signal_channels
                t_sel = t_refs if t_refs is not None else cfg.target_channels
                info["signal_channels"] = cfg.signal_channels if cfg.signal_channels is not None else s_refs
                info["target_channels"] = cfg.target_channels if cfg.target_channels is not None else t_refs
                images.signal_names = channel_label(s_sel, smeta.channel_names, sig.shape[0])
                images.target_names = channel_label(t_sel, tmeta.channel_names, tgt.shape[0])
                if cfg.input_mode == "zstack_to_2d":
                    images.n_z = int(sig.shape[1])
            advance()
    if cfg.input_transform == "ratiometric":
        images.signal_names = ["intensity", "ratio"]
    elif cfg.input_transform == "intensity_only":
        images.signal_names = ["intensity"]
    info["signal_names"] = images.signal_names
    info["target_names"] = images.target_names
    return images, splits, info


def split_train_val(splits: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and validation pairs.

    ``val`` rows validate; without any, ``round(val_fraction * n)`` (at least 1) training pairs are held out
    when there are 2 or more; with a single pair (or ``val_fraction == 0``) validation patches come from the
    training images (another patch stream).
    """
    train = [i for i, s in enumerate(splits) if s == "train"]
    val = [i for i, s in enumerate(splits) if s == "val"]
    if not train:
        raise InputError("manifest", "no training rows (split 'train')")
    if val:
        return train, val
    if len(train) >= 2 and val_fraction > 0:
        n_val = min(max(1, int(round(val_fraction * len(train)))), len(train) - 1)
        order = np.random.default_rng(seed).permutation(len(train))
        held = sorted(train[i] for i in order[:n_val])
        return [i for i in train if i not in held], held
    return train, train


@contextlib.contextmanager
def _progress(enabled: bool, total: int, what: str) -> Iterator[Any]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def renormalize_to_dataset(images: PreparedImages, stats: list[dict]) -> None:
    """Re-express per-image normalized signals with dataset statistics (``normalization_scope="dataset"``)."""
    from stainfree.data.preprocess import apply_normalization, invert_normalization

    for i, (x, own) in enumerate(zip(images.signals, images.signal_stats, strict=True)):
        if not own:
            continue
        reps = x.shape[0] // len(own)  # zstack_to_2d: C*Z planes for C statistics (channel-major)
        out = np.empty_like(x)
        for c in range(x.shape[0]):
            k = c // reps
            out[c] = apply_normalization(invert_normalization(x[c], own[k]), stats[k])
        images.signals[i] = out
        images.signal_stats[i] = [dict(s) for s in stats]
