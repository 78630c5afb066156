"""Mitotic phases of the digital cell: an interphase scene turned, cell by cell, into prophase, metaphase,
anaphase or telophase with the changes Zhanghao et al. report (Fig. 5, S8, S11, S12).

Each cell draws its phase from the configured list (uniformly, from its own random stream 5:
``SeedSequence(seed, spawn_key=(field, 5))``, so the geometry, motion, spectra and noise streams are
untouched).
The changes per phase:

* every mitotic phase: filopodia retracted;
* prophase: chromatin condensed, more nuclear reticulum (extra invaginations), Golgi stacks broken into their
  cisternae and vesicles near where they stood, mitochondria cut into long pieces; plasma membrane unchanged;
* metaphase: nuclear envelope broken down (no nucleus, nuclear membrane or reticulum: the space becomes
  cytoplasm), chromosomes in a plate across the spindle axis (the cell's long axis) -- chromosomes are not a
  compartment: their voxels stay cytosol and show only in the DNA stain and bright field --, ER redrawn as
  uniform tubules (no perinuclear sheets, no crowding at the nucleus), Golgi dispersed into small vesicles
  over the cytoplasm, mitochondria fragmented, plasma membrane two voxels thick;
* anaphase: as metaphase with two chromosome sets moving apart along the spindle axis;
* telophase: two daughter cells (the mother's id and a new id, ``mother`` in their cell records) parted by a
  cleavage furrow with a thin bridge, nuclear envelopes reassembled around two small daughter nuclei, Golgi
  reassembling as vesicle clusters beside them, mitochondria fragmented, ER tubules, membranes two voxels.

Without phases the simulator never calls this module, so interphase-only output is unchanged byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from stainfree.simulate.cells import _sample_points
from stainfree.simulate.draw import Ellipsoid, Tube, boundary, ellipsoid_mask, paint, resample_polyline
from stainfree.simulate.geometry import Scene, SceneObject
from stainfree.types import compartment_id

__all__ = ["CHANGES", "PHASES", "apply_phases"]

#: The phases, in order.
PHASES: tuple[str, ...] = ("interphase", "prophase", "metaphase", "anaphase", "telophase")

#: What each phase changes (written to field.json).
CHANGES: dict[str, list[str]] = {
    "interphase": [],
    "prophase": [
        "filopodia retracted",
        "chromatin condensed",
        "3-6 extra nuclear reticulum invaginations",
        "Golgi stacks broken into cisternae and vesicles",
        "mitochondria cut into 1.0-2.0 um pieces",
    ],
    "metaphase": [
        "filopodia retracted",
        "nuclear envelope broken down (no nucleus, nuclear membrane, nuclear reticulum)",
        "chromosome plate across the spindle axis (DNA stain only; voxels stay cytosol)",
        "ER as uniform tubules (no perinuclear sheets)",
        "Golgi dispersed into 12-20 vesicles",
        "mitochondria fragmented into 0.4-0.8 um pieces",
        "plasma membrane 2 voxels thick",
    ],
    "anaphase": [
        "filopodia retracted",
        "nuclear envelope broken down",
        "two chromosome sets apart along the spindle axis",
        "ER as uniform tubules",
        "Golgi dispersed into 12-20 vesicles",
        "mitochondria fragmented into 0.4-0.8 um pieces",
        "plasma membrane 2 voxels thick",
    ],
    "telophase": [
        "filopodia retracted",
        "two daughter cells (new cell id, 'mother' in the cell records) with a cleavage furrow",
        "nuclear envelopes reassembled around two daughter nuclei",
        "ER as uniform tubules",
        "Golgi reassembling: 4-8 vesicles beside each daughter nucleus",
        "mitochondria fragmented into 0.6-1.2 um pieces",
        "plasma membrane 2 voxels thick",
    ],
}

_EXTRA = compartment_id("extracellular")
_CYTO = compartment_id("cytosol")
_ER = compartment_id("er")
_NUC = compartment_id("nucleus")
_NM = compartment_id("nuclear_membrane")
_NR = compartment_id("nuclear_reticulum")
_PM = compartment_id("plasma_membrane")
_FILO = compartment_id("filopodia")


def _bbox(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = (
        np.nonzero(mask.any(axis=(1, 2))),
        np.nonzero(mask.any(axis=(0, 2))),
        np.nonzero(mask.any(axis=(0, 1))),
    )
    return tuple(
        slice(max(0, int(i[0][0]) - margin), min(mask.shape[a], int(i[0][-1]) + margin + 1))
        for a, i in enumerate(idx)
    )


def _grid(bb: tuple[slice, ...], vox: np.ndarray) -> list[np.ndarray]:
    """Sparse (z, y, x) um coordinates of a bounding box."""
    axes = [np.arange(bb[i].start, bb[i].stop) * vox[i] for i in range(3)]
    return list(np.meshgrid(*axes, indexing="ij", sparse=True))


def _texture(rng: np.random.Generator, shape: tuple[int, ...], vox: np.ndarray) -> np.ndarray:
    """Smooth noise scaled to 0..1."""
    t = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), np.maximum(0.3 / vox, 0.8))
    return (t - t.min()) / (np.ptp(t) + 1e-6)


def _retract_filopodia(scene: Scene, k: int) -> None:
    fil = (scene.top_labels == _FILO) & (scene.cells == k)
    scene.top_labels[fil] = 0
    scene.top_inst[fil] = 0
    scene.cells[fil] = 0
    scene.base_labels[fil] = _EXTRA
    scene.base_inst[fil] = 1


def _fragment(ob: SceneObject, rng: np.random.Generator, lengths: tuple[float, float], jitter: float) -> list:
    """A mitochondrion cut into pieces of ``lengths`` um with gaps, each its own object, moved by ``jitter``
    um."""
    pieces: list[SceneObject] = []
    for prim in ob.primitives:
        if not isinstance(prim, Tube) or len(prim.points) < 2:
            continue
        pts = prim.points
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        pos = 0.0
        while pos < cum[-1]:
            length = rng.uniform(*lengths)
            sel = (cum >= pos) & (cum <= pos + length)
            shift = rng.normal(0, jitter, 3) * np.array([0.3, 1.0, 1.0])
            if sel.sum() >= 2 and cum[sel][-1] - cum[sel][0] >= 0.3:
                p = pts[sel] + shift
                pieces.append(SceneObject("mitochondria", 0, ob.cell, [Tube(p, prim.radius)], p.mean(axis=0)))
            pos += length + rng.uniform(0.2, 0.35)
    return pieces or [ob]


def _golgi_vesicle(rng: np.random.Generator, pos: np.ndarray, cell: int) -> SceneObject:
    radii = np.array([0.4, 0.22, 0.22]) * rng.uniform(0.9, 1.2, 3)  # >= 2 z planes at 0.29 um
    return SceneObject("golgi", 0, cell, [Ellipsoid(pos, radii)], pos)


def _prophase(scene: Scene, k: int, info: dict, rng: np.random.Generator) -> None:
    vox = np.asarray(scene.voxel_um, float)
    nuc = (scene.top_labels == _NUC) & (scene.cells == k)
    if nuc.any():
        bb = _bbox(nuc, 0)
        local = nuc[bb]
        scene.dna[bb][local] = np.clip(
            scene.dna[bb][local] * (0.6 + 0.8 * _texture(rng, local.shape, vox)[local]), 0.05, 1.8
        )
        clip = np.where(nuc, k, 0).astype(np.uint16)
        centre = np.asarray(info["nucleus_center_um"], float)
        shell = np.argwhere(boundary(np.where(nuc, 1, 0).astype(np.uint8)))
        nr_id = int(scene.top_inst[scene.top_labels == _NR].max(initial=0))
        for _ in range(int(rng.integers(3, 7))):
            start = shell[int(rng.integers(len(shell)))] * vox
            end = start + (centre - start) * rng.uniform(0.3, 0.7)
            bend = rng.normal(0, 0.3, 3) * np.array([0.2, 1, 1])
            pts = resample_polyline(np.stack([start, 0.5 * (start + end) + bend, end]), 0.5 * vox.min())
            nr_id += 1
            if paint(
                scene.top_labels, scene.top_inst, Tube(pts, rng.uniform(0.15, 0.25)), vox, _NR, nr_id, clip, k
            ):
                scene.owners[("nuclear_reticulum", nr_id)] = k
            else:
                nr_id -= 1
    objects: list[SceneObject] = []
    for ob in scene.objects:
        if ob.cell != k or ob.cls not in ("golgi", "mitochondria"):
            objects.append(ob)
        elif ob.cls == "mitochondria":
            objects.extend(_fragment(ob, rng, (1.0, 2.0), 0.1))
        else:
            for prim in ob.primitives:  # each cisterna / vesicle on its own, spread a little
                if isinstance(prim, Ellipsoid):
                    off = rng.normal(0, 0.35, 3) * np.array([0.3, 1.0, 1.0])
                    new = Ellipsoid(
                        prim.center + off, np.maximum(prim.radii, [0.15, 0.15, 0.15]), prim.rotation
                    )
                    objects.append(SceneObject("golgi", 0, k, [new], new.center))
    scene.objects = objects


def _er_tubules(scene: Scene, cid: int, rng: np.random.Generator) -> None:
    """A uniform tubular ER network in the cytoplasm of cell ``cid``."""
    vox = np.asarray(scene.voxel_um, float)
    cyto = scene.cyto_cell == cid
    if not cyto.any():
        return
    bb = _bbox(cyto, 0)
    crop = cyto[bb]
    n_nodes = int(np.clip(crop.sum() * vox.prod() * 2.5, 30, 4000))
    nodes = _sample_points(rng, crop, np.array([s.start for s in bb]), vox, n_nodes)
    kq = min(4, len(nodes))
    dist, nbr = cKDTree(nodes).query(nodes, k=kq)
    ii = np.repeat(np.arange(len(nodes)), kq - 1)
    jj, dd = nbr[:, 1:].ravel(), dist[:, 1:].ravel()
    keep = (dd < 2.2) & (ii < jj)
    from stainfree.simulate.draw import segments_to_points

    pts = segments_to_points(nodes[ii[keep]], nodes[jj[keep]], 0.5 * vox.min())
    paint(scene.base_labels, scene.base_inst, Tube(pts, 0.05), vox, _ER, cid, scene.cyto_cell, cid)


def _rebuild(
    scene: Scene, k: int, phase: str, info: dict, rng: np.random.Generator, new_id: int
) -> dict | None:
    """Metaphase, anaphase, telophase: the cell's static compartments rebuilt; returns a daughter's record."""
    vox = np.asarray(scene.voxel_um, float)
    region = scene.cells == k
    bb = _bbox(region, 2)
    body = region[bb]
    zz, yy, xx = _grid(bb, vox)
    c = np.asarray(info["nucleus_center_um"], float)
    radii = np.asarray(info["nucleus_semi_axes_um"], float)  # (z, long, short)
    ang = float(info["angle_rad"])
    sa, ca = np.sin(ang), np.cos(ang)
    s = (yy - c[1]) * sa + (xx - c[2]) * ca  # along the spindle (the cell's long axis)
    q = (yy - c[1]) * ca - (xx - c[2]) * sa  # across it, in the coverslip plane
    dz = zz - c[0]
    ids = np.where(body, k, 0).astype(np.uint16)
    daughter = None
    if phase == "telophase":
        furrow = body & (np.abs(s) < 0.35) & (np.sqrt(q**2 + dz**2) > 0.9)
        ids[furrow] = 0
        ids[(ids > 0) & (s > 0)] = new_id
    # reset the cell's static layers
    cells_bb, base_l, base_i = scene.cells[bb], scene.base_labels[bb], scene.base_inst[bb]
    top_l, top_i, cyto_bb, dna_bb = (
        scene.top_labels[bb],
        scene.top_inst[bb],
        scene.cyto_cell[bb],
        scene.dna[bb],
    )
    cells_bb[body] = ids[body]
    base_l[body] = np.where(ids[body] > 0, _CYTO, _EXTRA)
    base_i[body] = np.where(ids[body] > 0, ids[body], 1)
    top_l[body] = 0
    top_i[body] = 0
    dna_bb[body] = 0
    blocked = np.zeros(body.shape, bool)
    if phase in ("metaphase", "anaphase"):
        if scene.chromosomes is None:
            scene.chromosomes = np.zeros(scene.shape, np.float32)
        rxy, rz = 0.85 * float(radii[1:].mean()), max(0.9 * float(radii[0]), 0.6)
        tex = _texture(rng, body.shape, vox)
        offsets = (
            (0.0,)
            if phase == "metaphase"
            else (-0.35 * info["semi_axes_um"][0], 0.35 * info["semi_axes_um"][0])
        )
        half = 0.45 if phase == "metaphase" else 0.35
        size = 1.0 if phase == "metaphase" else 0.8
        plate = np.zeros(body.shape, bool)
        for off in offsets:
            plate |= (
                (np.abs(s - off) < half) & ((q / (size * rxy)) ** 2 + (dz / (size * rz)) ** 2 <= 1.0) & body
            )
        scene.chromosomes[bb][plate] = (0.9 + 0.6 * tex[plate]).astype(np.float32)
        blocked |= plate
    nuclei = np.zeros(body.shape, np.uint16)
    if phase == "telophase":
        rot = np.array([[1.0, 0, 0], [0, sa, ca], [0, ca, -sa]])
        d = np.array([0.0, sa, ca])
        off = 0.42 * float(info["semi_axes_um"][0])
        centres = {k: c - d * off, new_id: c + d * off}
        small = radii * np.array([0.85, 0.62, 0.62])
        for cid, cen in centres.items():
            sl, m = ellipsoid_mask(Ellipsoid(cen, small, rot), scene.shape, vox)
            full = np.zeros(scene.shape, bool)
            full[sl] = m
            inner = ndimage.binary_erosion(ids == cid, iterations=2)
            nuclei[full[bb] & inner] = cid
        tex = _texture(rng, body.shape, vox)
        top_l[nuclei > 0] = _NUC
        top_i[nuclei > 0] = nuclei[nuclei > 0]
        dna_bb[nuclei > 0] = 0.75 + 0.5 * tex[nuclei > 0]
        env = boundary(nuclei)
        top_l[env] = _NM
        top_i[env] = nuclei[env]
        blocked |= nuclei > 0
        daughter = {
            "cell": new_id,
            "shape": info["shape"],
            "phase": "telophase",
            "mother": k,
            "center_yx_um": [round(float(v), 3) for v in centres[new_id][1:]],
            "semi_axes_um": info["semi_axes_um"],
            "angle_rad": info["angle_rad"],
            "height_um": info["height_um"],
            "z_bottom_um": info["z_bottom_um"],
            "nucleus_center_um": [round(float(v), 3) for v in centres[new_id]],
            "nucleus_semi_axes_um": [round(float(v), 3) for v in small],
        }
        info["mother"] = k
        info["nucleus_center_um"] = [round(float(v), 3) for v in centres[k]]
        info["nucleus_semi_axes_um"] = [round(float(v), 3) for v in small]
        for name in ("nucleus", "nuclear_membrane", "plasma_membrane", "cytosol", "er"):
            scene.owners[(name, new_id)] = new_id
    # plasma membrane: two voxels thick
    outer = boundary(ids)
    inner = boundary(np.where(outer, 0, ids).astype(np.uint16))
    pm = (outer | inner) & (ids > 0)
    top_l[pm] = _PM
    top_i[pm] = ids[pm]
    cyto_bb[body] = np.where(blocked[body], 0, ids[body])
    for cid in [k] + ([new_id] if phase == "telophase" else []):
        _er_tubules(scene, cid, rng)
    # organelles: Golgi dispersed (telophase: clusters by the daughter nuclei), mitochondria fragmented
    objects: list[SceneObject] = []
    d = np.array([0.0, sa, ca])
    for ob in scene.objects:
        if ob.cell != k:
            objects.append(ob)
            continue
        if ob.cls == "golgi":
            continue
        pieces = [ob]
        if ob.cls == "mitochondria":
            pieces = _fragment(ob, rng, (0.6, 1.2) if phase == "telophase" else (0.4, 0.8), 0.3)
        for piece in pieces:  # telophase: each piece goes to the daughter on its side
            if phase == "telophase" and float((piece.center - c) @ d) > 0:
                piece.cell = new_id
        objects.extend(pieces)
    off_vox = np.array([sl.start for sl in bb])
    if phase == "telophase":
        for cid in (k, new_id):
            cyto = cyto_bb == cid
            ring = ndimage.distance_transform_edt(nuclei != cid, sampling=vox)  # um from the daughter nucleus
            near = np.exp(-np.abs(ring - 1.0) / 0.5)  # a ring about 1 um out, clear of the envelope
            for pos in _sample_points(rng, cyto, off_vox, vox, int(rng.integers(4, 9)), near):
                objects.append(_golgi_vesicle(rng, pos, cid))
    else:
        cyto = cyto_bb == k
        for pos in _sample_points(rng, cyto, off_vox, vox, int(rng.integers(12, 21))):
            objects.append(_golgi_vesicle(rng, pos, k))
    scene.objects = objects
    info["nuclear_envelope"] = "reassembled" if phase == "telophase" else "broken down"
    return daughter


def apply_phases(scene: Scene, rng: np.random.Generator, phases: Sequence[str]) -> dict:
    """Put every cell of an interphase scene into a phase drawn from ``phases`` (changes ``scene`` in place).

    Parameters
    ----------
    scene : Scene
        From :func:`stainfree.simulate.geometry.build_scene`.
    rng : numpy Generator
        The field's mitosis stream (5).
    phases : sequence of str
        Names from :data:`PHASES`; each cell draws one uniformly (repeat a name to weight it).

    Returns
    -------
    dict
        For field.json: the phases, the stream, each cell's phase and :data:`CHANGES`. The cell records
        (``scene.cells_info``) get ``phase`` (and ``mother`` for telophase daughters, appended as new cells).
    """
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"unknown or no phases {list(phases)}; use names from {PHASES}")
    next_id = int(scene.cells.max()) + 1
    daughters: list[dict] = []
    for info in list(scene.cells_info):
        k = int(info["cell"])
        phase = str(rng.choice(list(phases)))
        info["phase"] = phase
        if phase == "interphase":
            continue
        _retract_filopodia(scene, k)
        if phase == "prophase":
            _prophase(scene, k, info, rng)
            continue
        daughter = _rebuild(scene, k, phase, info, rng, next_id)
        if daughter is not None:
            daughters.append(daughter)
            next_id += 1
    scene.cells_info.extend(daughters)
    counters: dict[str, int] = {}
    for ob in scene.objects:  # instance ids contiguous per class again
        counters[ob.cls] = counters.get(ob.cls, 0) + 1
        ob.instance = counters[ob.cls]
    return {
        "phases": list(phases),
        "random_stream": "SeedSequence(seed, spawn_key=(field, 5))",
        "cell_phases": {str(c["cell"]): c["phase"] for c in scene.cells_info},
        "changes": {p: CHANGES[p] for p in PHASES if p in phases},
        "note": "chromosomes are not a compartment: their voxels stay cytosol (DNA stain, bright field only)",
    }
