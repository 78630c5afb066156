"""Training data for :func:`stainfree.train.fit.fit`: images read and prepared from a manifest, the train /
validation split, and renormalization to whole-dataset statistics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.config import TrainingJob
from stainfree.data.dataset import PreparedImages, prepare_pair
from stainfree.errors import InputError

log = logging.getLogger(__name__)


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
            if sig.dtype == bool:
                raise InputError(
                    row[cfg.signal_column], "boolean pixels (a mask?) where an intensity image is expected"
                )
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


def renormalize_to_dataset(images: PreparedImages, stats: list[dict], keep: Sequence[int] = ()) -> None:
    """Re-express per-image normalized signals with dataset statistics (``normalization_scope="dataset"``);
    the channels in ``keep`` stay per image (a ratio divided by each field's own median)."""
    from stainfree.data.preprocess import apply_normalization, invert_normalization

    for i, (x, own) in enumerate(zip(images.signals, images.signal_stats, strict=True)):
        if not own:
            continue
        reps = x.shape[0] // len(own)  # zstack_to_2d: C*Z planes for C statistics (channel-major)
        out = np.empty_like(x)
        for c in range(x.shape[0]):
            k = c // reps
            out[c] = x[c] if k in keep else apply_normalization(invert_normalization(x[c], own[k]), stats[k])
        images.signals[i] = out
        images.signal_stats[i] = [dict(own[k]) if k in keep else dict(s) for k, s in enumerate(stats)]


def validation_mode(job_validation: str, splits: Sequence[str]) -> str:
    """The validation mode in effect: ``rows`` when the manifest has 'val' rows, else the configured mode
    with ``auto`` resolved (whole images from 5 training images on, else a region of each)."""
    if any(s == "val" for s in splits):
        return "rows"
    if job_validation != "auto":
        return job_validation
    return "images" if sum(s == "train" for s in splits) >= 5 else "region"


def carve_regions(
    images: PreparedImages, patch3: Sequence[int], fraction: float
) -> tuple[PreparedImages, PreparedImages, list[dict[str, Any]]]:
    """Split every image into a training part and a held-out validation block (see
    :func:`stainfree.data.patching.holdout_region`).

    Images too small to carve stay whole in training (and are not validated on).

    Returns
    -------
    train, val : PreparedImages
        The training parts and the validation blocks.
    regions : list of dict
        Per carved image: ``image`` (its source), ``axis`` ('y' or 'x'), ``train`` and ``val`` [start, stop)
        on the model grid.
    """
    from stainfree.data.patching import holdout_region

    train, val = PreparedImages(), PreparedImages()
    for p in (train, val):
        p.signal_names, p.target_names, p.n_z = images.signal_names, images.target_names, images.n_z
    regions: list[dict[str, Any]] = []
    for i in range(len(images)):
        x, y = images.signals[i], images.targets[i]
        region = holdout_region(x.shape[1:], patch3, fraction, target=y)
        parts: list[tuple[PreparedImages, slice | tuple[slice, ...]]] = [(train, slice(None))]
        if region is not None:
            ax = region["axis"] + 1  # channel first
            cut = [slice(None)] * x.ndim
            cut[ax] = slice(region["train_start"], region["train_stop"])
            held = [slice(None)] * x.ndim
            held[ax] = slice(region["val_start"], region["val_stop"])
            parts = [(train, tuple(cut)), (val, tuple(held))]
            regions.append(
                {
                    "image": images.sources[i],
                    "axis": "y" if region["axis"] == 1 else "x",
                    "train": [region["train_start"], region["train_stop"]],
                    "val": [region["val_start"], region["val_stop"]],
                }
            )
        for dest, sl in parts:
            dest.signals.append(np.ascontiguousarray(x[sl]))
            dest.targets.append(np.ascontiguousarray(y[sl]))
            dest.signal_stats.append(images.signal_stats[i])
            dest.target_stats.append(images.target_stats[i])
            dest.sources.append(images.sources[i])
    return train, val, regions


def split_for_validation(
    job: TrainingJob, images: PreparedImages, splits: Sequence[str], patch3: Sequence[int]
) -> tuple[PreparedImages, PreparedImages, list[dict], dict[str, Any]]:
    """Training and validation data as ``job.data.validation`` says, the dataset statistics of the training
    images (and the signals re-expressed in them for ``normalization_scope: dataset``), and a record of the
    validation used (``mode``; ``regions`` for carved regions) for the bundle."""
    from stainfree.data.patching import holdout_region
    from stainfree.data.preprocess import mean_stats

    dc, seed = job.data, job.train.seed
    mode = validation_mode(dc.validation, splits)
    train_shapes = [x.shape[1:] for x, s in zip(images.signals, splits, strict=True) if s == "train"]
    if mode == "images" and len(train_shapes) < 2:
        mode = "region"  # a single image: nothing to hold out whole
    if mode == "region" and not any(
        holdout_region(sh, patch3, dc.val_region_fraction) for sh in train_shapes
    ):
        mode = "images" if len(train_shapes) >= 2 else "train"
        log.warning("images too small to carve a validation region: validating on %s", mode)
    # 'images' holds out at least one image; 'region' and 'train' keep every training image
    fraction = {"rows": dc.val_fraction, "images": max(dc.val_fraction, 1e-9)}.get(mode, 0.0)
    train_idx, val_idx = split_train_val(splits, fraction, seed)
    dataset_stats = mean_stats(images.subset(train_idx).signal_stats)
    if dc.normalization_scope == "dataset":
        per_field = dc.input_transform == "ratiometric" and dc.ratio_normalization == "median"
        renormalize_to_dataset(images, dataset_stats, keep=(1,) if per_field else ())
    if mode == "region":
        train, val, regions = carve_regions(images.subset(train_idx), patch3, dc.val_region_fraction)
        return train, val, dataset_stats, {"mode": mode, "regions": regions, "gap": "half a patch"}
    return images.subset(train_idx), images.subset(val_idx), dataset_stats, {"mode": mode}


def validation_patches(
    val: PreparedImages,
    patch: Sequence[int],
    seed: int,
    n: int,
    *,
    grid: bool,
    segmentation: bool,
    sampling: dict[str, Any],
) -> Any:
    """Fixed validation patches: a grid over held-out data (evenly thinned to ``n``) for regression, or the
    foreground-biased random draw for segmentation (so that a sparse structure is present at all); random
    patches of the training images when validating on them."""
    from stainfree.data.dataset import PatchDataset
    from stainfree.data.patching import grid_corners
    from stainfree.data.preprocess import pad_to_min_shape

    if not grid or segmentation:
        return PatchDataset(val.signals, val.targets, patch, seed=seed, length=n, stream=1, **sampling)
    patch3 = tuple(patch) if len(patch) == 3 else (1, *patch)
    locations = []
    for i, x in enumerate(val.signals):
        shape = pad_to_min_shape(x, patch3).shape[1:]
        locations += [(i, c) for c in grid_corners(shape, patch3)]
    if len(locations) > n:
        keep = np.linspace(0, len(locations) - 1, n).round().astype(int)
        locations = [locations[k] for k in keep]
    return PatchDataset(val.signals, val.targets, patch, seed=seed, length=0, locations=locations)


def with_resolved(job: TrainingJob, saved: Path) -> TrainingJob:
    """Resume: settings the job leaves to the recipe are taken from the run's saved ``job.yaml``, so that
    the resumed run has the same patches, network and schedule."""
    from stainfree.config import load_yaml

    if not saved.is_file():
        return job
    try:
        prev = load_yaml(TrainingJob, saved)
    except Exception:
        return job
    data = (
        job.data
        if job.data.patch_shape is not None
        else job.data.model_copy(update={"patch_shape": prev.data.patch_shape})
    )
    model = job.model.model_copy(
        update={
            "depth": job.model.depth if job.model.depth is not None else prev.model.depth,
            "base_channels": job.model.base_channels
            if job.model.base_channels is not None
            else prev.model.base_channels,
        }
    )
    tc = job.train
    train = tc.model_copy(
        update={
            k: getattr(prev.train, k)
            for k in ("batch_size", "max_steps", "val_every_n_steps")
            if getattr(tc, k) is None
        }
    )
    return job.model_copy(update={"data": data, "model": model, "train": train})


def with_network_of(job: TrainingJob) -> TrainingJob:
    """Fine-tuning or pretrained start (``train.init_from``): a network setting the job leaves empty is
    taken from that bundle, so that its weights fit."""
    from stainfree.models.bundle import read_bundle_config

    if job.train.init_from is None or (job.model.depth is not None and job.model.base_channels is not None):
        return job
    prev = read_bundle_config(job.train.init_from).model
    update = {k: getattr(prev, k) for k in ("depth", "base_channels") if getattr(job.model, k) is None}
    if job.model.model_fields_set.isdisjoint({"architecture", "norm", "residual"}):
        update.update({k: getattr(prev, k) for k in ("architecture", "norm", "residual")})
    return job.model_copy(update={"model": job.model.model_copy(update=update)})


#: Thresholds tried by :func:`choose_threshold`: 0.02 to 0.98 in steps of 0.02 (the segmentation benchmark's
#: small classes chose 0.90, the edge of the earlier 0.10-0.90 grid).
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(1, 50))


def choose_threshold(
    model: Any, val: PreparedImages, spatial_dims: int, roi_size: Sequence[int]
) -> tuple[float, list[dict[str, float]]]:
    """Probability threshold of a binary network: the best pooled F1 over :data:`THRESHOLD_GRID` on the
    whole validation images.

    Whole images, not the (foreground-biased) validation patches, which would pull the threshold low.

    Parameters
    ----------
    model : torch.nn.Module
        The exported network (logits out).
    val : PreparedImages
        Validation inputs and 0/1 targets.
    spatial_dims : int
        2 or 3.
    roi_size : sequence of int
        Tile of the sliding window (the training patch).

    Returns
    -------
    threshold : float
        The best threshold (ties: the one closest to 0.5); 0.5 when nothing is annotated.
    table : list of dict
        ``{"threshold", "f1", "precision", "recall"}`` per threshold tried.
    """
    from stainfree.inference.tiling import predict_array

    grid = np.asarray(THRESHOLD_GRID)
    tp = np.zeros(len(grid))
    fp = np.zeros(len(grid))
    n_true = 0
    for x, t in zip(val.signals, val.targets, strict=True):
        logits = predict_array(model, x, spatial_dims=spatial_dims, roi_size=list(roi_size), overlap=0.25)
        prob = 1.0 / (1.0 + np.exp(-np.asarray(logits[0], dtype=np.float32)))
        truth = np.asarray(t[0]).reshape(prob.shape) > 0.5
        n_true += int(truth.sum())
        # counts above each threshold from sorted probabilities: one pass per image
        pos = np.sort(prob[truth])
        neg = np.sort(prob[~truth])
        tp += pos.size - np.searchsorted(pos, grid, side="left")
        fp += neg.size - np.searchsorted(neg, grid, side="left")
    fn = n_true - tp
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = tp / n_true if n_true else np.zeros_like(tp)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    table = [
        {"threshold": float(g), "f1": float(a), "precision": float(p), "recall": float(r)}
        for g, a, p, r in zip(grid, f1, precision, recall, strict=True)
    ]
    if n_true == 0:
        return 0.5, table
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]]), table
