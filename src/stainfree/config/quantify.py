"""Organelle quantification: objects, contacts, tracks and contact events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from stainfree.config.base import CONFIG_VERSION, StrictModel


class QuantifyConfig(StrictModel):
    """Organelle quantification: objects, contacts and, for time-lapses, tracks and contact events."""

    version: int = Field(CONFIG_VERSION, description="Configuration format version.")
    min_size_voxels: int = Field(10, ge=1, description="Objects with fewer voxels are dropped.")
    channel_alignment: Literal["none", "auto"] | tuple[float, float, float] = Field(
        "auto",
        description="A Nile Red image (--nilered): translation of red onto yellow before the ratio ('auto' "
        "estimated per frame, (z, y, x) pixels, or 'none'); the shifts used go to quantify.json.",
    )
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

    def contact_distance_um(self, voxel_size_um: Sequence[float]) -> float | None:
        """Contact distance in um, or None for face adjacency."""
        if self.contact_distance_nm is not None:
            return self.contact_distance_nm / 1000.0
        if self.contact_distance_voxels > 1:
            return self.contact_distance_voxels * float(min(voxel_size_um))
        return None
