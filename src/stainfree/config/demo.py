"""The end-to-end demo on simulated cells: sizes and budgets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stainfree.config.base import CONFIG_VERSION, StrictModel


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
    timelapse_frames: int = Field(
        6,
        ge=0,
        description="Frames of the demo's simulated time-lapse, segmented by the organelle networks, tracked "
        "(fission, fusion, contact events) and shown as an in-silico multi-colour movie (0: skip; 6 or more "
        "for events).",
    )
    timelapse_shape: tuple[int, int, int] = Field(
        (16, 96, 96), description="Size (z, y, x) in voxels of the time-lapse field."
    )
    timelapse_events: tuple[int, int, int] = Field(
        (2, 2, 2), description="Mitochondrial fissions, fusions and organelle contacts in the time-lapse."
    )
