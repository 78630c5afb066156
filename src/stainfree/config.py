"""Configuration: pydantic v2 models (``extra="forbid"``) with YAML load and save.

Every top-level configuration carries a ``version`` so that files written by an older stainfree can be
recognised.
Sections below are grouped by the part of the pipeline that owns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stainfree.errors import ConfigError
from stainfree.io.atomic import write_text

CONFIG_VERSION = 1

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def load_yaml(cls: type[M], path: str | Path) -> M:
    """Load a configuration of type ``cls`` from a YAML file, with a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return validate(cls, data, source=str(path))


def validate(cls: type[M], data: dict[str, Any], source: str = "configuration") -> M:
    """Validate ``data`` into ``cls``, turning pydantic's report into one readable ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def resolve(
    cls: type[M], config: M | str | Path | None = None, source: str = "options", **overrides: Any
) -> M:
    """A configuration from an instance, a YAML path or None (the defaults), with ``overrides`` validated in.

    ``source`` names the overrides in an error message (e.g. ``"simulate options"``).
    """
    if config is None:
        cfg = cls()
    elif isinstance(config, str | Path):
        cfg = load_yaml(cls, config)
    else:
        cfg = config
    if overrides:
        cfg = validate(cls, {**cfg.model_dump(), **overrides}, source=source)
    return cfg


def save_yaml(config: BaseModel, path: str | Path) -> Path:
    """Save a configuration as YAML (atomically) and return the path."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return write_text(path, text)


# ------------------------------------------------------------------------------------------------------------
# Simulation (owner: stainfree.simulate)
# ------------------------------------------------------------------------------------------------------------

# <simulation-configs>

#: Fluorescence targets that are not one compartment; any name of ``stainfree.types.COMPARTMENTS`` works too.
SIMULATION_TARGETS: tuple[str, ...] = ("dna", "membrane", "mitochondria", "er")


class SimulationConfig(StrictModel):
    """The digital cell: how many fields, which microscope, which stains, how much noise, how much motion.

    Sizes are physical (micrometres); the microscope profile sets voxel size, PSF and camera unless set here.
    """

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    seed: int = Field(0, ge=0, description="Master seed; the same config and seed give byte-identical files.")
    n_fields: int = Field(4, ge=1, le=10_000, description="Number of fields of view (one folder each).")
    shape: tuple[int, int, int] = Field((32, 256, 256), description="Field size (z, y, x) in voxels.")
    voxel_size_um: tuple[float, float, float] | None = Field(
        None,
        description="Voxel size (z, y, x) in um; None takes the microscope's "
        "(spinning_disk: 0.29, 0.108, 0.108; widefield: 0.3, 0.13, 0.13).",
    )
    cells_per_field: tuple[int, int] = Field((1, 3), description="Inclusive range of cells per field.")
    cell_shape: Literal["round", "elongated", "spread", "mixed"] = Field(
        "round", description="Cell morphology; 'mixed' draws one of the three for every cell."
    )
    microscope: Literal["spinning_disk", "widefield"] = Field(
        "spinning_disk",
        description="Microscope profile: objective NA, pixel size, PSF, camera noise, Nile Red ratio scale, "
        "chromatic shift.",
    )
    targets: list[str] = Field(
        default_factory=lambda: list(SIMULATION_TARGETS),
        description="Fluorescence channels: 'dna', 'membrane', 'mitochondria', 'er' or any compartment name.",
    )
    photons: dict[str, float] = Field(
        default_factory=lambda: {"dna": 120.0, "membrane": 150.0, "mitochondria": 100.0, "er": 80.0},
        description="Expected photons per voxel inside a large labelled structure, per target (others: "
        "default_photons).",
    )
    default_photons: float = Field(80.0, gt=0, description="Photon level of targets missing from 'photons'.")
    background_photons: float = Field(3.0, ge=0, description="Uniform background photons per voxel.")
    read_noise: float | None = Field(
        None, ge=0, description="Camera read noise (electrons rms); None takes the microscope's."
    )
    offset: float = Field(100.0, ge=0, description="Camera offset (counts) added to every voxel.")
    brightfield_photons: float = Field(
        2000.0, gt=0, description="Photons per voxel of the bright-field illumination."
    )
    nilered_photons: float = Field(
        300.0, gt=0, description="Photons (yellow + red) per voxel in a lipid droplet, the brightest class."
    )
    gfp_structure: str | None = Field(
        None, description="Compartment or target shown in an extra 'gfp' Nile Red channel (None: no gfp)."
    )
    gfp_photons: float = Field(100.0, gt=0, description="Photons per voxel of the gfp-labelled structure.")
    bleed_through: float = Field(
        0.05, ge=0, le=1, description="Fraction of the Nile Red yellow signal bleeding into the gfp channel."
    )
    n_frames: int = Field(1, ge=1, le=1000, description="Time points per field (T > 1 makes a time-lapse).")
    frame_interval_s: float = Field(2.0, gt=0, description="Seconds between frames.")
    diffusion_um2_s: float = Field(
        0.01, ge=0, description="Diffusion coefficient of vesicles (um^2/s); mitochondria, Golgi: 5x less."
    )
    directed_speed_um_s: float = Field(
        0.1, ge=0, description="Speed (um/s) of the directed (motor-driven) vesicles."
    )
    directed_fraction: float = Field(
        0.3, ge=0, le=1, description="Fraction of endosomes and lysosomes with directed motion."
    )
    output_format: Literal["ome-tiff", "ome-zarr"] = Field("ome-tiff", description="Image file format.")
    val_fraction: float = Field(
        0.25, ge=0, lt=1, description="Fraction of fields marked 'val' in the manifest (the last ones)."
    )

    @field_validator("shape")
    @classmethod
    def _shape_large_enough(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if v[0] < 8 or v[1] < 32 or v[2] < 32:
            raise ValueError(f"shape {v} too small: need at least (8, 32, 32)")
        return v

    @field_validator("cells_per_field")
    @classmethod
    def _cells_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 12:
            raise ValueError(f"cells_per_field {v} must be a range (lo, hi) with 1 <= lo <= hi <= 12")
        return v

    @field_validator("voxel_size_um")
    @classmethod
    def _positive_voxels(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and min(v) <= 0:
            raise ValueError(f"voxel_size_um {v} must be positive")
        return v

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, v: list[str]) -> list[str]:
        from stainfree.types import COMPARTMENTS

        bad = [t for t in v if t not in SIMULATION_TARGETS and t not in COMPARTMENTS]
        if bad:
            raise ValueError(f"unknown target(s) {bad}; use {list(SIMULATION_TARGETS)} or a compartment name")
        if len(set(v)) != len(v):
            raise ValueError(f"targets {v} repeat a name")
        return v

    @field_validator("gfp_structure")
    @classmethod
    def _known_gfp(cls, v: str | None) -> str | None:
        from stainfree.types import COMPARTMENTS

        if v is not None and v not in SIMULATION_TARGETS and v not in COMPARTMENTS:
            raise ValueError(f"unknown gfp_structure {v!r}")
        return v


# ------------------------------------------------------------------------------------------------------------
# Data, model, training, prediction (owner: virtual staining machinery, shared by segmentation)
# ------------------------------------------------------------------------------------------------------------

# <ml-configs>  (training helper: data, model, training, bundle configs)

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


# <inference-configs>  (inference helper: prediction and evaluation configs)


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


# ------------------------------------------------------------------------------------------------------------
# Segmentation: ratiometric preprocessing, organelle catalog (owner: segmentation)
# ------------------------------------------------------------------------------------------------------------

# <segmentation-configs>


class CatalogClass(StrictModel):
    """One output class of a catalog network and the simulator labels that make its target."""

    name: str = Field(description="Compartment name (one of stainfree.types.COMPARTMENTS).")
    from_labels: list[str] | None = Field(
        None,
        description="Simulator compartments whose voxels form this class's target; None = the compartment "
        "itself.",
    )


class CatalogNetwork(StrictModel):
    """One network of the organelle catalog: a binary net (one compartment) or a multi-class net."""

    name: str = Field(description="Short network name, e.g. 'LD', 'ER', 'VOLUME'.")
    task: Literal["binary", "multiclass"] = Field(description="Binary (one compartment) or multi-class.")
    classes: list[CatalogClass] = Field(
        description="Foreground classes in output order (binary: exactly one); class ids start at 1 when the "
        "net has a background class, at 0 otherwise."
    )
    background_class: bool = Field(
        True, description="Multi-class: class 0 is 'none of these' (False when the classes fill the volume)."
    )
    pos_weight: float | None = Field(None, gt=0, description="Binary: weight of positive voxels in the BCE.")
    class_weights: list[float] | None = Field(
        None, description="Multi-class: one CE weight per output class, background first when present."
    )
    input_transform: Literal["ratiometric", "intensity_only"] = Field(
        "ratiometric", description="Inputs: (intensity, ratio) of Nile Red, or intensity only (ablation)."
    )
    spatial_dims: Literal[2, 3] = Field(3, description="2D or 3D network.")
    patch_shape: list[int] = Field(
        default_factory=lambda: [24, 256, 256], description="Training patch (z, y, x) in 3D or (y, x) in 2D."
    )
    loss: Literal["bce", "ce", "dice_ce"] | None = Field(None, description="Loss; None = bce (binary) / ce.")
    foreground_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the training patches centred on one of the net's structures (a class drawn "
        "uniformly, then one of its voxels): rare organelles are otherwise missing from most patches.",
    )

    @property
    def n_outputs(self) -> int:
        """Output channels of the network (1 for binary)."""
        return 1 if self.task == "binary" else len(self.classes) + int(self.background_class)

    @property
    def output_names(self) -> list[str]:
        """Class names in output order (background first when present; binary: the compartment)."""
        names = [c.name for c in self.classes]
        return names if self.task == "binary" or not self.background_class else ["background", *names]


class OrganelleCatalog(StrictModel):
    """The versioned organelle catalog: which network segments which compartment (packaged YAML)."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    catalog_version: str = Field("organelles_v1", description="Name and version of this catalog.")
    architecture: Literal["fnet_unet", "monai_unet", "attention_unet"] = Field(
        "attention_unet", description="Network architecture of every catalog net."
    )
    depth: int = Field(4, ge=1, le=7, description="Down-sampling steps of each net.")
    base_channels: int = Field(16, ge=1, description="Channels of the first level of each net.")
    label_priority: list[str] = Field(
        description="Compartments from highest to lowest priority: where masks overlap the label map takes "
        "the first. Must list each of the 15 compartments once."
    )
    networks: list[CatalogNetwork] = Field(
        description="The networks; together they cover the 15 compartments."
    )

    def network_of(self, compartment: str) -> CatalogNetwork:
        """The network that segments ``compartment`` (KeyError when none does)."""
        for net in self.networks:
            if any(c.name == compartment for c in net.classes):
                return net
        raise KeyError(f"no network of catalog {self.catalog_version} segments {compartment!r}")


# ------------------------------------------------------------------------------------------------------------
# Quantification (owner: stainfree.quantify)
# ------------------------------------------------------------------------------------------------------------

# <quantify-configs>


class QuantifyConfig(StrictModel):
    """Organelle quantification: objects, contacts and, for time-lapses, tracks and contact events."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    min_size_voxels: int = Field(10, ge=1, description="Objects with fewer voxels are dropped.")
    connectivity: int = Field(
        3, ge=1, le=3, description="Connected components: 1 = faces (6 in 3D), 2 = +edges (18), 3 = +corners."
    )
    contact_distance_voxels: int = Field(
        1,
        ge=1,
        description="Contact distance in voxels: 1 = face-adjacent voxels (exact shared faces); n > 1 = "
        "within n times the smallest voxel size (distance transform). Ignored if contact_distance_nm is set.",
    )
    contact_distance_nm: float | None = Field(
        None, gt=0, description="Contact distance in nanometres (distance transform with the voxel size)."
    )
    structures: list[str] | None = Field(
        None, description="Structures to quantify (default: every structure of the input)."
    )
    frame_interval_s: float = Field(1.0, gt=0, description="Seconds between frames of a time-lapse.")
    link_method: Literal["overlap", "centroid", "id"] = Field(
        "overlap",
        description="Frame-to-frame linking: maximum voxel IoU, nearest centroid (Hungarian), or equal "
        "instance ids (instance maps with persistent ids, e.g. simulator ground truth).",
    )
    link_max_distance_um: float = Field(
        2.0, gt=0, description="Largest centroid displacement between frames linked ('centroid')."
    )
    link_min_iou: float = Field(0.05, ge=0, le=1, description="Smallest IoU linked ('overlap').")
    surface_smoothing_voxels: float = Field(
        1.0, ge=0, description="Gaussian sigma (voxels) applied to each object's mask before marching cubes."
    )
    derive_cells: bool = Field(
        True, description="Without a cell map: cells = non-extracellular components split between nuclei."
    )
    figures: bool = Field(True, description="Write PNG figures beside the tables.")

    def contact_distance_um(self, voxel_size_um: tuple[float, float, float]) -> float | None:
        """Contact distance in um, or None for face adjacency."""
        if self.contact_distance_nm is not None:
            return self.contact_distance_nm / 1000.0
        if self.contact_distance_voxels > 1:
            return self.contact_distance_voxels * float(min(voxel_size_um))
        return None


# ------------------------------------------------------------------------------------------------------------
# The demo (owner: lead)
# ------------------------------------------------------------------------------------------------------------


class DemoConfig(StrictModel):
    """The end-to-end demo on simulated cells: sizes and budgets for a few minutes on 2 CPU cores."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    seed: int = Field(0, ge=0, description="Seed of the simulation and of every training run.")
    n_fields: int = Field(
        6, ge=2, description="Simulated fields; the last quarter (at least one) is held out."
    )
    shape: tuple[int, int, int] = Field((32, 128, 128), description="Field size (z, y, x) in voxels.")
    structures: list[str] = Field(
        ["dna", "membrane"], min_length=1, description="Virtual-staining targets (one model each)."
    )
    staining_steps: int = Field(200, ge=1, description="Training steps of each virtual-staining model.")
    staining_voxel_size_um: tuple[float, float, float] | None = Field(
        (0.29, 0.29, 0.29), description="Voxel size the staining models work at (fnet's isotropic 0.29 um)."
    )
    staining_patch: list[int] = Field(
        [16, 32, 32], description="Training patch (z, y, x) of the staining models."
    )
    staining_depth: int = Field(3, ge=1, description="U-Net depth of the staining models.")
    staining_channels: int = Field(16, ge=1, description="U-Net base channels of the staining models.")
    batch_size: int = Field(4, ge=1, description="Patches per training step.")
    organelle_nets: list[str] = Field(
        ["LD", "PM", "VOLUME"],
        description="Catalog networks trained for the segmentation step (empty: skip).",
    )
    organelle_steps: int = Field(400, ge=1, description="Training steps of each organelle network.")
    organelle_loss: Literal["bce", "ce", "dice_ce"] | None = Field(
        "dice_ce",
        description="Loss of the organelle networks (None: the catalog's weighted BCE/CE). Batch Dice + "
        "weighted CE learns rare organelles within a short CPU budget, where the weighted losses alone still "
        "predict nothing.",
    )
    organelle_lr: float = Field(3e-3, gt=0, description="Learning rate of the organelle networks.")
    threads: int | None = Field(
        1,
        ge=1,
        description="torch intra-op threads during the demo (None: torch's default). The demo's small "
        "networks run fastest on one thread; on a busy small machine several can be many times slower.",
    )
    quantify: bool = Field(True, description="Quantify the segmented (and the true) organelles.")
