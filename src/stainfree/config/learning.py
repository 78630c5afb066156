"""Virtual staining and segmentation networks: data, augmentation, model, training, bundle, prediction and
evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from stainfree.config.base import CONFIG_VERSION, StrictModel

ChannelRef = str | int


class AugmentConfig(StrictModel):
    """Random augmentation of training patches.

    The default is the little-data recipe: lossless flips and 90-degree rotations in Y-X, and intensity and
    noise changes of the input, applied to whole batches on the training device; free rotation and zoom
    (interpolated per sample on the host with MONAI; masks by nearest neighbour) are off.
    """

    enabled: bool = Field(True, description="Augment training patches (validation patches never are).")
    prob: float = Field(
        0.5, ge=0.0, le=1.0, description="Probability of each random intensity/geometry change."
    )
    flip_axes: list[int] = Field(
        default_factory=lambda: [-2, -1],
        description="Spatial axes that may be flipped (negative: from the end; -3 is Z of a 3D network: add "
        "it only where the modality is symmetric along Z, never for a focus series used as channels).",
    )
    rot90: bool = Field(
        True, description="Random 90-degree rotations in the Y-X plane (needs square Y-X patches; lossless)."
    )
    rotation_degrees: float = Field(
        0.0,
        ge=0.0,
        le=180.0,
        description="Maximum free in-plane (Y-X) rotation, degrees, either direction (interpolated; "
        "0 = off).",
    )
    scale_range: tuple[float, float] = Field(
        (1.0, 1.0), description="Range of the random zoom factor (interpolated; 1, 1 = off)."
    )
    gain_range: tuple[float, float] = Field(
        (0.8, 1.25), description="Range of a random multiplicative gain of the input (1, 1 switches it off)."
    )
    offset_range: tuple[float, float] = Field(
        (-0.2, 0.2),
        description="Range of a random offset added to the input, in normalized units (0, 0 = off).",
    )
    noise_std: float = Field(
        0.05,
        ge=0.0,
        description="Largest standard deviation of Gaussian noise added to the input (normalized).",
    )
    mask_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Self-supervised pretraining (`stainfree pretrain`): share of the input hidden under "
        "noise in random blocks (an eighth of the patch on a side), which the network learns to fill in; "
        "0 = off.",
    )
    gain_channels: list[int] | None = Field(
        None,
        description="Input channels that gain, offset and noise apply to; None = all channels, except "
        "that the "
        "ratio channel of a ratiometric input never gets them.",
    )


class DataConfig(StrictModel):
    """Which images to train on and how to turn them into network inputs and targets."""

    manifest: Path | None = Field(None, description="Manifest CSV (paths relative to the CSV are allowed).")
    signal_column: str = Field(
        "signal",
        description="Manifest column of the input images (e.g. 'brightfield' for a simulator manifest).",
    )
    target_column: str = Field(
        "target", description="Manifest column of the target images (e.g. 'fluorescence' or 'labels')."
    )
    signal_channels: list[ChannelRef] | None = Field(
        None,
        description="Input channels by name or index; None = all (a manifest column may override per row).",
    )
    target_channels: list[ChannelRef] | None = Field(
        None,
        description="Target channels by name or index; None = all (a manifest column may override per row).",
    )
    class_names: list[str] | None = Field(None, description="Names of the output classes (segmentation).")
    input_mode: Literal["3d", "2d", "zstack_to_2d"] = Field(
        "3d",
        description="'3d': 3D network; '2d': 2D network on single planes (stacks train plane by plane); "
        "'zstack_to_2d': the z planes become the channels of a 2D network that predicts a 2D target.",
    )
    target_projection: Literal["max", "mean", "middle"] = Field(
        "max", description="zstack_to_2d: how a 3D target becomes 2D (a 2D target is used as is)."
    )
    voxel_size_um: tuple[float, float, float] | None = Field(
        (0.29, 0.29, 0.29),
        description="Voxel size (z, y, x) in micrometres to resample to; None = no resampling. Files of "
        "unknown voxel size are not resampled (a warning says so).",
    )
    input_transform: Literal["none", "ratiometric", "intensity_only"] = Field(
        "none",
        description="'ratiometric': inputs are (intensity, ratio) from the two signal channels "
        "[yellow, red]; 'intensity_only': the intensity alone.",
    )
    ratio_offset: float | tuple[float, float] | Literal["auto"] | None = Field(
        "auto",
        description="Ratiometric: background level (camera offset + medium) subtracted from the yellow and "
        "red channels before intensity and ratio: a number, one per channel, 'auto' (estimated from each "
        "image) or None (channels already background-corrected).",
    )
    ratio_background_threshold: float | None = Field(
        None, description="Ratiometric: intensity below which the ratio is set to 0 (None = automatic)."
    )
    ratio_clip_percentile: float = Field(
        99.9, description="Ratiometric: percentile at which the ratio is clipped."
    )
    ratio_normalization: Literal["image", "fixed", "median"] = Field(
        "image",
        description="Ratiometric: how the ratio channel is scaled. 'image': z-scored per image like the "
        "intensity (relative: a field whose ratios are all 1.3x higher looks the same); 'fixed': R/Y over "
        "0..ratio_max mapped to 0..1 (absolute: the ratio as the dye's fingerprint); 'median': divided by "
        "the field's median foreground ratio (relative to the field, robust to a filter set's scale).",
    )
    ratio_max: float = Field(
        3.0, gt=0, description="Ratiometric, ratio_normalization 'fixed': the R/Y mapped to 1."
    )
    channel_alignment: Literal["none", "auto"] | tuple[float, float, float] = Field(
        "none",
        description="Ratiometric: translation of the red channel onto the yellow one before intensity "
        "and ratio (chromatic shift; a misaligned pair smears the ratio at every membrane edge): 'auto' "
        "estimates it from each image (phase correlation, subpixel), (z, y, x) pixels applies a known one "
        "(e.g. from a bead image), 'none' leaves the channels as they are.",
    )
    normalization: Literal["zscore", "percentile", "none"] = Field(
        "zscore", description="Per-channel normalization of the inputs."
    )
    percentile_range: tuple[float, float] = Field(
        (1.0, 99.8), description="'percentile' normalization: low and high percentiles mapped to 0 and 1."
    )
    normalization_scope: Literal["image", "dataset"] = Field(
        "image",
        description="'image': statistics of each image (also at prediction); 'dataset': statistics averaged "
        "over the training images, stored in the bundle and reused at prediction.",
    )
    target_normalization: Literal["zscore", "percentile", "none"] = Field(
        "zscore",
        description="Regression targets, per image and channel (segmentation targets are never normalized).",
    )
    patch_shape: list[int] | None = Field(
        None,
        description="Training patch (z, y, x) or (y, x); None = chosen by the recipe ('auto': from the image "
        "sizes and time budget; 'fixed': 32x64x64 in 3D, 256x256 in 2D).",
    )
    validation: Literal["auto", "images", "region", "train"] = Field(
        "auto",
        description="Where validation data come from when the manifest has no 'val' rows: 'images' holds out "
        "whole training images (val_fraction of them); 'region' carves a block of val_region_fraction "
        "from one end of each training image's Y or X axis (of the four ends, the one whose target "
        "variance is most like the whole image's: never an empty corner of a sparse stain), behind a gap of "
        "half a patch that no training patch touches; 'train' validates on the training images "
        "(selection on training data: not recommended); "
        "'auto' = 'images' with 5 or more training images, else 'region' (the region is recorded in the "
        "bundle).",
    )
    val_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="validation 'images': fraction of training images held out (at least one).",
    )
    val_region_fraction: float = Field(
        0.2, gt=0.0, lt=0.5, description="validation 'region': share of the Y or X axis held out."
    )
    foreground_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the training patches centred on a foreground voxel of the target (binary: "
        "target > 0; multiclass: a class drawn uniformly among the foreground labels present, then one of "
        "its voxels), so that rare structures are seen; 0 = uniform patches only. The fixed validation "
        "patches are drawn the same way, so that a sparse structure is in them at all.",
    )
    foreground_labels: list[int] | None = Field(
        None,
        description="Multi-class: the label values foreground sampling centres patches on (None: every "
        "label > 0; list label 0 too when it is a class of its own rather than background).",
    )
    use_split_column: bool = Field(
        True,
        description="Use the manifest's split column: train rows train, val rows validate, test rows are "
        "skipped.",
    )
    cache: bool = Field(
        True,
        description="Keep the preprocessed images in memory (load once, sample many); the only mode so far, "
        "False is refused.",
    )

    def resolved_patch_shape(self) -> tuple[int, ...]:
        """The patch shape, with the default for the input mode."""
        if self.patch_shape is not None:
            return tuple(int(p) for p in self.patch_shape)
        return (32, 64, 64) if self.input_mode == "3d" else (256, 256)


class ModelConfig(StrictModel):
    """Network architecture (built by :func:`stainfree.models.registry.build_model`)."""

    architecture: Literal["fnet_unet", "monai_unet", "attention_unet"] = Field(
        "fnet_unet", description="fnet-style U-Net, MONAI UNet or MONAI AttentionUnet."
    )
    spatial_dims: Literal[2, 3] = Field(3, description="2D or 3D network.")
    in_channels: int = Field(1, ge=1, description="Input channels.")
    out_channels: int = Field(1, ge=1, description="Output channels (classes for multiclass).")
    depth: int | None = Field(
        None, ge=1, le=7, description="Number of down-sampling steps; None = chosen by the recipe (fixed: 4)."
    )
    base_channels: int | None = Field(
        None,
        ge=1,
        description="Channels of the first level (doubled at each level); None = chosen by the recipe "
        "(fixed: 32).",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability.")
    norm: Literal["batch", "group", "instance"] = Field(
        "batch",
        description="fnet_unet: normalization after each convolution ('group' does not depend on the batch, "
        "which helps with batches of 1-4).",
    )
    residual: bool = Field(False, description="fnet_unet: residual double convolutions.")


class TrainConfig(StrictModel):
    """Optimisation, checkpoints and hardware of a training run."""

    task: Literal["regression", "binary", "multiclass"] = Field(
        "regression", description="What the network predicts."
    )
    loss: Literal["mse", "l1", "mse_ssim", "bce", "ce", "dice_ce"] | None = Field(
        None,
        description="Loss; None = mse (regression), bce (binary), ce (multiclass); mse_ssim = MSE + "
        "(1 - SSIM).",
    )
    pos_weight: float | None = Field(None, gt=0, description="Binary: weight of positive voxels in the BCE.")
    class_weights: list[float] | None = Field(None, description="Multiclass: one weight per class in the CE.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    batch_size: int | None = Field(
        None, ge=1, description="Patches per step; None = chosen by the recipe (fixed: 8)."
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Training iterations (optimizer steps); None = what fits max_time (measured on the first "
        "steps), or 1000 without a time budget.",
    )
    max_time: float | str | None = Field(
        None,
        description="Training time budget: seconds, or a duration such as '15m', '1h30m', '90s'. Training "
        "stops when it is spent; with max_steps None the step count (and so the learning-rate schedule) is "
        "sized to fit it.",
    )
    max_epochs: int | None = Field(
        None,
        ge=1,
        description="Optional cap in epochs; an epoch is as many patches as it takes to cover the training "
        "voxels once.",
    )
    val_every_n_steps: int | None = Field(
        None, ge=1, description="Validate every N steps; None = 20 times per run (at most every 500 steps)."
    )
    val_patches: int = Field(16, ge=1, description="Size of the fixed validation patch set.")
    checkpoint_every_n_steps: int | None = Field(
        None,
        ge=1,
        description="Save a checkpoint (and last.ckpt) every N steps (None: every 'checkpoint_every_minutes' "
        "of training, so that a fast GPU does not spend its time writing checkpoints).",
    )
    checkpoint_every_minutes: float = Field(
        2.0, gt=0.0, description="Minutes of training between checkpoints when no step interval is given."
    )
    keep_checkpoints: int = Field(
        3, ge=1, description="Periodic checkpoints kept (the newest; last.ckpt and best.ckpt besides)."
    )
    scheduler: Literal["none", "plateau", "cosine"] = Field(
        "cosine",
        description="Learning-rate schedule: 'cosine' (linear warm-up, then cosine decay to 1% of lr at "
        "max_steps), 'plateau' (reduce on a stalled monitor) or 'none'.",
    )
    warmup_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Cosine: share of the steps for warm-up."
    )
    plateau_factor: float = Field(0.3, gt=0, lt=1, description="Plateau: factor of each reduction.")
    plateau_patience: int = Field(
        5, ge=0, description="Plateau: validations without improvement before reducing."
    )
    min_lr: float = Field(1e-6, ge=0, description="Training stops once the learning rate falls below this.")
    monitor: Literal["auto", "val_loss", "val_r", "val_f1"] = Field(
        "auto",
        description="Metric of the best checkpoint, early stopping and the plateau schedule; 'auto' = val_r "
        "(Pearson r on the validation data) for regression, val_f1 for segmentation.",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many validations without improvement of monitor (None = never).",
    )
    ema_decay: float | None = Field(
        0.999,
        gt=0.0,
        lt=1.0,
        description="Exponential moving average of the weights (decay ramped up over the first steps, and "
        "at most 1 - 10 / max_steps so that it spans about the last tenth of a short run); validation and "
        "the bundle use the averaged weights. None = off.",
    )
    gradient_clip: float | None = Field(
        1.0, gt=0.0, description="Clip the gradient norm to this value (None = off)."
    )
    export: Literal["best", "last"] = Field(
        "best",
        description="Weights written to the bundle: the best checkpoint by 'monitor', or the last step. With "
        "monitor 'val_f1', a best F1 of 0 (nothing found at any check) exports the last step.",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation.")
    precision: Literal["auto", "32", "bf16-mixed"] = Field(
        "auto",
        description="Numerical precision: 'auto' is bf16 mixed precision on a GPU that computes bf16 "
        "(weights and the average stay float32), 32-bit otherwise (bf16-mixed on a CPU diverged to NaN in "
        "the demo's 3D nets; ask for it explicitly to try).",
    )
    accelerator: str = Field("auto", description="Lightning accelerator ('cpu', 'gpu', 'auto').")
    devices: int | str | list[int] = Field("auto", description="Lightning devices.")
    strategy: str = Field("auto", description="Lightning strategy (e.g. 'ddp').")
    num_nodes: int = Field(1, ge=1, description="Number of nodes.")
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description="Data-loader worker processes that cut and augment the next batches while the network "
        "computes (the patches are the same with any number: each is drawn from its own seed). 'auto': "
        "on a GPU up to 4 (one core is left to the trainer); on the CPU none, since a loader process would "
        "take a core from the network's own computation.",
    )
    seed: int = Field(0, description="Seed of weights, patches and augmentation.")
    init_from: Path | None = Field(
        None,
        description="Bundle whose weights start the training (fine-tuning, or a `stainfree pretrain` "
        "encoder): "
        "every weight whose name and shape fit is loaded, the rest start fresh.",
    )
    freeze_encoder: bool = Field(False, description="Do not train the encoder (down path).")

    @field_validator("max_time")
    @classmethod
    def _duration(cls, v: float | str | None) -> float | str | None:
        parse_duration(v)
        return v

    def resolved_loss(self) -> str:
        """The loss, with the default for the task."""
        return self.loss or {"regression": "mse", "binary": "bce", "multiclass": "ce"}[self.task]

    def resolved_monitor(self) -> str:
        """The monitor, with the default for the task."""
        if self.monitor != "auto":
            return self.monitor
        return "val_r" if self.task == "regression" else "val_f1"

    def max_seconds(self) -> float | None:
        """``max_time`` in seconds (None without a budget)."""
        return parse_duration(self.max_time)


def parse_duration(value: float | str | None) -> float | None:
    """Seconds of a duration: a number, or text such as '90', '90s', '15m', '1h30m', '2h'.

    Raises
    ------
    ValueError
        Text that is not a duration, or a duration <= 0.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        import re

        text = str(value).strip().lower().replace(" ", "")
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None:
            raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '15m', '1h30m')")
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + sec
    if seconds <= 0:
        raise ValueError(f"a duration must be > 0, got {value!r}")
    return seconds


class TrainingJob(StrictModel):
    """Everything a training run needs; ``stainfree train job.yaml``."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    name: str = Field("model", description="Name of the model; the bundle is <output_dir>/<name>.stainfree.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    output_dir: Path = Field(Path("runs/model"), description="Folder of checkpoints, logs and the bundle.")
    recipe: Literal["auto", "fixed"] = Field(
        "auto",
        description="How settings left empty (null) are chosen: 'auto' picks patch shape, batch size, "
        "network "
        "depth and width from the image sizes, the time budget (train.max_time) and the device; 'fixed' uses "
        "32x64x64 (3D) / 256x256 (2D) patches, batch 8, depth 4, 32 channels. Settings given are kept.",
    )


class ChannelStats(StrictModel):
    """Normalization statistics of one channel."""

    method: Literal["zscore", "percentile", "none"] = Field("none", description="Normalization method.")
    mean: float | None = Field(None, description="z-score: mean.")
    std: float | None = Field(None, description="z-score: standard deviation.")
    low: float | None = Field(None, description="percentile: value mapped to 0.")
    high: float | None = Field(None, description="percentile: value mapped to 1.")


class BundleConfig(StrictModel):
    """The description of a trained model stored beside its weights (``bundle.yaml``)."""

    version: int = Field(CONFIG_VERSION, description="Bundle format version.")
    stainfree_version: str = Field("", description="stainfree version that wrote the bundle.")
    name: str = Field("model", description="Model name.")
    task: Literal["regression", "binary", "multiclass"] = Field("regression", description="What it predicts.")
    spatial_dims: Literal[2, 3] = Field(3, description="2D or 3D network.")
    input_mode: Literal["3d", "2d", "zstack_to_2d"] = Field("3d", description="How images become inputs.")
    n_z: int | None = Field(None, description="zstack_to_2d: number of z planes the network expects.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network architecture.")
    signal_channels: list[ChannelRef] | None = Field(None, description="Input channels (names or indices).")
    target_channels: list[ChannelRef] | None = Field(None, description="Target channels (names or indices).")
    class_names: list[str] | None = Field(None, description="Output class names (segmentation).")
    input_transform: Literal["none", "ratiometric", "intensity_only"] = Field(
        "none", description="Input transform."
    )
    ratio_offset: float | tuple[float, float] | Literal["auto"] | None = Field(
        "auto", description="Ratiometric channel offset subtracted first."
    )
    ratio_background_threshold: float | None = Field(None, description="Ratiometric background threshold.")
    ratio_clip_percentile: float = Field(99.9, description="Ratiometric clip percentile.")
    ratio_normalization: Literal["image", "fixed", "median"] = Field(
        "image", description="Ratiometric: scaling of the ratio channel (see DataConfig)."
    )
    ratio_max: float = Field(3.0, gt=0, description="Ratiometric, 'fixed': the R/Y mapped to 1.")
    channel_alignment: Literal["none", "auto"] | tuple[float, float, float] = Field(
        "none",
        description="Ratiometric: red-onto-yellow translation applied before the ratio (see DataConfig).",
    )
    normalization: Literal["zscore", "percentile", "none"] = Field(
        "zscore", description="Input normalization."
    )
    percentile_range: tuple[float, float] = Field((1.0, 99.8), description="Percentile normalization range.")
    normalization_scope: Literal["image", "dataset"] = Field(
        "image", description="Per image or dataset statistics."
    )
    normalization_stats: list[ChannelStats] = Field(
        default_factory=list,
        description="Per network-input channel statistics averaged over the training images.",
    )
    target_normalization: Literal["zscore", "percentile", "none"] = Field(
        "none", description="How regression targets were normalized (predictions are in these units)."
    )
    target_stats: list[ChannelStats] = Field(
        default_factory=list, description="Per target channel statistics averaged over the training images."
    )
    voxel_size_um: tuple[float, float, float] | None = Field(
        None, description="Voxel size (z, y, x) the model was trained at (None = not resampled)."
    )
    patch_shape: list[int] = Field(default_factory=list, description="Training patch shape.")
    threshold: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Binary nets: probability threshold chosen at export (best pooled F1 over 0.02..0.98 on "
        "the whole validation images; the table is in training.threshold_f1); segment uses it unless "
        "given one. None = 0.5 (bundles written before it existed).",
    )
    training: dict[str, Any] = Field(
        default_factory=dict, description="Training summary (steps, losses, seed...)."
    )


class PredictConfig(StrictModel):
    """How a bundle is run over an image: tiles, overlap, blending, precision, device."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    tile: list[int] | None = Field(
        None,
        description="Tile (z, y, x) or (y, x); rounded up to what the network needs. None = the training "
        "patch or 32x128x128 (3D) / 256x256 (2D), whichever is larger.",
    )
    overlap: float = Field(
        0.1875, ge=0.0, lt=1.0, description="Fraction of a tile shared with its neighbours (3/16)."
    )
    sw_batch_size: int = Field(1, ge=1, description="Windows per forward pass.")
    bf16: bool | None = Field(
        None,
        description="bfloat16 autocast for the network (output stays float32); None = on where the device "
        "computes bf16 natively (a recent GPU; a CPU with AVX512-BF16 or AMX), else float32.",
    )
    compile: bool = Field(False, description="Run the network through torch.compile (eager if that fails).")
    device: str = Field("cpu", description="Torch device of the network ('cpu', 'cuda', 'cuda:1').")
    tta: bool = Field(
        False,
        description="Test-time augmentation: average each tile over its 8 flipped and turned Y-X views "
        "(8x the compute).",
    )
    uncertainty: bool = Field(
        False, description="With tta: write the per-voxel spread over the views as extra channels."
    )


class EvaluateConfig(StrictModel):
    """How predictions are scored against targets."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    task: Literal["regression", "binary", "multiclass"] = Field(
        "regression", description="What was predicted."
    )
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Probability threshold of binary predictions.")
    nmse_scale: Literal["truth_zscore", "both_zscore", "none"] = Field(
        "truth_zscore",
        description="Intensity scale of the NMSE: truth z-scored and prediction as is (stainfree "
        "predictions are in z-scored target units), both z-scored, or both raw.",
    )
