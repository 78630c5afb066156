"""Contacts within a distance (``contact_distance_nm`` / ``_voxels > 1``) of one block, for the block engine;
pure numpy.

:func:`~stainfree.quantify.contacts.measure_contacts` in distance mode pairs each voxel of A with the B object
of its nearest B voxel within the distance ``D`` (Euclidean distance transform), and each face of A with the B
object nearest to the voxel in front of it. Every such record belongs to one voxel of A: a block computes the
records on its region grown by a halo of ``ceil(D / spacing) + 1`` voxels per axis (so that every B voxel
within ``D`` of a voxel of the block, or of a voxel in front of one of its faces, lies in the window) with the
in-memory code, keeps those of its own voxels and sums them as integers: the sums over blocks are those of the
whole field, and the tables are formed from them as in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stainfree.quantify.contacts import _distance_records, _face_areas
from stainfree.quantify.maps import ObjectMap

__all__ = ["contact_halo", "distance_partials"]

Region = tuple[slice, ...]


def contact_halo(distance_um: float, spacing: Sequence[float] | np.ndarray) -> tuple[int, ...]:
    """Voxels per axis by which a block grows to find every record of its own voxels at ``distance_um``."""
    return tuple(math.ceil(float(distance_um) / float(s)) + 1 for s in spacing)


def distance_partials(
    layers: list[np.ndarray],
    core: Region,
    struct_of: np.ndarray,
    names: Sequence[str],
    spacing: Sequence[float] | np.ndarray,
    distance_um: float,
) -> dict[str, Any]:
    """The integer sums behind the contact tables (distance mode) of one block.

    Parameters
    ----------
    layers : list of ndarray
        The object-map layers (global ids) on the block grown by :func:`contact_halo` (clipped to the field).
    core : tuple of slice
        The block within the window.
    struct_of : ndarray
        Structure index of every global id (entry 0: -1).
    names : sequence of str
        Structure names.
    spacing : sequence of float
        (z, y, x) voxel size in um.
    distance_um : float
        The contact distance.

    Returns
    -------
    dict
        ``faces`` (n_s, n_s, ndim): contact faces of A towards B per ordered structure pair and axis;
        ``voxels`` (n_s * n_s): contact voxels per ordered pair; ``pairs``: object pair code
        (``min gid * n_ids + max gid``) -> contact faces per axis (zeros for a pair in contact by voxels
        only). An axis stands for its face area: axes of equal face areas share the first of them.
    """
    wshape = tuple(layers[0].shape)
    ndim = len(wshape)
    n_s = len(names)
    lut = np.asarray(struct_of, dtype=np.int64)
    n_obj = int(lut.size)
    layer_of: dict[int, int] = {}
    for li, layer in enumerate(layers):  # the structures with voxels in the window
        for s in np.unique(lut[np.unique(layer)]):
            if s >= 0:
                layer_of[int(s)] = li
    omap = ObjectMap(list(layers), lut, np.zeros(n_obj, dtype=np.int64), tuple(names), layer_of)
    vz, vy, vx = (float(v) for v in spacing)
    areas = _face_areas(wshape, (vz, vy, vx))
    sp = np.array([vz, vy, vx] if ndim == 3 else [vy, vx])
    src, dst, vox, area = _distance_records(omap, sp, areas, float(distance_um), locate=True)
    face = vox < 0
    where = np.unravel_index(np.where(face, -2 - vox, vox), wshape)
    own = np.ones(vox.size, dtype=bool)
    for k in range(ndim):
        own &= (where[k] >= core[k].start) & (where[k] < core[k].stop)
    src, dst, area, face = src[own], dst[own], area[own], face[own]
    sa, sb = lut[src], lut[dst]
    ax = np.zeros(area.size, dtype=np.int64)
    for k in range(ndim - 1, -1, -1):  # the first axis of each face area
        ax[area == areas[k]] = k
    faces = np.zeros((n_s, n_s, ndim), dtype=np.int64)
    np.add.at(faces, (sa[face], sb[face], ax[face]), 1)
    voxels = np.bincount(sa[~face] * n_s + sb[~face], minlength=n_s * n_s).astype(np.int64)
    code = np.minimum(src, dst) * n_obj + np.maximum(src, dst)
    uniq, inv = np.unique(code, return_inverse=True)
    per = np.zeros((uniq.size, ndim), dtype=np.int64)
    np.add.at(per, (inv[face], ax[face]), 1)
    return {"faces": faces, "voxels": voxels, "pairs": {int(c): per[i] for i, c in enumerate(uniq)}}
