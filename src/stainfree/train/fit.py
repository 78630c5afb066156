"""fit(job) -> bundle: seeds, data, model, Lightning Trainer, checkpoints, resume, export.

Patches are a pure function of (seed, global sample index) and the training data loader of a resumed run
starts at index ``global_step * batch_size``, so resuming from ``<output_dir>/checkpoints/last.ckpt`` gives
the same final weights as an uninterrupted run on the same hardware.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.config import BundleConfig, ChannelStats, ModelConfig, TrainingJob, save_yaml
from stainfree.data.dataset import PreparedImages, prepare_pair
from stainfree.errors import ConfigError, InputError
from stainfree.train.fit_data import load_images, renormalize_to_dataset, split_train_val

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
    if job.train.monitor == "val_f1" and job.train.task == "regression":
        raise ConfigError("train.monitor 'val_f1' needs a segmentation task")
    loss = job.train.resolved_loss()
    ok = {"regression": ("mse", "l1"), "binary": ("bce", "dice_ce"), "multiclass": ("ce", "dice_ce")}
    if loss not in ok[job.train.task]:
        raise ConfigError(
            f"train.loss {loss!r} does not fit task {job.train.task!r} (use {ok[job.train.task]})"
        )


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
    import torch
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from stainfree._version import __version__
    from stainfree.data.augment import build_augmenter
    from stainfree.data.dataset import PatchDataset
    from stainfree.data.patching import patches_per_epoch
    from stainfree.data.preprocess import mean_stats
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model, encoder_parameters
    from stainfree.train.losses import build_loss
    from stainfree.train.module import TrainModule

    tc, dc = job.train, job.data
    model_cfg = resolve_model_config(job, images)
    patch = dc.resolved_patch_shape()
    _check_job(job, patch, model_cfg.spatial_dims, model_cfg.depth)
    train_idx, val_idx = split_train_val(splits, dc.val_fraction, tc.seed)
    dataset_stats = mean_stats(images.subset(train_idx).signal_stats)
    if dc.normalization_scope == "dataset":
        renormalize_to_dataset(images, dataset_stats)
    train, val = images.subset(train_idx), images.subset(val_idx)

    out = Path(job.output_dir)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    start_step = 0
    if resume:
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume from (train without --resume first)")
        try:
            start_step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
        except Exception as exc:
            raise InputError(last, f"corrupt checkpoint ({type(exc).__name__})") from None
    elif ckpt_dir.exists() or (out / "logs").exists():
        log.warning("%s: starting a new training; removing the previous checkpoints and logs", out)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        shutil.rmtree(out / "logs", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(job, out / "job.yaml")

    pl.seed_everything(tc.seed, workers=True, verbose=False)
    model = build_model(model_cfg)
    if tc.init_from is not None:
        from stainfree.models.bundle import load_bundle

        init = load_bundle(tc.init_from)
        try:
            model.load_state_dict(init.model.state_dict())
        except RuntimeError as exc:
            raise InputError(
                tc.init_from, f"its weights do not fit this network ({str(exc)[:160]})"
            ) from None
    if tc.freeze_encoder:
        for p in encoder_parameters(model):
            p.requires_grad_(False)
    loss_fn = build_loss(
        tc.resolved_loss(), task=tc.task, pos_weight=tc.pos_weight, class_weights=tc.class_weights
    )
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
        monitor=tc.monitor,
        val_every_n_steps=tc.val_every_n_steps,
        seed=tc.seed,
    )

    max_steps = tc.max_steps
    if tc.max_epochs is not None:
        per_epoch = math.ceil(patches_per_epoch([s.shape[1:] for s in train.signals], patch) / tc.batch_size)
        max_steps = min(max_steps, tc.max_epochs * per_epoch)
    remaining = max(0, max_steps - start_step)
    augmenter = build_augmenter(
        tc.augment, spatial_dims=model_cfg.spatial_dims, task=tc.task, input_transform=dc.input_transform
    )
    sampling = {
        "foreground_fraction": dc.foreground_fraction,
        "multiclass": tc.task == "multiclass",
        "foreground_labels": dc.foreground_labels,
    }
    train_ds = PatchDataset(
        train.signals,
        train.targets,
        patch,
        seed=tc.seed,
        length=remaining * tc.batch_size,
        start=start_step * tc.batch_size,
        augment=augmenter,
        **sampling,
    )
    # the same fixed validation patches at every check, centred on foreground as often as the training
    # patches, so that a sparse structure is present in them at all
    val_ds = PatchDataset(
        val.signals, val.targets, patch, seed=tc.seed, length=tc.val_patches, stream=1, **sampling
    )
    loader_kw = {"num_workers": tc.num_workers, "persistent_workers": tc.num_workers > 0}
    train_dl = DataLoader(train_ds, batch_size=tc.batch_size, shuffle=False, drop_last=True, **loader_kw)
    val_dl = DataLoader(val_ds, batch_size=tc.batch_size, shuffle=False, **loader_kw)

    class _StopAtMinLr(Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            if lr < tc.min_lr:
                log.info("learning rate %.3g below min_lr %.3g: stopping", lr, tc.min_lr)
                trainer.should_stop = True

    periodic = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step{step:07d}",
        every_n_train_steps=tc.checkpoint_every_n_steps,
        save_top_k=-1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    mode = "max" if tc.monitor == "val_f1" else "min"
    best_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=tc.monitor,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    callbacks: list = [periodic, best_cb, _StopAtMinLr()]
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        class _StepsBar(RichProgressBar):
            """Rich bar labelled by the job (the run is one long epoch of ``max_steps`` steps)."""

            def _get_train_description(self, current_epoch: int) -> str:
                return f"training {job.name}"

        callbacks.append(_StepsBar())
    quiet = contextlib.ExitStack()
    quiet.enter_context(_quiet(True))
    quiet.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        val_check_interval=tc.val_every_n_steps,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        precision=tc.precision,
        accelerator=tc.accelerator,
        devices=tc.devices,
        strategy=tc.strategy,
        num_nodes=tc.num_nodes,
        callbacks=callbacks,
        logger=CSVLogger(save_dir=out, name="logs", version=""),
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=out,
    )
    metrics_csv = out / "logs" / "metrics.csv"
    earlier = _read_rows(metrics_csv, before_step=start_step) if resume else None
    t0 = time.time()
    with quiet:
        if remaining > 0:
            trainer.fit(module, train_dl, val_dl, ckpt_path=str(last) if resume else None, weights_only=True)
            trainer.save_checkpoint(last, weights_only=False)
        elif resume:  # already trained to max_steps: export the checkpoint's weights
            module.model.load_state_dict(_model_state(last))
    elapsed = time.time() - t0
    if earlier is not None and len(earlier):
        _prepend_rows(metrics_csv, earlier)

    export_model = module.model
    exported = "last"
    best_path = best_cb.best_model_path or _existing(ckpt_dir / "best.ckpt")
    if use_best_checkpoint(tc.export, tc.monitor, best_path, best_cb.best_model_score):
        export_model = build_model(model_cfg)
        export_model.load_state_dict(_model_state(best_path))
        exported = "best"
    summary = _summary(out / "logs" / "metrics.csv")
    summary.update(
        {
            "steps": int(trainer.global_step) if remaining > 0 else start_step,
            "max_steps": max_steps,
            "resumed_from_step": start_step if resume else None,
            "batch_size": tc.batch_size,
            "seed": tc.seed,
            "exported": exported,
            "best_checkpoint_score": float(best_cb.best_model_score)
            if best_cb.best_model_score is not None
            else None,
            "train_images": list(train.sources),
            "val_images": list(val.sources),
            "seconds": round(elapsed, 2),
            "loss": tc.resolved_loss(),
            "signal_names": list(info.get("signal_names") or []),
            "target_names": list(info.get("target_names") or []),
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
        normalization=dc.normalization,
        percentile_range=dc.percentile_range,
        normalization_scope=dc.normalization_scope,
        normalization_stats=_stats(dataset_stats),
        target_normalization=dc.target_normalization if tc.task == "regression" else "none",
        target_stats=_stats(mean_stats(train.target_stats)) if tc.task == "regression" else [],
        voxel_size_um=dc.voxel_size_um,
        patch_shape=list(patch),
        training=summary,
    )
    return save_bundle(out / f"{job.name}.stainfree", export_model, bundle_cfg)


def _read_rows(metrics_csv: Path, *, before_step: int) -> Any:
    """Rows of a CSV log with step < ``before_step`` (the CSV logger of a resumed run starts a new file)."""
    import pandas as pd

    if not metrics_csv.is_file():
        return None
    m = pd.read_csv(metrics_csv)
    return m[m["step"] < before_step] if "step" in m else m


def _prepend_rows(metrics_csv: Path, earlier: Any) -> None:
    import pandas as pd

    from stainfree.io.atomic import atomic_path

    new = pd.read_csv(metrics_csv) if metrics_csv.is_file() else pd.DataFrame()
    merged = pd.concat([earlier, new], ignore_index=True)
    with atomic_path(metrics_csv) as tmp:
        merged.to_csv(tmp, index=False)


def _model_state(ckpt: str | Path) -> dict[str, Any]:
    """The network's state dict inside a Lightning checkpoint of :class:`TrainModule`."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


def _existing(p: Path) -> str:
    return str(p) if p.is_file() else ""


def _summary(metrics_csv: Path) -> dict[str, Any]:
    """Last training loss and best validation numbers from the CSV log."""
    if not metrics_csv.is_file():
        return {}
    import pandas as pd

    m = pd.read_csv(metrics_csv)
    out: dict[str, Any] = {}
    if "train_loss" in m:
        tl = m["train_loss"].dropna()
        if len(tl):
            out["first_train_loss"] = float(tl.iloc[0])
            out["final_train_loss"] = float(tl.iloc[-1])
    if "val_loss" in m:
        vl = m["val_loss"].dropna()
        if len(vl):
            out["best_val_loss"] = float(vl.min())
            out["final_val_loss"] = float(vl.iloc[-1])
    if "val_f1" in m:
        vf = m["val_f1"].dropna()
        if len(vf):
            out["best_val_f1"] = float(vf.max())
            out["final_val_f1"] = float(vf.iloc[-1])
    return out


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence Lightning's informational logging and routine warnings (restored afterwards)."""
    if not enabled:
        yield
        return
    names = (
        "lightning.pytorch",
        "lightning.fabric",
        "lightning",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*checkpoint.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
