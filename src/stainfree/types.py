"""Shared vocabulary: tasks, image metadata and the sample dictionary handed to models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias, TypedDict

import numpy as np

# Per-axis floats (voxel sizes, sigmas, spacings in z, y, x order): a tuple/list or a 1-D numpy array.
Floats: TypeAlias = Sequence[float] | np.ndarray


class Task(StrEnum):
    """What a network predicts."""

    regression = "regression"
    binary = "binary"
    multiclass = "multiclass"


@dataclass(frozen=True)
class ImageMeta:
    """Metadata of an image in canonical (T)(C)ZYX order.

    Attributes
    ----------
    axes : str
        Axis letters of the array, a subsequence of ``"TCZYX"`` (e.g. ``"CZYX"``, ``"ZYX"``, ``"YX"``).
    shape : tuple of int
        Shape of the array.
    dtype : str
        Numpy dtype name.
    voxel_size_um : tuple of float or None
        Physical size (z, y, x) in micrometres; an entry is None when unknown.
    channel_names : tuple of str
        One name per channel; an image without a C axis has one name (its own or ``"ch0"``).
    path : str
        Where the image came from ("" for in-memory arrays).
    """

    axes: str
    shape: tuple[int, ...]
    dtype: str
    voxel_size_um: tuple[float | None, float | None, float | None] = (None, None, None)
    channel_names: tuple[str, ...] = ()
    path: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def ndim_spatial(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return sum(a in "ZYX" for a in self.axes)


class Sample(TypedDict):
    """One training example: ``signal`` (C, [Z,] Y, X) float32 and ``target`` of the same spatial shape."""

    signal: np.ndarray
    target: np.ndarray


#: The 15 compartments, in this order everywhere (label id = index + 1; 0 means "no label").
COMPARTMENTS: tuple[str, ...] = (
    "nucleus",
    "cytosol",
    "extracellular",
    "er",
    "nuclear_membrane",
    "nuclear_reticulum",
    "golgi",
    "lipid_droplet",
    "mitochondria",
    "peroxisome",
    "early_endosome",
    "late_endosome",
    "lysosome",
    "plasma_membrane",
    "filopodia",
)


def compartment_id(name: str) -> int:
    """Label id (1-based) of a compartment name; raises KeyError with the known names otherwise."""
    try:
        return COMPARTMENTS.index(name) + 1
    except ValueError:
        raise KeyError(f"unknown compartment {name!r}; known: {', '.join(COMPARTMENTS)}") from None
