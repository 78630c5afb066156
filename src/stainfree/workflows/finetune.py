"""Fine-tuning any bundle on a user's own images: its network, inputs and preprocessing kept, its weights the
start, the new bundle recording where it came from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stainfree.config import BundleConfig, TrainingJob


def fine_tune_job(
    config: BundleConfig,
    bundle: str | Path,
    manifest: str | Path,
    output_dir: str | Path,
    *,
    name: str,
    max_steps: int | None = 200,
    lr: float = 1e-4,
    freeze_encoder: bool = False,
    **overrides: Any,
) -> TrainingJob:
    """The training job that continues a regression bundle on a manifest of ``signal`` / ``target`` pairs.

    The bundle's network, channels, input mode, input transform, normalization, voxel size and patch are
    kept; ``overrides`` set further :class:`~stainfree.config.DataConfig` or
    :class:`~stainfree.config.TrainConfig` fields by name (e.g. ``max_time``, ``batch_size``).
    """
    from stainfree.config import DataConfig, TrainConfig, TrainingJob
    from stainfree.errors import ConfigError

    data_fields = {
        "manifest": Path(manifest),
        "signal_channels": config.signal_channels,
        "target_channels": config.target_channels,
        "input_mode": config.input_mode,
        "voxel_size_um": config.voxel_size_um,
        "input_transform": config.input_transform,
        "ratio_offset": config.ratio_offset,
        "ratio_background_threshold": config.ratio_background_threshold,
        "ratio_clip_percentile": config.ratio_clip_percentile,
        "ratio_normalization": config.ratio_normalization,
        "ratio_max": config.ratio_max,
        "channel_alignment": config.channel_alignment,
        "normalization": config.normalization,
        "percentile_range": config.percentile_range,
        "normalization_scope": config.normalization_scope,
        "target_normalization": config.target_normalization,
        "patch_shape": list(config.patch_shape) or None,
    }
    train_fields: dict[str, Any] = {
        "task": config.task,
        "max_steps": max_steps,
        "lr": lr,
        "init_from": Path(bundle),
        "freeze_encoder": freeze_encoder,
    }
    for key, value in overrides.items():
        if key in DataConfig.model_fields:
            data_fields[key] = value
        elif key in TrainConfig.model_fields:
            train_fields[key] = value
        else:
            raise ConfigError(f"fine-tuning: unknown setting {key!r}")
    return TrainingJob(
        name=name,
        output_dir=Path(output_dir),
        data=DataConfig(**data_fields),
        model=config.model.model_copy(),
        train=TrainConfig(**train_fields),
    )


def fine_tune(
    bundle: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    max_steps: int | None = 200,
    lr: float = 1e-4,
    freeze_encoder: bool = False,
    name: str | None = None,
    progress: bool = False,
    **job_overrides: Any,
) -> Path:
    """Fine-tune a bundle (regression or segmentation) on a few of the user's own images.

    Parameters
    ----------
    bundle : path
        The bundle to start from (its architecture, inputs, preprocessing and classes are kept).
    manifest : path
        A training manifest with ``signal`` and ``target`` columns (segmentation bundles also take a simulator
        folder; see :func:`stainfree.workflows.organelles.fine_tune_segmentation`).
    out_dir : path
        Receives ``<name>.stainfree`` (default name: ``<bundle name>_ft``) and ``runs/``.
    max_steps, lr : int or None, float
        Training length (None with ``max_time`` set: as many steps as the time allows) and learning rate.
    freeze_encoder : bool
        Train only the decoder.
    job_overrides
        Further data or training settings by name (``max_time="5m"``, ``batch_size``, ...).

    Returns
    -------
    Path
        The fine-tuned bundle; its ``training.init_from`` names the bundle it started from.
    """
    from stainfree.models.bundle import read_bundle_config
    from stainfree.train.fit import fit
    from stainfree.workflows.organelles import fine_tune_segmentation, publish_bundle

    cfg = read_bundle_config(bundle)
    if cfg.task != "regression":
        return fine_tune_segmentation(
            bundle,
            manifest,
            out_dir,
            max_steps=max_steps or 200,
            lr=lr,
            freeze_encoder=freeze_encoder,
            name=name,
            progress=progress,
            **job_overrides,
        )
    name = name or f"{cfg.name}_ft"
    out = Path(out_dir)
    job = fine_tune_job(
        cfg,
        bundle,
        manifest,
        out / "runs" / name,
        name=name,
        max_steps=max_steps,
        lr=lr,
        freeze_encoder=freeze_encoder,
        **job_overrides,
    )
    tuned = Path(fit(job, progress=progress))
    return publish_bundle(tuned, out / f"{name}.stainfree")
