"""fit(job) -> bundle: seeds, data, model, Lightning Trainer, checkpoints, resume, export.

Patches are a pure function of (seed, global sample index) and the training data loader of a resumed run
starts at index ``global_step * batch_size``, so resuming from ``<output_dir>/checkpoints/last.ckpt`` gives
the same final weights as an uninterrupted run on the same hardware.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.config import BundleConfig, ChannelStats, ModelConfig, TrainingJob, save_yaml
from stainfree.data.dataset import PreparedImages, prepare_pair
from stainfree.errors import ConfigError, InputError
from stainfree.train.fit_data import (
    choose_threshold,
    load_images,
    split_for_validation,
    validation_patches,
    with_network_of,
    with_resolved,
)

log = logging.getLogger(__name__)


# ----- the run ----------------------------------------------------------------------------------------------


def use_best_checkpoint(export: str, monitor: str, best_path: Any, best_score: Any) -> bool:
    """Whether the bundle gets the best checkpoint's weights rather than the last step's.

    Only for ``export == "best"`` with an existing best checkpoint; and not when the monitor is
    ``val_f1`` and its best value is 0: no check found anything, so the first checkpoint with F1 0 is
    no better than the last weights (which have trained longest).
    """
    if export != "best" or not best_path or not Path(best_path).is_file():
        return False
    return not (monitor == "val_f1" and best_score is not None and float(best_score) <= 0.0)


def fit(job: TrainingJob, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the network a :class:`~stainfree.config.TrainingJob` describes and write its bundle.

    Parameters
    ----------
    job : TrainingJob
        Data (manifest), model, training and output folder.
    resume : bool
        Continue from ``<output_dir>/checkpoints/last.ckpt``.
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        The bundle folder ``<output_dir>/<name>.stainfree``.

    Raises
    ------
    ConfigError, InputError, InputErrors
        Bad configuration, or every problem of the manifest at once.
    """
    from stainfree.io.manifest import read_manifest, validate_manifest

    if job.data.manifest is None:
        raise ConfigError("data.manifest: a manifest CSV is needed (see `stainfree manifest`)")
    df = read_manifest(job.data.manifest)
    validate_manifest(df, job.data)
    images, splits, info = load_images(df, job, progress=progress)
    return _fit_prepared(job, images, splits, info, resume=resume, progress=progress)


def fit_arrays(
    signals: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    job: TrainingJob,
    *,
    signal_metas: Sequence[Any] | None = None,
    target_metas: Sequence[Any] | None = None,
    splits: Sequence[str] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Path:
    """:func:`fit` on in-memory (C, Z, Y, X) arrays instead of a manifest (same preprocessing and training).

    Parameters
    ----------
    signals, targets : sequence of ndarray
        Pairs of (C, Z, Y, X) arrays.
    job : TrainingJob
        As for :func:`fit` (``data.manifest`` is ignored).
    signal_metas, target_metas : sequence of ImageMeta, optional
        Channel names and voxel sizes (without them: no resampling, channels by index).
    splits : sequence of str, optional
        ``train`` / ``val`` per pair (default all ``train``).
    """
    from stainfree.data.preprocess import channel_label

    if len(signals) != len(targets) or not signals:
        raise InputError(
            "arrays", f"need as many signals as targets (>0), got {len(signals)} and {len(targets)}"
        )
    images = PreparedImages()
    for i, (s, t) in enumerate(zip(signals, targets, strict=True)):
        sm = signal_metas[i] if signal_metas else None
        tm = target_metas[i] if target_metas else None
        s, t = np.asarray(s), np.asarray(t)
        if s.ndim != 4 or t.ndim != 4:
            raise InputError(f"pair {i}", f"arrays must be (C, Z, Y, X), got {s.shape} and {t.shape}")
        x, y, xs, ys = prepare_pair(s, t, job.data, task=job.train.task, signal_meta=sm, target_meta=tm)
        images.signals.append(x)
        images.targets.append(y)
        images.signal_stats.append(xs)
        images.target_stats.append(ys)
        images.sources.append(getattr(sm, "path", "") or f"array {i}")
    s0, t0 = np.asarray(signals[0]), np.asarray(targets[0])
    images.signal_names = channel_label(
        job.data.signal_channels,
        getattr(signal_metas[0], "channel_names", ()) if signal_metas else (),
        s0.shape[0],
    )
    images.target_names = channel_label(
        job.data.target_channels,
        getattr(target_metas[0], "channel_names", ()) if target_metas else (),
        t0.shape[0],
    )
    if job.data.input_transform == "ratiometric":
        images.signal_names = ["intensity", "ratio"]
    elif job.data.input_transform == "intensity_only":
        images.signal_names = ["intensity"]
    if job.data.input_mode == "zstack_to_2d":
        images.n_z = int(s0.shape[1])
    info = {
        "signal_channels": job.data.signal_channels,
        "target_channels": job.data.target_channels,
        "signal_names": images.signal_names,
        "target_names": images.target_names,
    }
    split_list = list(splits) if splits is not None else ["train"] * len(signals)
    return _fit_prepared(job, images, split_list, info, resume=resume, progress=progress)


def resolve_model_config(job: TrainingJob, images: PreparedImages) -> ModelConfig:
    """The model configuration with spatial dims and channel counts taken from the data."""
    task = job.train.task
    spatial_dims = 3 if job.data.input_mode == "3d" else 2
    in_ch = int(images.signals[0].shape[0])
    if task == "regression":
        out_ch = int(images.targets[0].shape[0])
    elif task == "binary":
        out_ch = int(images.targets[0].shape[0])
    else:
        max_label = int(max(int(t.max()) for t in images.targets))
        n_names = len(job.data.class_names or [])
        out_ch = max(n_names, job.model.out_channels if job.model.out_channels > 1 else 0, max_label + 1, 2)
        if job.train.class_weights is not None and len(job.train.class_weights) != out_ch:
            raise ConfigError(
                f"train.class_weights: {len(job.train.class_weights)} weights for {out_ch} classes"
            )
    changed = {
        k: (getattr(job.model, k), v)
        for k, v in (("spatial_dims", spatial_dims), ("in_channels", in_ch), ("out_channels", out_ch))
        if getattr(job.model, k) != v
    }
    if changed:
        log.info("model settings taken from the data: %s", changed)
    return job.model.model_copy(
        update={"spatial_dims": spatial_dims, "in_channels": in_ch, "out_channels": out_ch}
    )


def _check_job(job: TrainingJob, patch: tuple[int, ...], spatial_dims: int, depth: int) -> None:
    if not job.data.cache:
        raise ConfigError("data.cache: only in-memory training data is implemented (set cache: true)")
    if len(patch) != spatial_dims:
        raise ConfigError(
            f"data.patch_shape {list(patch)} has {len(patch)} axes; input_mode {job.data.input_mode!r} needs "
            f"{spatial_dims}"
        )
    if any(p % 2**depth for p in patch):
        raise ConfigError(f"data.patch_shape {list(patch)} must be divisible by 2**depth = {2**depth}")
    monitor, task = job.train.resolved_monitor(), job.train.task
    fits = {"val_loss": True, "val_r": task == "regression", "val_f1": task != "regression"}
    if not fits[monitor]:
        raise ConfigError(
            f"train.monitor {monitor!r} does not fit task {task!r} (val_r: regression, val_f1: segmentation)"
        )
    aug = job.train.augment
    if aug.enabled and aug.rot90 and spatial_dims >= 2 and patch[-1] != patch[-2]:
        raise ConfigError(
            f"train.augment.rot90 needs square Y-X patches, got data.patch_shape {list(patch)} "
            "(set rot90: false)"
        )
    loss = job.train.resolved_loss()
    ok = {
        "regression": ("mse", "l1", "mse_ssim"),
        "binary": ("bce", "dice_ce"),
        "multiclass": ("ce", "dice_ce"),
    }
    if loss not in ok[task]:
        raise ConfigError(f"train.loss {loss!r} does not fit task {task!r} (use {ok[task]})")


def _stats(items: list[dict]) -> list[ChannelStats]:
    return [ChannelStats(**{k: v for k, v in s.items() if k in ChannelStats.model_fields}) for s in items]


def _fit_prepared(
    job: TrainingJob,
    images: PreparedImages,
    splits: Sequence[str],
    info: dict[str, Any],
    *,
    resume: bool,
    progress: bool,
) -> Path:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from stainfree._version import __version__
    from stainfree.data.augment import build_augmenter
    from stainfree.data.dataset import PatchDataset
    from stainfree.data.patching import patches_per_epoch
    from stainfree.data.preprocess import mean_stats
    from stainfree.inference.windows import native_bf16
    from stainfree.models.bundle import safe_load, save_bundle
    from stainfree.models.registry import build_model, encoder_parameters
    from stainfree.train.losses import build_loss
    from stainfree.train.module import TrainModule
    from stainfree.train.recipe import FIXED, ema_decay_for, fill_settings, validation_interval
    from stainfree.train.trainer import make_trainer, model_state, prepend_rows, quiet, read_rows, summary

    t_start = time.perf_counter()
    out = Path(job.output_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    gpu = _uses_gpu(job.train.accelerator)
    if resume:
        job = with_resolved(job, out / "job.yaml")
    job = with_network_of(job)
    # bf16-mixed on a GPU that computes bfloat16; not on the CPU even where it is native (AVX512-BF16, AMX):
    # there the demo's 3D fnet U-Nets went to NaN after 75 and 96 of 200 steps (prediction in bf16 is fine)
    bf16 = native_bf16("cuda") if gpu else False
    job = fill_settings(job, [s.shape[1:] for s in images.signals], gpu=gpu, bf16=bf16)
    tc, dc = job.train, job.data
    assert tc.batch_size is not None  # filled by the recipe
    batch = tc.batch_size
    model_cfg = resolve_model_config(job, images)
    patch = dc.resolved_patch_shape()
    _check_job(job, patch, model_cfg.spatial_dims, int(model_cfg.depth or 0))
    monitor = tc.resolved_monitor()
    patch3 = tuple(patch) if len(patch) == 3 else (1, *patch)
    train, val, dataset_stats, validation = split_for_validation(job, images, splits, patch3)

    start_step = 0
    if resume:
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume from (train without --resume first)")
        try:
            start_step = int(safe_load(last)["global_step"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(last, f"not a training checkpoint ({type(exc).__name__})") from None
    elif ckpt_dir.exists() or (out / "logs").exists():
        log.warning("%s: starting a new training; removing the previous checkpoints and logs", out)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        shutil.rmtree(out / "logs", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    pl.seed_everything(tc.seed, workers=True, verbose=False)
    model = build_model(model_cfg)
    if tc.init_from is not None:
        info["init_from"] = _init_weights(model, tc.init_from)
    if tc.freeze_encoder:
        for p in encoder_parameters(model):
            p.requires_grad_(False)
    loss_fn = build_loss(
        tc.resolved_loss(), task=tc.task, pos_weight=tc.pos_weight, class_weights=tc.class_weights
    )
    augmenter = build_augmenter(
        tc.augment, spatial_dims=model_cfg.spatial_dims, task=tc.task, input_transform=dc.input_transform
    )
    sampling: dict[str, Any] = {
        "foreground_fraction": dc.foreground_fraction,
        "multiclass": tc.task == "multiclass",
        "foreground_labels": dc.foreground_labels,
    }
    val_ds = validation_patches(
        val,
        patch,
        tc.seed,
        tc.val_patches,
        grid=validation["mode"] != "train",
        segmentation=tc.task != "regression",
        sampling=sampling,
    )

    max_steps = tc.max_steps
    budget = tc.max_seconds()
    replan = max_steps is None and budget is not None
    if max_steps is None:
        max_steps = FIXED["steps"]
        if budget is not None:
            probe = PatchDataset(
                train.signals,
                train.targets,
                patch,
                seed=tc.seed,
                length=4 * batch,
                augment=augmenter,
                **sampling,
            )
            max_steps = _steps_in_budget(
                model, loss_fn, probe, batch, budget, len(val_ds), t_start, gpu, augment=augmenter
            )
    if tc.max_epochs is not None:
        per_epoch = math.ceil(patches_per_epoch([s.shape[1:] for s in train.signals], patch) / batch)
        max_steps = min(max_steps, tc.max_epochs * per_epoch)
    val_every = tc.val_every_n_steps or validation_interval(max_steps)
    job = job.model_copy(
        update={"train": tc.model_copy(update={"max_steps": max_steps, "val_every_n_steps": val_every})}
    )
    save_yaml(job, out / "job.yaml")  # the settings the recipe chose, so that --resume continues alike
    remaining = max(0, max_steps - start_step)

    module = TrainModule(
        model,
        loss_fn,
        task=tc.task,
        lr=tc.lr,
        betas=tc.betas,
        weight_decay=tc.weight_decay,
        scheduler=tc.scheduler,
        plateau_factor=tc.plateau_factor,
        plateau_patience=tc.plateau_patience,
        warmup_steps=int(round(tc.warmup_fraction * max_steps)),
        max_steps=max_steps,
        ema_decay=None if tc.ema_decay is None else ema_decay_for(tc.ema_decay, max_steps),
        monitor=monitor,
        val_every_n_steps=val_every,
        seed=tc.seed,
        augment=augmenter if getattr(augmenter, "batched", False) else None,
    )
    train_ds = PatchDataset(
        train.signals,
        train.targets,
        patch,
        seed=tc.seed,
        length=remaining * batch * (4 if replan else 1),  # a re-planned run may grow (patches are lazy)
        start=start_step * batch,
        augment=augmenter,
        **sampling,
    )
    workers = loader_workers(tc.num_workers, gpu)
    loader_kw: dict[str, Any] = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": gpu,  # page-locked batches: asynchronous copies to the GPU
    }
    train_dl = DataLoader(train_ds, batch_size=batch, shuffle=False, drop_last=True, **loader_kw)
    val_dl = DataLoader(val_ds, batch_size=batch, shuffle=False, **loader_kw)
    time_left = None if budget is None else max(1.0, budget - (time.perf_counter() - t_start))
    trainer, best_cb = make_trainer(
        job,
        out,
        monitor=monitor,
        max_steps=max_steps,
        val_every=val_every,
        time_left=time_left,
        progress=progress,
        replan=replan and not resume,
        log_every=10 if gpu else 1,
    )
    metrics_csv = out / "logs" / "metrics.csv"
    earlier = read_rows(metrics_csv, before_step=start_step) if resume else None
    t0 = time.time()
    with quiet():
        if remaining > 0:
            trainer.fit(module, train_dl, val_dl, ckpt_path=str(last) if resume else None, weights_only=True)
            trainer.save_checkpoint(last, weights_only=False)
        elif resume:  # already trained to max_steps: export the checkpoint's weights
            module.export_model.load_state_dict(model_state(last, ema=tc.ema_decay is not None))
    elapsed = time.time() - t0
    planned = int(trainer.fit_loop.epoch_loop.max_steps) if remaining > 0 else max_steps
    if planned != max_steps:  # re-planned to the time budget: what a later --resume continues with
        save_yaml(
            job.model_copy(update={"train": job.train.model_copy(update={"max_steps": planned})}),
            out / "job.yaml",
        )
    if earlier is not None and len(earlier):
        prepend_rows(metrics_csv, earlier)

    export_model = module.export_model
    exported = "last"
    best_path = best_cb.best_model_path or (
        str(ckpt_dir / "best.ckpt") if (ckpt_dir / "best.ckpt").is_file() else ""
    )
    if use_best_checkpoint(tc.export, monitor, best_path, best_cb.best_model_score):
        export_model = build_model(model_cfg)
        export_model.load_state_dict(model_state(best_path, ema=tc.ema_decay is not None))
        exported = "best"
    threshold: float | None = None
    record_table: list[dict[str, float]] = []
    if tc.task == "binary" and val.signals:
        threshold, record_table = choose_threshold(export_model, val, model_cfg.spatial_dims, patch)
        log.info("%s: probability threshold %.2f (best F1 on the validation images)", job.name, threshold)
    record = summary(out / "logs" / "metrics.csv")
    if threshold is not None:
        record["threshold_f1"] = record_table
    record.update(
        {
            "steps": int(trainer.global_step) if remaining > 0 else start_step,
            "max_steps": planned,
            "max_time_s": budget,
            "resumed_from_step": start_step if resume else None,
            "batch_size": batch,
            "precision": tc.precision,
            "seed": tc.seed,
            "recipe": job.recipe,
            "monitor": monitor,
            "exported": exported,
            "best_checkpoint_score": float(best_cb.best_model_score)
            if best_cb.best_model_score is not None
            else None,
            "validation": validation,
            "train_images": list(train.sources),
            "val_images": list(val.sources),
            "seconds": round(elapsed, 2),
            "loss": tc.resolved_loss(),
            "signal_names": list(info.get("signal_names") or []),
            "target_names": list(info.get("target_names") or []),
            "init_from": info.get("init_from"),
        }
    )
    bundle_cfg = BundleConfig(
        stainfree_version=__version__,
        name=job.name,
        task=tc.task,
        spatial_dims=model_cfg.spatial_dims,
        input_mode=dc.input_mode,
        n_z=images.n_z,
        model=model_cfg,
        signal_channels=info.get("signal_channels"),
        target_channels=info.get("target_channels"),
        class_names=dc.class_names,
        input_transform=dc.input_transform,
        ratio_offset=dc.ratio_offset,
        ratio_background_threshold=dc.ratio_background_threshold,
        ratio_clip_percentile=dc.ratio_clip_percentile,
        ratio_normalization=dc.ratio_normalization,
        ratio_max=dc.ratio_max,
        channel_alignment=dc.channel_alignment,
        normalization=dc.normalization,
        percentile_range=dc.percentile_range,
        normalization_scope=dc.normalization_scope,
        normalization_stats=_stats(dataset_stats),
        target_normalization=dc.target_normalization if tc.task == "regression" else "none",
        target_stats=_stats(mean_stats(train.target_stats)) if tc.task == "regression" else [],
        voxel_size_um=dc.voxel_size_um,
        patch_shape=list(patch),
        threshold=threshold,
        training=record,
    )
    return save_bundle(out / f"{job.name}.stainfree", export_model, bundle_cfg)


def loader_workers(setting: int | str, gpu: bool) -> int:
    """Data-loader worker processes for ``train.num_workers``: 'auto' is up to 4 on a GPU, leaving a core to
    the trainer, and none on the CPU, whose cores compute the network."""
    if setting != "auto":
        return int(setting)
    if not gpu:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _uses_gpu(accelerator: str) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _init_weights(model: Any, bundle_path: Path) -> dict[str, Any]:
    """Load every weight of a bundle whose name and shape fit ``model`` (all of them for fine-tuning; the
    encoder of a pretrained network whose head differs). Returns what was loaded, for the bundle."""
    from stainfree.models.bundle import load_bundle

    init = load_bundle(bundle_path)
    own = model.state_dict()
    theirs = init.model.state_dict()
    fitting = {k: v for k, v in theirs.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fitting:
        raise InputError(bundle_path, "none of its weights fit this network (another architecture or depth)")
    model.load_state_dict(fitting, strict=False)
    return {"bundle": str(bundle_path), "loaded": len(fitting), "of": len(own)}


def _steps_in_budget(
    model: Any,
    loss_fn: Any,
    probe: Any,
    batch: int,
    budget: float,
    n_val: int,
    t_start: float,
    gpu: bool,
    augment: Any = None,
) -> int:
    """Time a few training steps (batch assembly and augmentation included) of a copy of the network and
    size the run to the budget."""
    import copy

    import torch

    from stainfree.train.recipe import steps_for_budget

    device = "cuda" if gpu else "cpu"
    with torch.random.fork_rng(devices=[] if not gpu else None):
        net = copy.deepcopy(model).to(device).train()
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-6)
        times = []
        for k in range(4):
            t = time.perf_counter()
            items = [probe[(k * batch + j) % len(probe)] for j in range(batch)]
            b = {key: torch.stack([it[key] for it in items]).to(device) for key in items[0]}
            if "seed" in b and augment is not None:
                b = augment.batch(b)
            x, y = b["signal"], b["target"]
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    step_s = float(np.median(times[1:]))
    val_batches = max(1, math.ceil(n_val / batch))
    steps = steps_for_budget(budget, step_s, val_batches=val_batches, elapsed_s=time.perf_counter() - t_start)
    log.info("time budget %.0f s: %.3f s a step -> %d steps", budget, step_s, steps)
    return steps
