"""Virtual staining and segmentation networks: data, augmentation, model, training, bundle, prediction and
evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from stainfree.config.base import CONFIG_VERSION, StrictModel

ChannelRef = str | int


class AugmentConfig(StrictModel):
    """Random augmentation of training patches (MONAI dictionary transforms; masks use nearest neighbour)."""

    enabled: bool = Field(False, description="Augment training patches (validation patches never are).")
    prob: float = Field(0.5, ge=0.0, le=1.0, description="Probability of each random transform.")
    rotation_degrees: float = Field(
        15.0, ge=0.0, le=180.0, description="Maximum in-plane (Y-X) rotation, degrees, either direction."
    )
    scale_range: tuple[float, float] = Field((0.9, 1.1), description="Range of the random zoom factor.")
    flip_axes: list[int] = Field(
        default_factory=lambda: [-2, -1],
        description="Spatial axes that may be flipped (negative: from the end).",
    )
    gain_range: tuple[float, float] = Field(
        (0.75, 1.5), description="Range of a random multiplicative intensity gain (1, 1 switches it off)."
    )
    gain_channels: list[int] | None = Field(
        None,
        description="Input channels the gain applies to; None = all channels, except that the ratio channel "
        "of a ratiometric input never gets a gain.",
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
        None, description="Training patch (z, y, x) or (y, x); None = 32x64x64 in 3D, 256x256 in 2D."
    )
    val_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Fraction of training images held out for validation when the manifest has no 'val' rows "
        "(with a single image, validation patches come from it).",
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
    depth: int = Field(4, ge=1, le=7, description="Number of down-sampling steps.")
    base_channels: int = Field(32, ge=1, description="Channels of the first level (doubled at each level).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability.")


class TrainConfig(StrictModel):
    """Optimisation, checkpoints and hardware of a training run."""

    task: Literal["regression", "binary", "multiclass"] = Field(
        "regression", description="What the network predicts."
    )
    loss: Literal["mse", "l1", "bce", "ce", "dice_ce"] | None = Field(
        None, description="Loss; None = mse (regression), bce (binary), ce (multiclass)."
    )
    pos_weight: float | None = Field(None, gt=0, description="Binary: weight of positive voxels in the BCE.")
    class_weights: list[float] | None = Field(None, description="Multiclass: one weight per class in the CE.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    batch_size: int = Field(8, ge=1, description="Patches per step.")
    max_steps: int = Field(1000, ge=1, description="Training iterations (optimizer steps).")
    max_epochs: int | None = Field(
        None,
        ge=1,
        description="Optional cap in epochs; an epoch is as many patches as it takes to cover the training "
        "voxels once.",
    )
    val_every_n_steps: int = Field(100, ge=1, description="Validate every N steps.")
    val_patches: int = Field(16, ge=1, description="Size of the fixed validation patch set.")
    checkpoint_every_n_steps: int = Field(
        100, ge=1, description="Save a checkpoint (and last.ckpt) every N steps."
    )
    scheduler: Literal["none", "plateau"] = Field("none", description="Learning-rate schedule.")
    plateau_factor: float = Field(0.3, gt=0, lt=1, description="Plateau: factor of each reduction.")
    plateau_patience: int = Field(
        5, ge=0, description="Plateau: validations without improvement before reducing."
    )
    min_lr: float = Field(1e-6, ge=0, description="Training stops once the learning rate falls below this.")
    monitor: Literal["val_loss", "val_f1"] = Field(
        "val_loss", description="Metric of the best checkpoint and of the plateau schedule."
    )
    export: Literal["best", "last"] = Field(
        "best",
        description="Weights written to the bundle: the best checkpoint by 'monitor', or the last step. With "
        "monitor 'val_f1', a best F1 of 0 (nothing found at any check) exports the last step.",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation.")
    precision: Literal["32", "bf16-mixed"] = Field("32", description="Numerical precision.")
    accelerator: str = Field("auto", description="Lightning accelerator ('cpu', 'gpu', 'auto').")
    devices: int | str | list[int] = Field("auto", description="Lightning devices.")
    strategy: str = Field("auto", description="Lightning strategy (e.g. 'ddp').")
    num_nodes: int = Field(1, ge=1, description="Number of nodes.")
    num_workers: int = Field(0, ge=0, description="Data-loader worker processes.")
    seed: int = Field(0, description="Seed of weights, patches and augmentation.")
    init_from: Path | None = Field(None, description="Bundle whose weights start the training (fine-tuning).")
    freeze_encoder: bool = Field(False, description="Do not train the encoder (down path).")

    def resolved_loss(self) -> str:
        """The loss, with the default for the task."""
        return self.loss or {"regression": "mse", "binary": "bce", "multiclass": "ce"}[self.task]


class TrainingJob(StrictModel):
    """Everything a training run needs; ``stainfree train job.yaml``."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    name: str = Field("model", description="Name of the model; the bundle is <output_dir>/<name>.stainfree.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    output_dir: Path = Field(Path("runs/model"), description="Folder of checkpoints, logs and the bundle.")


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
    overlap: float = Field(0.25, ge=0.0, lt=1.0, description="Fraction of a tile shared with its neighbours.")
    sw_batch_size: int = Field(1, ge=1, description="Tiles per forward pass.")
    bf16: bool = Field(False, description="bfloat16 autocast for the network (output stays float32).")
    device: str = Field("cpu", description="Torch device of the network ('cpu', 'cuda', 'cuda:1').")


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
