"""Contacts between organelles: for every ordered pair of structures (A, B), how much of A touches B; pure
numpy.

Two modes:

* **adjacency** (default, ``distance_um=None``): a voxel of A is in contact with B when one of its 6 face
  neighbours belongs to B (or, for overlapping masks, when it is also a B voxel). The contact *area* is the
  summed area of the voxel faces shared by A and B (a z-face is ``vy * vx``, a y-face ``vz * vx``, an x-face
  ``vz * vy``), so two touching boxes give exactly their shared face. Everything is found in one pass over
  the face pairs of the object map, fully vectorised.
* **distance** (``distance_um=D``): a voxel of A is in contact with B when its centre lies within ``D`` of the
  centre of a B voxel (Euclidean distance transform with ``sampling=voxel_size``) or when it is
  face-adjacent to B. A face of A (between an A voxel and a non-A voxel ``v``, along an axis of spacing
  ``s``) is a contact face when ``v`` belongs to B or ``dist(v, B) <= D - s`` (the gap in front of the face
  is at most ``D``). Each contact voxel is paired with the B object of its nearest B voxel. Contacts between
  two objects of the *same* structure are only counted in adjacency mode.

Shares: ``contact_area_fraction`` is the contact face area over the area of all exposed faces of A (faces to
another structure, to nothing, or on the image border: the same voxel-face measure, so it lies in [0, 1]);
``contact_volume_fraction`` is contact voxels over A's voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from stainfree.quantify.maps import ObjectMap
from stainfree.quantify.measure import distance_transform

__all__ = [
    "CONTACT_COLUMNS",
    "OBJECT_CONTACT_COLUMNS",
    "area_sums",
    "contact_matrix",
    "contact_tables",
    "measure_contacts",
]

CONTACT_COLUMNS: dict[str, str] = {
    "frame": "time point",
    "structure_a": "the structure whose surface is measured",
    "structure_b": "the structure it touches",
    "contact_voxels": "voxels of A in contact with B",
    "contact_volume_um3": "contact voxels x voxel volume",
    "contact_volume_fraction": "contact voxels / voxels of A",
    "contact_area_um2": "area of the voxel faces of A in contact with B",
    "contact_area_fraction": "contact area / exposed voxel-face area of A",
    "n_object_pairs": "number of (A object, B object) pairs in contact",
    "n_objects_a_in_contact": "number of A objects touching at least one B object",
}

OBJECT_CONTACT_COLUMNS: tuple[str, ...] = (
    "frame",
    "structure_a",
    "object_a",
    "structure_b",
    "object_b",
    "contact_area_um2",
)


def _face_areas(shape: tuple[int, ...], spacing: Sequence[float]) -> list[float]:
    vz, vy, vx = (float(v) for v in spacing)
    if len(shape) == 2:  # (y, x) with a slab thickness of vz
        return [vz * vx, vz * vy]
    return [vy * vx, vz * vx, vz * vy]


def _lo_hi(ndim: int, axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    lo[axis] = slice(None, -1)
    hi[axis] = slice(1, None)
    return tuple(lo), tuple(hi)


def _flat_index(mask_lo: np.ndarray, lo_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices in the full array of the True voxels of a mask over the ``lo`` slice (which starts at
    0)."""
    idx = np.flatnonzero(mask_lo)
    return np.ravel_multi_index(np.unravel_index(idx, lo_shape), shape).astype(np.int64)


def _exposed_area(omap: ObjectMap, areas: list[float]) -> np.ndarray:
    """Exposed voxel-face area per structure index: faces of its objects to anything else (another object,
    nothing or the image border)."""
    n_s = len(omap.names)
    lut = omap.structure_of.astype(np.int64) + 1  # 0 = none
    out = np.zeros(n_s)
    for layer in omap.layers:
        for axis in range(layer.ndim):
            lo, hi = _lo_hi(layer.ndim, axis)
            a, b = layer[lo], layer[hi]
            diff = a != b
            cnt = np.bincount(lut[a[diff]], minlength=n_s + 1)[1:]
            cnt += np.bincount(lut[b[diff]], minlength=n_s + 1)[1:]
            cnt += np.bincount(lut[np.take(layer, 0, axis=axis).ravel()], minlength=n_s + 1)[1:]
            cnt += np.bincount(lut[np.take(layer, -1, axis=axis).ravel()], minlength=n_s + 1)[1:]
            out += cnt * areas[axis]
    return out


def _adjacency_records(omap: ObjectMap, areas: list[float]) -> tuple[np.ndarray, ...]:
    """Directed touch records (src object, dst object, src voxel, area) for all face pairs and overlaps."""
    shape = omap.shape
    ndim = len(shape)
    strides = np.cumprod((shape[1:] + (1,))[::-1])[::-1]
    src, dst, vox, area = [], [], [], []

    def add(ga: np.ndarray, gb: np.ndarray, u: np.ndarray, v: np.ndarray, a: float) -> None:
        src.extend([ga, gb])
        dst.extend([gb, ga])
        vox.extend([u, v])
        area.extend([np.full(ga.size, a), np.full(ga.size, a)])

    n_layers = len(omap.layers)
    for i in range(n_layers):
        for j in range(i, n_layers):
            li, lj = omap.layers[i], omap.layers[j]
            for axis in range(ndim):
                lo, hi = _lo_hi(ndim, axis)
                lo_shape = li[lo].shape
                pairs = [(li[lo], lj[hi])] if i == j else [(li[lo], lj[hi]), (lj[lo], li[hi])]
                for a_arr, b_arr in pairs:
                    m = (a_arr != b_arr) & (a_arr > 0) & (b_arr > 0)
                    if not m.any():
                        continue
                    u = _flat_index(m, lo_shape, shape)
                    add(
                        a_arr[m].astype(np.int64),
                        b_arr[m].astype(np.int64),
                        u,
                        u + strides[axis],
                        areas[axis],
                    )
            if i != j:  # overlapping voxels: contact volume, no face
                m = (li > 0) & (lj > 0)
                if m.any():
                    u = np.flatnonzero(m).astype(np.int64)
                    add(li[m].astype(np.int64), lj[m].astype(np.int64), u, u, 0.0)
    if not src:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(vox), np.concatenate(area)


def _distance_records(
    omap: ObjectMap, spacing: np.ndarray, areas: list[float], distance_um: float, locate: bool = False
) -> tuple[np.ndarray, ...]:
    """Directed records for distance mode: one per (A contact voxel, B structure) plus face records (their
    voxel -1, or with ``locate`` ``-2 - index`` of their A voxel: the block engine keeps a block's own)."""
    shape = omap.shape
    ndim = len(shape)
    src, dst, vox, area = [], [], [], []
    strides = np.cumprod((shape[1:] + (1,))[::-1])[::-1]
    smaps = [omap.structure_map(li) for li in range(len(omap.layers))]
    adj = ndi.generate_binary_structure(ndim, 1)
    for b, lb in omap.layer_of.items():
        mask_b = smaps[lb] == b
        d_b, nearest = distance_transform(~mask_b, spacing, return_indices=True)
        near_b = (d_b <= distance_um) | ndi.binary_dilation(mask_b, structure=adj)
        g_b = omap.layers[lb][tuple(nearest)]
        del nearest
        for li, layer in enumerate(omap.layers):
            s = smaps[li]
            m = near_b & (layer > 0) & (s != b)
            if m.any():
                u = np.flatnonzero(m).astype(np.int64)
                src.append(layer[m].astype(np.int64))
                dst.append(g_b[m].astype(np.int64))
                vox.append(u)
                area.append(np.zeros(u.size))
            # contact faces: A voxel with a non-A neighbour v close enough to B
            for axis in range(ndim):
                lo, hi = _lo_hi(ndim, axis)
                gap = max(distance_um - float(spacing[axis]), 0.0)
                for a_sl, v_sl in ((lo, hi), (hi, lo)):
                    ga_all = layer[a_sl]
                    m = (ga_all > 0) & (ga_all != layer[v_sl]) & (s[a_sl] != b) & (d_b[v_sl] <= gap)
                    if not m.any():
                        continue
                    ga = ga_all[m].astype(np.int64)
                    gb = g_b[v_sl][m].astype(np.int64)
                    src.append(ga)
                    dst.append(gb)
                    if locate:
                        vox.append(
                            -2 - _flat_index(m, ga_all.shape, shape) - (strides[axis] if a_sl is hi else 0)
                        )
                    else:
                        vox.append(np.full(ga.size, -1, dtype=np.int64))  # faces carry no voxel
                    area.append(np.full(ga.size, areas[axis]))
        del d_b, g_b, near_b
    if not src:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(vox), np.concatenate(area)


def _distinct_contact_voxels(omap: ObjectMap, vox: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Number of distinct voxels of A touching B, per (A, B) (flattened ``A * n + B``), in O(records).

    Records are grouped by B (a radix sort of small integers); within a group a voxel of one layer belongs to
    one structure, so (voxel, layer) identifies it: the first record of each key is found by scattering record
    numbers into a scratch array and reading them back.
    """
    n_s = len(omap.names)
    out = np.zeros(n_s * n_s, dtype=np.int64)
    keep = vox >= 0
    if not keep.any():
        return out
    vox, sa, sb = vox[keep], sa[keep], sb[keep]
    n_layers = len(omap.layers)
    layer_lut = np.zeros(n_s, dtype=np.int64)
    for s_idx, li in omap.layer_of.items():
        layer_lut[s_idx] = li
    key = vox * n_layers + layer_lut[sa] if n_layers > 1 else vox
    order = np.argsort(sb.astype(np.int16), kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(sb[order]) != 0, True])
    scratch = np.empty(int(np.prod(omap.shape)) * n_layers, dtype=np.int32)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        idx = order[lo:hi]
        k = key[idx]
        ticket = np.arange(idx.size, dtype=np.int32)
        scratch[k] = ticket
        first = scratch[k] == ticket
        out += np.bincount(sa[idx][first] * n_s + sb[idx[0]], minlength=n_s * n_s)
    return out


def area_sums(keys: np.ndarray, area: np.ndarray, n: np.ndarray, size: int) -> np.ndarray:
    """Per key, the summed area of ``n`` faces of area ``area`` per record: for each distinct face area (in
    increasing order) its face count times the area, so that the result depends only on the counts (the
    block engine forms the same sums from per-block counts, bit for bit)."""
    out = np.zeros(size)
    for a in np.unique(area[area > 0]):
        sel = area == a
        out += np.bincount(keys[sel], weights=n[sel], minlength=size) * a
    return out


def measure_contacts(
    omap: ObjectMap,
    voxel_size_um: Sequence[float],
    *,
    distance_um: float | None = None,
    frame: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contacts between every ordered pair of structures, and between objects.

    Parameters
    ----------
    omap : ObjectMap
        Objects of one field.
    voxel_size_um : sequence of 3 floats
        (z, y, x) voxel size in micrometres.
    distance_um : float, optional
        None for face adjacency; else the contact distance (see the module docstring).
    frame : int
        Value of the ``frame`` column.

    Returns
    -------
    contacts : DataFrame
        One row per ordered structure pair (all pairs, zeros when not in contact), columns
        :data:`CONTACT_COLUMNS`.
    object_contacts : DataFrame
        One row per unordered pair of objects in contact (``structure_a`` ordered first by structure index,
        then object), columns :data:`OBJECT_CONTACT_COLUMNS`; ``contact_area_um2`` is their shared face area
        (adjacency mode) or the contact face area of A towards B plus of B towards A (distance mode),
        ``contact_voxels`` the contact voxels of both sides.
    """
    shape = omap.shape
    names = omap.names
    n_s = len(names)
    vz, vy, vx = (float(v) for v in voxel_size_um)
    spacing = np.array([vz, vy, vx] if len(shape) == 3 else [vy, vx])
    areas = _face_areas(shape, (vz, vy, vx))
    voxel_volume = vz * vy * vx

    counts = np.zeros(omap.n_objects + 1, dtype=np.int64)
    for layer in omap.layers:
        counts += np.bincount(layer.ravel(), minlength=omap.n_objects + 1)
    struct_of = omap.structure_of.astype(np.int64)
    voxels_per_structure = np.bincount(struct_of[1:], weights=counts[1:], minlength=n_s)
    exposed = _exposed_area(omap, areas)

    if distance_um is None:
        src, dst, vox, area = _adjacency_records(omap, areas)
    else:
        src, dst, vox, area = _distance_records(omap, spacing, areas, float(distance_um))
    sa, sb = struct_of[src], struct_of[dst]
    area_sum = area_sums(sa * n_s + sb, area, np.ones(area.size), n_s * n_s)
    contact_vox = _distinct_contact_voxels(omap, vox, sa, sb)
    del vox

    # unordered object pairs: canonical order (structure, then id); runs of equal pairs compressed first
    n_obj = omap.n_objects + 1
    key_a, key_b = sa * n_obj + src, sb * n_obj + dst
    swap = key_a > key_b
    code = np.where(swap, dst, src) * n_obj + np.where(swap, src, dst)
    del key_a, key_b, swap
    if code.size:  # runs of equal (pair, face area) compressed first
        starts = np.flatnonzero(np.r_[True, (code[1:] != code[:-1]) | (area[1:] != area[:-1])])
        run_len = np.diff(np.r_[starts, code.size]).astype(np.float64)
        code, area_runs = code[starts], area[starts]
    else:
        run_len, area_runs = np.zeros(0), np.zeros(0)
    uniq, inv = np.unique(code, return_inverse=True)
    # in adjacency mode every face is recorded from both sides
    face_area = area_sums(inv, area_runs, run_len, uniq.size) / (2.0 if distance_um is None else 1.0)
    return contact_tables(
        names,
        struct_of,
        omap.local_id,
        voxels_per_structure,
        exposed,
        area_sum,
        contact_vox,
        uniq,
        face_area,
        voxel_volume=voxel_volume,
        distance_um=distance_um,
        frame=frame,
    )


def contact_tables(
    names: Sequence[str],
    struct_of: np.ndarray,
    local_id: np.ndarray,
    voxels_per_structure: np.ndarray,
    exposed: np.ndarray,
    area_sum: np.ndarray,
    contact_vox: np.ndarray,
    uniq: np.ndarray,
    face_area: np.ndarray,
    *,
    voxel_volume: float,
    distance_um: float | None,
    frame: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables of :func:`measure_contacts` from its sums (shared with the block engine).

    Parameters
    ----------
    names : sequence of str
        Structure names.
    struct_of, local_id : ndarray
        Structure index and instance id of each global object id (entry 0: none).
    voxels_per_structure, exposed : ndarray
        Voxels and exposed voxel-face area of each structure.
    area_sum, contact_vox : ndarray
        Contact area and distinct contact voxels per ordered structure pair (flattened ``A * n + B``).
    uniq, face_area : ndarray
        Object pairs in contact (``g1 * (n_objects + 1) + g2``, sorted, ``g1 < g2``) and their shared area.
    voxel_volume, distance_um, frame
        As :func:`measure_contacts`.

    Returns
    -------
    contacts, object_contacts : DataFrame
    """
    n_s = len(names)
    n_obj = int(struct_of.size)
    names = tuple(names)
    g1, g2 = uniq // n_obj, uniq % n_obj
    s1, s2 = struct_of[g1], struct_of[g2]
    n_pairs = np.bincount(s1 * n_s + s2, minlength=n_s * n_s)
    n_pairs += np.bincount(s2 * n_s + s1, minlength=n_s * n_s)
    n_pairs[:: n_s + 1] //= 2  # a pair of objects of one structure was counted twice
    a_in = np.unique(np.concatenate([g1 * n_s + s2, g2 * n_s + s1]))
    n_a_in = np.bincount(struct_of[a_in // n_s] * n_s + a_in % n_s, minlength=n_s * n_s)

    ia, ib = np.divmod(np.arange(n_s * n_s), n_s)
    vol_a = voxels_per_structure[ia]
    exp_a = exposed[ia]
    with np.errstate(invalid="ignore", divide="ignore"):
        contacts = pd.DataFrame(
            {
                "frame": np.full(n_s * n_s, int(frame), dtype=np.int64),
                "structure_a": np.array(names, dtype=object)[ia],
                "structure_b": np.array(names, dtype=object)[ib],
                "contact_voxels": contact_vox.astype(np.int64),
                "contact_volume_um3": contact_vox * voxel_volume,
                "contact_volume_fraction": np.where(vol_a > 0, contact_vox / vol_a, np.nan),
                "contact_area_um2": area_sum,
                "contact_area_fraction": np.where(exp_a > 0, area_sum / exp_a, np.nan),
                "n_object_pairs": n_pairs.astype(np.int64),
                "n_objects_a_in_contact": n_a_in.astype(np.int64),
            }
        )
    if distance_um is not None:  # same-structure contacts are not measured in distance mode
        same = contacts["structure_a"] == contacts["structure_b"]
        contacts.loc[same, list(CONTACT_COLUMNS)[3:]] = np.nan

    objects = pd.DataFrame(
        {
            "frame": np.full(uniq.size, int(frame), dtype=np.int64),
            "structure_a": np.array(names, dtype=object)[struct_of[g1]]
            if uniq.size
            else np.array([], object),
            "object_a": local_id[g1].astype(np.int64),
            "structure_b": np.array(names, dtype=object)[struct_of[g2]]
            if uniq.size
            else np.array([], object),
            "object_b": local_id[g2].astype(np.int64),
            "contact_area_um2": face_area,
        }
    )
    return contacts, objects[list(OBJECT_CONTACT_COLUMNS)]


def contact_matrix(contacts: pd.DataFrame, value: str = "contact_area_fraction") -> pd.DataFrame:
    """Wide contact matrix: rows (frame, structure_a), columns structure_b, cells ``value``."""
    wide = contacts.pivot_table(
        index=["frame", "structure_a"],
        columns="structure_b",
        values=value,
        aggfunc="first",
        dropna=False,
        sort=False,
    )
    wide.columns.name = None
    return wide.reset_index()
