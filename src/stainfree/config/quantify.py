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
    link_method: Literal["overlap", "centroid", "id", "laptrack"] = Field(
        "overlap",
        description="Frame-to-frame linking: maximum voxel IoU (with fission / fusion from the overlaps), "
        "nearest centroid (Hungarian), equal instance ids (instance maps with persistent ids, e.g. simulator "
        "ground truth), or laptrack (centroids, gap closing, split / merge events).",
    )
    link_gap_frames: int = Field(
        2, ge=0, le=10, description="Frames a track may skip ('laptrack' gap closing; 0 = none)."
    )
    event_min_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Fission / fusion ('overlap'): an object feeds one in the next frame when they share at "
        "least this fraction of the smaller one's voxels.",
    )
    flicker_frames: int = Field(
        2, ge=0, description="A fission undone by a fusion within this many frames is flicker: both dropped."
    )
    contact_max_gap_frames: int = Field(
        1, ge=0, description="Contact events: runs separated by at most this many frames are one event."
    )
    contact_min_frames: int = Field(
        1, ge=1, description="Contact events shorter than this many frames (start to end) are dropped."
    )
    link_max_distance_um: float = Field(
        2.0,
        gt=0,
        description="Largest centroid displacement between frames linked ('centroid', 'laptrack'; also a "
        "laptrack split / merge).",
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
