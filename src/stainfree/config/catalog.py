"""The organelle catalog: its networks, their output classes and the simulator labels behind them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stainfree.config.base import CONFIG_VERSION, StrictModel


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
    ratio_normalization: Literal["image", "fixed", "median"] = Field(
        "fixed",
        description="How every catalog net scales the ratio channel (see DataConfig.ratio_normalization): "
        "'fixed' keeps the absolute R/Y, the dye's fingerprint (benchmarks/ratio_normalization.py).",
    )
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
