"""Masks -> objects: the public face of :mod:`~stainfree.quantify.maps` (object maps, components, cells),
:mod:`~stainfree.quantify.measure` (per-object measurements) and :mod:`~stainfree.quantify.summaries`
(per-structure and per-cell summaries).

The conventions of the measurements are in :mod:`stainfree.quantify.measure` and in the column descriptions
of :data:`OBJECT_COLUMNS`.
"""

from __future__ import annotations

from stainfree.quantify.maps import (
    NUCLEUS_STRUCTURES,
    ObjectMap,
    build_object_map,
    derive_cells,
    label_components,
    object_map_from_label_map,
)
from stainfree.quantify.measure import OBJECT_COLUMNS, distance_transform, measure_objects, mesh_surface
from stainfree.quantify.summaries import (
    CELL_COLUMNS,
    STRUCTURE_COLUMNS,
    cell_structure_volumes,
    cell_summary,
    cell_volumes,
    structure_summary,
)

__all__ = [
    "CELL_COLUMNS",
    "NUCLEUS_STRUCTURES",
    "OBJECT_COLUMNS",
    "STRUCTURE_COLUMNS",
    "ObjectMap",
    "build_object_map",
    "cell_structure_volumes",
    "cell_summary",
    "cell_volumes",
    "derive_cells",
    "distance_transform",
    "label_components",
    "measure_objects",
    "mesh_surface",
    "object_map_from_label_map",
    "structure_summary",
]
