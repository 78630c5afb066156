"""Object maps: connected components and the :class:`ObjectMap` of a field; cells derived from its structures.

Pure numpy/scipy. Every structure (compartment) of a field becomes a set of objects. All objects of a field
are held in one :class:`ObjectMap`: one or more int32 "layers" where each voxel holds the global id of the
object covering it (0 = none). Structures that never overlap share a layer (a semantic label map gives exactly
one layer); a structure that overlaps another one (user masks may) goes to a new layer. A whole structure
always lives in one layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from stainfree.errors import InputError

__all__ = [
    "NUCLEUS_STRUCTURES",
    "ObjectMap",
    "build_object_map",
    "derive_cells",
    "label_components",
    "object_map_from_label_map",
]

#: Structures whose union is "the nucleus" for distances.
NUCLEUS_STRUCTURES: tuple[str, ...] = ("nucleus", "nuclear_membrane", "nuclear_reticulum")


@dataclass
class ObjectMap:
    """All objects of one field.

    Attributes
    ----------
    layers : list of ndarray
        int32 maps of global object ids (0 = none), each the shape of the field; structures in one layer never
        overlap.
    structure_of : ndarray
        Structure index of each global id (entry 0, for "none", is -1).
    local_id : ndarray
        Instance id within its structure of each global id (entry 0 is 0).
    names : tuple of str
        Structure names; a structure index points into it.
    layer_of : dict
        Layer index of each structure index that has objects.
    """

    layers: list[np.ndarray]
    structure_of: np.ndarray
    local_id: np.ndarray
    names: tuple[str, ...]
    layer_of: dict[int, int] = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        """Number of objects."""
        return int(self.structure_of.size - 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of the field."""
        return tuple(self.layers[0].shape)

    def structure_map(self, layer: int) -> np.ndarray:
        """int16 map of structure indices of one layer (-1 = none)."""
        return self.structure_of.astype(np.int16)[self.layers[layer]]

    def structure_mask(self, names: Sequence[str]) -> np.ndarray:
        """Boolean union of the masks of the named structures (missing names are ignored)."""
        wanted = [i for i, n in enumerate(self.names) if n in set(names)]
        out = np.zeros(self.shape, dtype=bool)
        for idx in wanted:
            if idx in self.layer_of:
                lut = self.structure_of == idx
                lut[0] = False
                out |= lut[self.layers[self.layer_of[idx]]]
        return out


def _structure_element(ndim: int, connectivity: int) -> np.ndarray:
    if not 1 <= connectivity <= ndim:
        raise InputError(
            "connectivity", f"must be between 1 and {ndim} for {ndim}-D masks, got {connectivity}"
        )
    return ndi.generate_binary_structure(ndim, connectivity)


def label_components(
    mask: np.ndarray, *, connectivity: int = 3, min_size: int = 10
) -> tuple[np.ndarray, int]:
    """Connected components of a binary mask, small ones removed, relabelled 1..n.

    Parameters
    ----------
    mask : ndarray of bool
        2D or 3D mask.
    connectivity : int
        1 = face neighbours (6 in 3D), 2 = faces and edges (18), 3 = also corners (26); capped at
        ``mask.ndim``.
    min_size : int
        Components with fewer voxels are dropped.

    Returns
    -------
    labels : ndarray of int32
        Component ids 1..n, 0 = background.
    n : int
        Number of components kept.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndi.label(mask, structure=_structure_element(mask.ndim, min(connectivity, mask.ndim)))
    labels = labels.astype(np.int32, copy=False)
    if n == 0 or min_size <= 1:
        return labels, int(n)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts >= min_size
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels], int(keep.sum())


class _Builder:
    """Accumulates structures into layers of global object ids."""

    def __init__(self, shape: tuple[int, ...], names: Sequence[str]) -> None:
        self.shape = shape
        self.names = tuple(names)
        self.layers: list[np.ndarray] = []
        self.structure_of: list[np.ndarray] = [np.array([-1], dtype=np.int16)]
        self.local_id: list[np.ndarray] = [np.array([0], dtype=np.int64)]
        self.layer_of: dict[int, int] = {}
        self.n = 0

    def add(
        self,
        index: int,
        fg: np.ndarray,
        ranks: np.ndarray,
        local_ids: np.ndarray,
        box: tuple[slice, ...] | None = None,
    ) -> None:
        """Add one structure: ``fg`` its voxels (on ``box``), ``ranks`` 1..k per voxel, ``local_ids``."""
        k = int(local_ids.size)
        if k == 0:
            return
        box = box if box is not None else tuple(slice(None) for _ in self.shape)
        for li, layer in enumerate(self.layers):  # noqa: B007 - li is used after the loop
            if not np.any(layer[box][fg]):
                break
        else:
            self.layers.append(np.zeros(self.shape, dtype=np.int32))
            li = len(self.layers) - 1
        if self.n + k >= np.iinfo(np.int32).max:
            raise InputError("masks", "more than 2^31 objects in one field")
        target = self.layers[li][box]
        target[fg] = ranks.astype(np.int32) + self.n
        self.structure_of.append(np.full(k, index, dtype=np.int16))
        self.local_id.append(np.asarray(local_ids, dtype=np.int64))
        self.layer_of[index] = li
        self.n += k

    def add_instances(self, index: int, instances: np.ndarray, min_size: int) -> None:
        fg = instances > 0
        if not fg.any():
            return
        vals = instances[fg]
        uniq, inverse, counts = np.unique(vals, return_inverse=True, return_counts=True)
        keep = counts >= max(min_size, 1)
        ranks: np.ndarray
        if not keep.all():
            fg[fg] = keep[inverse]
            rank_of = np.cumsum(keep)
            ranks = rank_of[inverse[keep[inverse]]]
        else:
            ranks = inverse + 1
        self.add(index, fg, ranks, uniq[keep].astype(np.int64))

    def add_mask(
        self,
        index: int,
        mask: np.ndarray,
        connectivity: int,
        min_size: int,
        box: tuple[slice, ...] | None = None,
    ) -> None:
        if not mask.any():
            return
        ndim = mask.ndim
        labels, n = ndi.label(mask, structure=_structure_element(ndim, min(connectivity, ndim)))
        fg = mask.copy()
        vals = labels[fg]
        del labels
        counts = np.bincount(vals, minlength=n + 1)
        keep = counts >= max(min_size, 1)
        keep[0] = False
        rank = np.cumsum(keep) * keep
        ranks = rank[vals]
        if not keep[1:].all():
            fg[fg] = ranks > 0
            ranks = ranks[ranks > 0]
        self.add(index, fg, ranks, np.arange(1, int(keep.sum()) + 1, dtype=np.int64), box)

    def build(self) -> ObjectMap:
        layers = self.layers or [np.zeros(self.shape, dtype=np.int32)]
        return ObjectMap(
            layers=layers,
            structure_of=np.concatenate(self.structure_of),
            local_id=np.concatenate(self.local_id),
            names=self.names,
            layer_of=dict(self.layer_of),
        )


def build_object_map(
    structures: Mapping[str, np.ndarray | Callable[[], np.ndarray]],
    *,
    instances: bool = False,
    connectivity: int = 3,
    min_size: int = 10,
) -> ObjectMap:
    """Objects of every structure of one field.

    Parameters
    ----------
    structures : mapping of name -> array (or a zero-argument callable returning it, to keep memory low)
        Binary masks (``instances=False``; objects are connected components) or instance-id maps
        (``instances=True``; each id > 0 is one object and keeps its id). All arrays share one 2D/3D shape.
    instances : bool
        Whether the arrays are instance maps.
    connectivity : int
        Connectivity of connected components (1 = faces, ndim = faces, edges and corners).
    min_size : int
        Objects with fewer voxels are dropped (also for instance maps).

    Returns
    -------
    ObjectMap
    """
    names = tuple(structures)
    builder: _Builder | None = None
    for index, name in enumerate(names):
        value = structures[name]
        arr = np.asarray(value() if callable(value) else value)
        if builder is None:
            builder = _Builder(arr.shape, names)
        elif arr.shape != builder.shape:
            raise InputError(
                name, f"mask shape {arr.shape} differs from the first structure's {builder.shape}"
            )
        if arr.ndim not in (2, 3):
            raise InputError(name, f"a mask must be 2D or 3D, got {arr.ndim} dimensions")
        if instances:
            builder.add_instances(index, arr, min_size)
        else:
            builder.add_mask(index, arr.astype(bool, copy=False), connectivity, min_size)
    if builder is None:
        raise InputError("masks", "no structures given")
    return builder.build()


def object_map_from_label_map(
    label_map: np.ndarray,
    names: Sequence[str],
    *,
    connectivity: int = 3,
    min_size: int = 10,
) -> ObjectMap:
    """Objects from a semantic label map (value i = ``names[i-1]``, 0 = none); one layer.

    Each structure is labelled on its own bounding box only (all boxes from one pass of
    :func:`scipy.ndimage.find_objects`).
    """
    label_map = np.asarray(label_map)
    if not np.issubdtype(label_map.dtype, np.integer):
        if not np.all(np.mod(label_map, 1) == 0):
            raise InputError("label map", "values must be integers (label ids)")
        label_map = label_map.astype(np.int64)
    top = int(label_map.max()) if label_map.size else 0
    if top > len(names) or (label_map.size and int(label_map.min()) < 0):
        raise InputError(
            "label map", f"values must lie in 0..{len(names)} (one per structure name), found {top}"
        )
    if label_map.ndim not in (2, 3):
        raise InputError("label map", f"must be 2D or 3D, got {label_map.ndim} dimensions")
    builder = _Builder(label_map.shape, names)
    boxes = ndi.find_objects(label_map) if top > 0 else []  # one pass: each structure's bounding box
    for i in range(len(names)):
        if i < len(boxes) and boxes[i] is not None:
            box = boxes[i]
            builder.add_mask(i, label_map[box] == i + 1, connectivity, min_size, box)
    return builder.build()


def derive_cells(
    omap: ObjectMap, *, extracellular: str = "extracellular", min_size: int = 1000
) -> np.ndarray:
    """A cell-id map from the structures: non-extracellular voxels, split between nuclei by watershed.

    Cells are the connected components (face connectivity) of all voxels covered by any structure other than
    ``extracellular``. A component holding two or more nuclei (components of :data:`NUCLEUS_STRUCTURES`) is
    split by a watershed seeded with its nuclei on a flat image, so each voxel goes to the geodesically
    nearest nucleus (on the component's bounding box only). Components (and parts) smaller than ``min_size``
    voxels are not cells (0).

    Returns
    -------
    ndarray of int32
        Cell ids 1..n, 0 = outside any cell.
    """
    others = [n for n in omap.names if n != extracellular]
    fg = omap.structure_mask(others)
    cells, n_cells = label_components(fg, connectivity=1, min_size=min_size)
    nuclei, n_nuc = label_components(
        omap.structure_mask(NUCLEUS_STRUCTURES) & (cells > 0), connectivity=1, min_size=max(1, min_size // 10)
    )
    if n_nuc < 2:
        return cells
    # nuclei per cell component, from the cell id under each nucleus' first voxel
    owner = np.zeros(n_nuc + 1, dtype=np.int64)
    for k, sl in enumerate(ndi.find_objects(nuclei), start=1):
        where = np.argwhere(nuclei[sl] == k)[0] + [s.start for s in sl]
        owner[k] = cells[tuple(where)]
    per_cell = np.bincount(owner[1:], minlength=n_cells + 1)
    crowded = np.flatnonzero(per_cell >= 2)
    if crowded.size == 0:
        return cells
    from skimage.segmentation import watershed

    out = cells.copy()
    next_id = n_cells + 1
    cell_slices = ndi.find_objects(cells)
    for c in crowded:
        sl = cell_slices[c - 1]
        region = cells[sl] == c
        markers = np.where(region, nuclei[sl], 0)
        # a flat image floods in breadth-first order: each voxel goes to the geodesically nearest nucleus
        split = watershed(np.zeros(region.shape, np.uint8), markers=markers, mask=region)
        ids = np.unique(split[split > 0])
        lut = np.zeros(int(split.max()) + 1, dtype=np.int32)
        lut[ids] = np.arange(next_id, next_id + ids.size, dtype=np.int32)
        lut[ids[0]] = c  # the first part keeps the component's id
        next_id += ids.size
        view = out[sl]
        view[region] = lut[split[region]]
    # number 1..n, dropping fragments smaller than min_size
    counts = np.bincount(out.ravel())
    keep = counts >= min_size
    keep[0] = False
    lut = np.zeros(counts.size, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[out]
