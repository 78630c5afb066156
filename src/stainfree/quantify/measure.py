"""Measure objects: volume, surface, sphericity, shape, intensity, distance to the nucleus, height.

Pure numpy/scipy; the objects come from an :class:`~stainfree.quantify.maps.ObjectMap`.

Conventions (also in the column descriptions of :data:`OBJECT_COLUMNS`):

* volume = voxel count x voxel volume (exact for the voxelised object);
* surface = area of a marching-cubes mesh of the object's mask after a slight Gaussian smoothing (``sigma`` in
  voxels per axis, default 1) at level 0.5, computed on the object's padded bounding box only. The plain mesh
  of a binary mask is terraced and overestimates the area by ~10 %; the smoothed mesh is within ~1 % for a
  sphere of radius >= 10 voxels. Smoothing slightly shrinks small objects, so
* sphericity = pi^(1/3) (6 V)^(2/3) / A uses the *mesh* volume and area together (self-consistent: ~1 for a
  sphere, ~0.84 for a 3:1 prolate ellipsoid), clipped to <= 1;
* elongation = sqrt(largest / smallest eigenvalue) of the covariance of the voxel centres in micrometres plus
  the variance of one voxel (spacing^2 / 12 per axis), so a single voxel of a cubic grid has elongation 1;
* distance to the nuclear surface: Euclidean distance transform with ``sampling=voxel_size`` (centre to
  centre, um) of the nucleus mask (union of ``nucleus_structures``, any nucleus of the field).
  ``nucleus_distance_um`` is the smallest outside distance of the object's voxels (0 when it touches or
  overlaps the nucleus, so an object one voxel away reads one voxel size); ``nucleus_distance_signed_um`` is
  the mean signed distance over the object (positive outside, negative inside the nucleus);
* height above the coverslip: z is measured from the lowest plane of the object's cell (from the cell map),
  or, for objects outside any cell, from the lowest plane holding any non-extracellular voxel of the field.
  ``bottom_um`` is the height of the object's lowest voxel, ``height_um`` the height of its centroid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, overload

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from stainfree.errors import InputError
from stainfree.quantify.maps import NUCLEUS_STRUCTURES, ObjectMap, _structure_element
from stainfree.types import Floats

__all__ = [
    "OBJECT_COLUMNS",
    "distance_transform",
    "measure_crop",
    "measure_objects",
    "mesh_surface",
]

#: Columns of the per-object table, with their meaning.
OBJECT_COLUMNS: dict[str, str] = {
    "frame": "time point (0 for a single field)",
    "structure": "compartment name",
    "object_id": "instance id within the structure (from the instance map, or connected-component number)",
    "cell_id": "cell holding most of the object's voxels (0 = outside any cell)",
    "n_voxels": "number of voxels",
    "volume_um3": "voxel count x voxel volume",
    "surface_um2": "area of the marching-cubes mesh of the slightly smoothed mask (NaN for 2D images)",
    "sphericity": "pi^(1/3) (6 V)^(2/3) / A from the mesh volume and area, <= 1 (NaN for 2D images)",
    "centroid_z_um": "centroid z in um from the first plane",
    "centroid_y_um": "centroid y in um",
    "centroid_x_um": "centroid x in um",
    "bottom_um": "height of the object's lowest voxel above the lowest plane of its cell (coverslip)",
    "height_um": "height of the centroid above the lowest plane of its cell (coverslip)",
    "elongation": "sqrt(largest / smallest principal variance); 1 for a sphere, ~3 for a 3:1 rod",
    "major_axis_um": "2 sqrt(5 largest variance): full long axis of the ellipsoid of equal second moments",
    "minor_axis_um": "2 sqrt(5 smallest variance): full short axis of that ellipsoid",
    "mean_intensity": "mean of the intensity image over the object (NaN when not given)",
    "mean_ratio": "mean of the emission-ratio image over the object (NaN when not given)",
    "nucleus_distance_um": "smallest distance of the object's voxels to the nucleus (0 touching or inside)",
    "nucleus_distance_signed_um": "mean signed distance to the nuclear surface (negative inside)",
}


def mesh_surface(mask: np.ndarray, spacing: Floats, *, sigma: float = 1.0) -> tuple[float, float]:
    """Surface area and enclosed volume of a marching-cubes mesh of one object's (cropped) 3D mask.

    The mask is zero-padded, smoothed with a Gaussian of ``sigma`` voxels (per axis) and meshed at level 0.5;
    when the smoothed object no longer reaches 0.5 (an object of a few voxels), the binary mask is meshed.

    Returns
    -------
    area_um2, volume_um3 : float
        Mesh area and enclosed mesh volume in physical units (NaN when no mesh can be made).
    """
    from skimage.measure import marching_cubes

    pad = max(2, math.ceil(3 * sigma) + 1) if sigma > 0 else 1
    m = np.pad(mask.astype(np.float32), pad)
    if sigma > 0:
        smooth = ndi.gaussian_filter(m, sigma, mode="constant")
        if smooth.max() > 0.5:
            m = smooth
    try:
        verts, faces, _, _ = marching_cubes(m, 0.5, spacing=tuple(float(s) for s in spacing))
    except (ValueError, RuntimeError):
        return math.nan, math.nan
    area = volume = 0.0
    for start in range(0, faces.shape[0], 1 << 20):  # bounded memory for huge meshes
        f = faces[start : start + (1 << 20)]
        v0 = verts[f[:, 0]].astype(np.float64)
        normal = np.cross(verts[f[:, 1]] - v0, verts[f[:, 2]] - v0)  # twice the triangle area, outward
        area += 0.5 * float(np.sqrt(np.einsum("ij,ij->i", normal, normal)).sum())
        volume += float(np.einsum("ij,ij->i", v0, normal).sum()) / 6.0  # divergence theorem
    return area, abs(volume)


def _empty_objects() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in OBJECT_COLUMNS})
    for c in ("frame", "object_id", "cell_id", "n_voxels"):
        df[c] = df[c].astype("int64")
    df["structure"] = df["structure"].astype("object")
    return df


def _check_image(name: str, image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape != shape:
        raise InputError(name, f"shape {image.shape} does not match the masks' shape {shape}")
    return image


def _field_base(omap: ObjectMap, extracellular: str = "extracellular") -> int:
    """Lowest z plane holding any non-extracellular object voxel (0 when none)."""
    if len(omap.shape) < 3:
        return 0
    ext = [i for i, n in enumerate(omap.names) if n == extracellular]
    planes = np.zeros(omap.shape[0], dtype=bool)
    for li in range(len(omap.layers)):
        s = omap.structure_map(li)
        fg = s >= 0
        for i in ext:
            fg &= s != i
        planes |= fg.any(axis=tuple(range(1, s.ndim)))
    hits = np.flatnonzero(planes)
    return int(hits[0]) if hits.size else 0


@overload
def distance_transform(
    mask: np.ndarray, sampling: Floats, *, return_indices: Literal[False] = False
) -> np.ndarray: ...


@overload
def distance_transform(
    mask: np.ndarray, sampling: Floats, *, return_indices: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...


def distance_transform(
    mask: np.ndarray, sampling: Floats, *, return_indices: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distance (float32, physical units) of each nonzero voxel of ``mask`` to the nearest zero.

    Same values as :func:`scipy.ndimage.distance_transform_edt` with ``sampling``, at a fraction of its peak
    memory: scipy's feature transform (nearest zero voxel, int32) is computed once and the distances are
    formed from it plane by plane, instead of through full-volume int64/float64 temporaries.

    Returns
    -------
    ndarray of float32, or (distances, indices) with ``return_indices``
        ``indices`` is scipy's feature transform, shape ``(ndim,) + mask.shape``.
    """
    mask = np.asarray(mask)
    sampling = np.asarray(sampling, dtype=np.float64)
    ft = ndi.distance_transform_edt(mask, sampling=sampling, return_distances=False, return_indices=True)
    out = np.empty(mask.shape, dtype=np.float32)
    rest = [
        np.arange(n, dtype=np.int32).reshape([-1] + [1] * (mask.ndim - 2 - i))
        for i, n in enumerate(mask.shape[1:])
    ]
    for z in range(mask.shape[0]):
        acc = ((ft[0, z] - z) * np.float32(sampling[0])) ** 2
        for k, grid in enumerate(rest, start=1):
            acc = acc + ((ft[k, z] - grid) * np.float32(sampling[k])) ** 2
        out[z] = np.sqrt(acc, dtype=np.float32)
    if return_indices:
        return out, ft
    return out


def marginals(crop: np.ndarray) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """The 1D marginals (per axis) and 2D marginals (per axis pair ``i < j``) of a mask, as int64 counts:
    additive over parts of the mask, so the block engine sums them exactly."""
    nd = crop.ndim
    marg1 = [crop.sum(axis=tuple(j for j in range(nd) if j != i), dtype=np.int64) for i in range(nd)]
    m2 = {
        (i, j): crop.sum(axis=tuple(k for k in range(nd) if k not in (i, j)), dtype=np.int64)
        for i in range(nd)
        for j in range(i + 1, nd)
    }
    return marg1, m2


def moments_from_marginals(
    marg1: list[np.ndarray],
    m2: dict[tuple[int, int], np.ndarray],
    starts: Sequence[int],
    spacing: np.ndarray,
    n_vox: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and covariance (um) of voxel centres from the marginals of :func:`marginals` over a box
    starting at ``starts``."""
    nd = len(marg1)
    coords = [(np.arange(marg1[i].size) + starts[i]) * spacing[i] for i in range(nd)]
    mean = np.array([marg1[i] @ coords[i] for i in range(nd)]) / n_vox
    second = np.zeros((nd, nd))
    for i in range(nd):
        second[i, i] = marg1[i] @ coords[i] ** 2
        for j in range(i + 1, nd):
            second[i, j] = second[j, i] = coords[i] @ m2[(i, j)] @ coords[j]
    cov = second / n_vox - np.outer(mean, mean)
    return mean, (cov + cov.T) / 2


def _moments(
    crop: np.ndarray, sl: tuple[slice, ...], spacing: np.ndarray, n_vox: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and covariance (um) of a mask's voxel centres from its 1D and 2D marginals (no coordinates).

    Parameters
    ----------
    crop : ndarray of bool
        The object's mask on its bounding box ``sl``.
    """
    marg1, m2 = marginals(crop)
    return moments_from_marginals(marg1, m2, [s.start for s in sl], spacing, n_vox)


#: The cell of an object with more voxels is the majority of a regular subsample of this many of them.
CELL_SAMPLE = 1_000_000


def cell_majority(cell_vals: np.ndarray, sample: int | None = None) -> int:
    """The most frequent cell id (smallest on ties) of an object's voxels in raster order (of every k-th
    voxel for objects of more than ``sample`` voxels, default :data:`CELL_SAMPLE`)."""
    sample = CELL_SAMPLE if sample is None else sample
    if cell_vals.size > sample:  # majority from a regular subsample of huge objects
        cell_vals = cell_vals[:: cell_vals.size // sample]
    return int(np.bincount(cell_vals.astype(np.int64)).argmax()) if cell_vals.size else 0


def object_values(
    centroid: np.ndarray,
    cov: np.ndarray,
    z_start: int,
    spacing: np.ndarray,
    *,
    cid: int | None,
    cell_base: np.ndarray,
    field_base: int,
    flat3d: bool,
    mesh: tuple[float, float] | None,
) -> dict[str, float]:
    """The columns that follow from an object's moments, cell (``cid``; None without a cell map) and mesh
    (area, volume; None for none): centroid, bottom and height, elongation and axes, surface, sphericity."""
    is3d = centroid.size == 3
    out: dict[str, float] = {}
    if cid is not None:
        out["cell_id"] = cid
    cid = cid or 0
    if is3d:
        out["centroid_z_um"], out["centroid_y_um"], out["centroid_x_um"] = (float(c) for c in centroid)
        base = cell_base[cid] if 0 < cid < cell_base.size else field_base
        out["bottom_um"] = (z_start - base) * float(spacing[0])
        out["height_um"] = float(centroid[0] - base * spacing[0])
    else:
        out["centroid_y_um"], out["centroid_x_um"] = (float(c) for c in centroid)
    own_var = spacing**2 / 12.0
    # shape from second moments (2D shape for single-plane fields)
    if is3d and not flat3d:
        cov, var_own = cov[1:, 1:], own_var[1:]
    else:
        var_own = own_var
    eig = np.linalg.eigvalsh(cov + np.diag(var_own))
    out["elongation"] = math.sqrt(eig[-1] / eig[0])
    out["major_axis_um"] = 2 * math.sqrt(5 * eig[-1])
    out["minor_axis_um"] = 2 * math.sqrt(5 * eig[0])
    if mesh is not None:
        area, mesh_vol = mesh
        out["surface_um2"] = area
        if area > 0 and mesh_vol > 0:
            out["sphericity"] = min(1.0, math.pi ** (1 / 3) * (6 * mesh_vol) ** (2 / 3) / area)
    return out


def measure_crop(
    crop: np.ndarray,
    sl: tuple[slice, ...],
    n_vox: int,
    spacing: np.ndarray,
    *,
    signed: np.ndarray | None,
    cells: np.ndarray | None,
    cell_base: np.ndarray,
    field_base: int,
    flat3d: bool,
    smoothing_sigma: float,
) -> dict[str, float]:
    """The whole-object measurements of one object from its mask on its bounding box ``sl``.

    ``signed`` and ``cells`` are the signed nucleus distance and the cell map on ``sl`` (or None);
    ``cell_base`` the lowest plane of each cell id (entry 0: the field's). Returns the values of the
    :data:`OBJECT_COLUMNS` it measures (``nucleus_distance_um`` only with ``signed``). Shared by
    :func:`measure_objects` and the block engine (``stainfree.execute.quantify_blocks``).
    """
    centroid, cov = _moments(crop, sl, spacing, n_vox)
    out = object_values(
        centroid,
        cov,
        sl[0].start,
        spacing,
        cid=cell_majority(cells[crop]) if cells is not None else None,
        cell_base=cell_base,
        field_base=field_base,
        flat3d=flat3d,
        mesh=mesh_surface(crop, spacing, sigma=smoothing_sigma) if flat3d else None,
    )
    if signed is not None:
        out["nucleus_distance_um"] = max(float(np.min(signed, where=crop, initial=np.inf)), 0.0)
    return out


def measure_objects(
    omap: ObjectMap,
    voxel_size_um: Sequence[float],
    *,
    intensity: np.ndarray | None = None,
    ratio: np.ndarray | None = None,
    cells: np.ndarray | None = None,
    nucleus_structures: Sequence[str] = NUCLEUS_STRUCTURES,
    smoothing_sigma: float = 1.0,
    frame: int = 0,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Per-object measurements (see :data:`OBJECT_COLUMNS` and the module docstring for the conventions).

    Parameters
    ----------
    omap : ObjectMap
        The objects of one field (2D or 3D).
    voxel_size_um : sequence of 3 floats
        (z, y, x) voxel size in micrometres (z is ignored for 2D fields).
    intensity, ratio : ndarray, optional
        Images of the field's shape; their per-object means are reported.
    cells : ndarray of int, optional
        Cell-id map (0 = outside); each object goes to the cell holding most of its voxels.
    nucleus_structures : sequence of str
        Structures whose union is the nucleus for distances.
    smoothing_sigma : float
        Gaussian sigma (voxels) before marching cubes; 0 for the plain binary mesh.
    frame : int
        Value of the ``frame`` column.
    progress : callable, optional
        Called with the number of objects measured so far, every 256 objects and at the end.

    Returns
    -------
    DataFrame
        One row per object, columns :data:`OBJECT_COLUMNS`, sorted by structure order and object id.
    """
    shape = omap.shape
    intensity = _check_image("intensity image", intensity, shape)
    ratio = _check_image("ratio image", ratio, shape)
    cells = _check_image("cell map", cells, shape)
    vz, vy, vx = (float(v) for v in voxel_size_um)
    if min(vz, vy, vx) <= 0:
        raise InputError("voxel size", f"must be positive, got {tuple(voxel_size_um)}")
    n = omap.n_objects
    if n == 0:
        return _empty_objects()
    is3d = len(shape) == 3
    flat3d = is3d and shape[0] > 1
    spacing = np.array([vz, vy, vx] if is3d else [vy, vx])
    voxel_volume = vz * vy * vx

    counts = np.zeros(n + 1, dtype=np.int64)
    sum_int = np.zeros(n + 1)
    sum_ratio = np.zeros(n + 1)
    for layer in omap.layers:
        lab = layer.ravel()
        counts += np.bincount(lab, minlength=n + 1)
        if intensity is not None:
            sum_int += np.bincount(lab, weights=intensity.ravel().astype(np.float64), minlength=n + 1)
        if ratio is not None:
            sum_ratio += np.bincount(lab, weights=ratio.ravel().astype(np.float64), minlength=n + 1)

    # signed distance to the nuclear surface (any nucleus of the field): outside EDT on the whole field,
    # inside EDT on each nucleus' bounding box (its nearest non-nucleus voxels lie in it or on its margin)
    dist_min = np.full(n + 1, np.nan)
    dist_signed = np.full(n + 1, np.nan)
    signed: np.ndarray | None = None
    nuc = omap.structure_mask(nucleus_structures)
    if nuc.any():
        signed = distance_transform(~nuc, spacing)
        comps, _ = ndi.label(nuc, structure=_structure_element(nuc.ndim, 1))
        for k, box in enumerate(ndi.find_objects(comps), start=1):
            box = tuple(
                slice(max(b.start - 1, 0), min(b.stop + 1, d)) for b, d in zip(box, shape, strict=True)
            )
            inside = comps[box] == k
            view = signed[box]
            view[inside] = -distance_transform(nuc[box], spacing)[inside]
        del comps
        sums = np.zeros(n + 1)
        for layer in omap.layers:
            sums += np.bincount(layer.ravel(), weights=signed.ravel(), minlength=n + 1)
        dist_signed = sums / np.maximum(counts, 1)
    del nuc

    # coverslip: lowest plane per cell, else of the field
    field_base = _field_base(omap) if is3d else 0
    cell_base: np.ndarray = np.zeros(1, dtype=np.int64)
    if cells is not None and is3d:
        cell_slices = ndi.find_objects(cells.astype(np.int64, copy=False))
        cell_base = np.array(
            [field_base] + [s[0].start if s else field_base for s in cell_slices], dtype=np.int64
        )

    rows: dict[str, np.ndarray] = {
        "cell_id": np.zeros(n + 1, dtype=np.int64),
        "surface_um2": np.full(n + 1, np.nan),
        "sphericity": np.full(n + 1, np.nan),
        "centroid_z_um": np.full(n + 1, np.nan) if is3d else np.zeros(n + 1),
        "centroid_y_um": np.full(n + 1, np.nan),
        "centroid_x_um": np.full(n + 1, np.nan),
        "bottom_um": np.full(n + 1, np.nan) if is3d else np.zeros(n + 1),
        "height_um": np.full(n + 1, np.nan) if is3d else np.zeros(n + 1),
        "elongation": np.full(n + 1, np.nan),
        "major_axis_um": np.full(n + 1, np.nan),
        "minor_axis_um": np.full(n + 1, np.nan),
    }
    done = 0
    for layer in omap.layers:
        slices = ndi.find_objects(layer)
        for k, sl in enumerate(slices):
            if sl is None:
                continue
            gid = k + 1
            values = measure_crop(
                layer[sl] == gid,
                sl,
                int(counts[gid]),
                spacing,
                signed=signed[sl] if signed is not None else None,
                cells=cells[sl] if cells is not None else None,
                cell_base=cell_base,
                field_base=field_base,
                flat3d=flat3d,
                smoothing_sigma=smoothing_sigma,
            )
            if signed is not None:
                dist_min[gid] = values.pop("nucleus_distance_um")
            for key, value in values.items():
                rows[key][gid] = value
            done += 1
            if progress is not None and done % 256 == 0:
                progress(done)
    if progress is not None:
        progress(done)

    ids = np.arange(1, n + 1)
    df = pd.DataFrame(
        {
            "frame": np.full(n, int(frame), dtype=np.int64),
            "structure": np.array(omap.names, dtype=object)[omap.structure_of[1:].astype(np.int64)],
            "object_id": omap.local_id[1:].astype(np.int64),
            "cell_id": rows["cell_id"][1:],
            "n_voxels": counts[1:],
            "volume_um3": counts[1:] * voxel_volume,
            **{k: v[1:] for k, v in rows.items() if k != "cell_id"},
            "mean_intensity": sum_int[1:] / np.maximum(counts[1:], 1) if intensity is not None else np.nan,
            "mean_ratio": sum_ratio[1:] / np.maximum(counts[1:], 1) if ratio is not None else np.nan,
            "nucleus_distance_um": dist_min[1:],
            "nucleus_distance_signed_um": dist_signed[1:],
        },
        index=ids,
    )
    df = df[list(OBJECT_COLUMNS)]
    df.index.name = "uid"
    return df
