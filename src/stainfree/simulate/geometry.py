"""Compartment geometry of the digital cell: cells, nucleus and the 15 compartments, in physical units.

Each cell is an adherent dome on the coverslip with a wavy outline ("round", "elongated" or "spread"). Cells
never overlap: a pixel belongs to the cell whose outline it is deepest inside (a Voronoi cut where two touch).

Semantic label priority
-----------------------
Every voxel carries exactly one compartment. Compartments are painted from lowest to highest priority and a
later one overwrites an earlier one (:data:`PRIORITY`, lowest first)::

    extracellular < cytosol < er < mitochondria < golgi < peroxisome < early_endosome < late_endosome
    < lysosome < lipid_droplet < nucleus < nuclear_reticulum < nuclear_membrane < plasma_membrane < filopodia

Organelles (er .. lipid_droplet) are clipped to the cytoplasm (cell body minus nucleus) of their own cell;
the nuclear reticulum (invaginations) is clipped to its nucleus; filopodia are drawn only into extracellular
space. The plasma membrane is the one-voxel shell of the cell body (6-neighbourhood), the nuclear membrane the
shell of the nucleus. Instance ids are per compartment; the cytosol, nucleus, nuclear membrane, plasma
membrane and ER have one instance per cell, the extracellular space one instance, everything else one
instance per object. Listed objects are computed from the final maps, so an object fully hidden by a
higher-priority one is not listed (in a time-lapse it can reappear later under the same id).

Every cell gets at least one object of each class, so all 15 compartments are present in a default field
(32 x 256 x 256); in very small or coarse fields (a few voxels per micrometre) a tiny class such as the
nuclear reticulum or a peroxisome can be clipped or hidden completely.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from stainfree.simulate.cells import SHAPES, _footprint, _height, _place_cells, _random_walk, _sample_points
from stainfree.simulate.draw import (
    Ellipsoid,
    Primitive,
    Tube,
    boundary,
    ellipsoid_mask,
    paint,
    resample_polyline,
    rotation_from_normal,
    segments_to_points,
)
from stainfree.types import COMPARTMENTS, Floats, compartment_id

#: Painting order, lowest priority first: a later compartment overwrites an earlier one.
PRIORITY: tuple[str, ...] = (
    "extracellular",
    "cytosol",
    "er",
    "mitochondria",
    "golgi",
    "peroxisome",
    "early_endosome",
    "late_endosome",
    "lysosome",
    "lipid_droplet",
    "nucleus",
    "nuclear_reticulum",
    "nuclear_membrane",
    "plasma_membrane",
    "filopodia",
)
assert sorted(PRIORITY) == sorted(COMPARTMENTS)

#: Vesicle classes: (radius mean um, radius log-sd, count per 100 um^3 of cytoplasm, placement).
VESICLES: dict[str, tuple[float, float, float, str]] = {
    "peroxisome": (0.13, 0.2, 16.0, "uniform"),
    "early_endosome": (0.2, 0.25, 9.0, "peripheral"),
    "late_endosome": (0.3, 0.2, 5.0, "perinuclear"),
    "lysosome": (0.27, 0.25, 7.0, "perinuclear"),
    "lipid_droplet": (0.45, 0.3, 3.5, "uniform"),
}


#: Nominal cell shapes: semi-axes a, b (um), height (um), outline waviness, lamella thickness (um),
@dataclass
class SceneObject:
    """An organelle that may move: its compartment, instance id, owning cell, primitives and motion."""

    cls: str
    instance: int
    cell: int
    primitives: list[Primitive]
    center: np.ndarray
    diffusion: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Scene:
    """Static compartments of one field plus the list of movable organelles.

    Attributes
    ----------
    shape, voxel_um : the volume (z, y, x) and voxel size (um).
    cells : uint16 cell id per voxel (filopodia included), 0 outside cells.
    cyto_cell : uint16 cell id where the voxel is cytoplasm (cell body minus nucleus), else 0.
    base_labels, base_inst : extracellular, cytosol and ER (below every organelle in priority).
    top_labels, top_inst : nucleus, nuclear reticulum and membrane, plasma membrane, filopodia (0 = none).
    dna : chromatin density (0..~1.5) inside nuclei, 0 elsewhere.
    objects : movable organelles (mitochondria, Golgi, vesicles, lipid droplets).
    cells_info : one dict per cell (shape, centre, axes, height, nucleus).
    owners : (compartment, instance) -> cell id of static instances.
    chromosomes : DNA density outside nuclei (mitotic chromosomes, see simulate.mitosis), or None.
    """

    shape: tuple[int, int, int]
    voxel_um: tuple[float, float, float]
    cells: np.ndarray
    cyto_cell: np.ndarray
    base_labels: np.ndarray
    base_inst: np.ndarray
    top_labels: np.ndarray
    top_inst: np.ndarray
    dna: np.ndarray
    objects: list[SceneObject]
    cells_info: list[dict]
    owners: dict[tuple[str, int], int]
    chromosomes: np.ndarray | None = None


def build_scene(
    rng: np.random.Generator,
    shape: Sequence[int],
    voxel_um: Floats,
    n_cells: int,
    cell_shape: str,
) -> Scene:
    """Draw the static compartments and the movable organelles of one field.

    Parameters
    ----------
    rng : numpy Generator (the geometry stream of this field).
    shape : (z, y, x) voxels.
    voxel_um : (z, y, x) voxel size in um.
    n_cells : number of cells.
    cell_shape : "round", "elongated", "spread" or "mixed".

    Returns
    -------
    Scene
    """
    shape = tuple(int(s) for s in shape)
    vox = np.asarray(voxel_um, float)
    extent = np.asarray(shape) * vox
    names = [
        cell_shape if cell_shape != "mixed" else str(rng.choice(["round", "elongated", "spread"]))
        for _ in range(n_cells)
    ]
    cells_p = _place_cells(rng, names, extent)

    # ---- footprints, Voronoi ownership and the 3D cell map
    yy = (np.arange(shape[1]) * vox[1])[:, None]
    xx = (np.arange(shape[2]) * vox[2])[None, :]
    rhos = np.stack([_footprint(c, yy, xx) for c in cells_p])
    owner = np.argmin(rhos, axis=0)
    rho_min = np.take_along_axis(rhos, owner[None], 0)[0]
    own2d = np.where(rho_min < 1.0, owner + 1, 0).astype(np.uint16)
    height = np.zeros(shape[1:], float)
    for k, c in enumerate(cells_p, start=1):
        m = own2d == k
        height[m] = _height(c, rhos[k - 1][m])
    zz = (np.arange(shape[0]) * vox[0])[:, None, None]
    zb = cells_p[0]["z_bottom"]
    body = (zz >= zb) & (zz < zb + height[None]) & (own2d[None] > 0)
    cells = np.where(body, own2d[None], 0).astype(np.uint16)

    nucleus_cell = np.zeros(shape, np.uint16)
    dna = np.zeros(shape, np.float32)
    cells_info: list[dict] = []
    nuclei: list[dict] = []
    for k, c in enumerate(cells_p, start=1):
        p = SHAPES[c["shape"]]
        # nucleus semi-axes along the cell's (long, short) axes, z fitted under the dome
        ra, rb = p["nuc"][0] * c["a"] * rng.uniform(0.9, 1.05), p["nuc"][1] * c["b"] * rng.uniform(0.9, 1.05)
        ra, rb = min(ra, 0.6 * c["a"]), min(rb, 0.6 * c["b"])
        rz = max(0.6, min(2.6, 0.5 * (c["h"] - 0.9)))
        shift = rng.normal(0, 0.08, 2) * np.array([c["a"], c["b"]])
        ca, sa = np.cos(c["angle"]), np.sin(c["angle"])
        ny = c["cy"] + sa * shift[0] + ca * shift[1]
        nx = c["cx"] + ca * shift[0] - sa * shift[1]
        nz = zb + 0.35 + rz
        # principal directions in (z, y, x): long axis (0, sa, ca), short axis (0, ca, -sa)
        rot = np.array([[1.0, 0, 0], [0, sa, ca], [0, ca, -sa]])
        nuc = Ellipsoid(np.array([nz, ny, nx]), np.array([rz, ra, rb]), rot)
        sl, m = ellipsoid_mask(nuc, shape, vox)
        # keep a gap of >= 1 voxel and 0.3 um to the cell surface
        zloc = (np.arange(sl[0].start, sl[0].stop) * vox[0])[:, None, None]
        hloc = height[sl[1:]][None]
        m &= (cells[sl] == k) & (zloc <= zb + hloc - max(0.3, 1.01 * vox[0])) & (zloc >= zb + vox[0])
        m &= ndimage.binary_erosion(cells[sl] == k, iterations=2)
        nucleus_cell[sl][m] = k
        # chromatin: smooth texture, heterochromatin rim, dark nucleoli
        sig = np.maximum(0.3 / vox, 0.8)
        tex = ndimage.gaussian_filter(rng.standard_normal(m.shape).astype(np.float32), sig)
        tex /= tex.std() + 1e-6
        axes = [np.arange(sl[i].start, sl[i].stop) * vox[i] - nuc.center[i] for i in range(3)]
        dz_, dy_, dx_ = np.meshgrid(*axes, indexing="ij", sparse=True)
        rn = np.sqrt(
            sum(((rot[r, 0] * dz_ + rot[r, 1] * dy_ + rot[r, 2] * dx_) / nuc.radii[r]) ** 2 for r in range(3))
        )
        dens = 0.6 + 0.22 * tex + 0.35 * np.clip((rn - 0.75) / 0.25, 0, 1)
        for _ in range(int(rng.integers(1, 4))):
            dirn = rng.normal(0, 1, 3) * np.array([0.3, 1, 1])
            cen = 0.4 * nuc.radii.min() * dirn / np.linalg.norm(dirn) * rng.uniform(0, 1)
            rad = rng.uniform(0.6, 1.1) * np.array([min(0.8, 0.45 * rz), 1, 1])
            inside = (
                ((dz_ - cen[0]) / rad[0]) ** 2
                + ((dy_ - cen[1]) / rad[1]) ** 2
                + ((dx_ - cen[2]) / rad[2]) ** 2
            )
            dens = np.where(inside <= 1.0, 0.25 * dens, dens)
        dna[sl][m] = np.clip(dens[m], 0.05, 1.6)
        nuclei.append({"ell": nuc, "slices": sl})
        cells_info.append(
            {
                "cell": k,
                "shape": c["shape"],
                "center_yx_um": [round(c["cy"], 3), round(c["cx"], 3)],
                "semi_axes_um": [round(c["a"], 3), round(c["b"], 3)],
                "angle_rad": round(float(c["angle"]), 4),
                "height_um": round(c["h"], 3),
                "z_bottom_um": round(zb, 3),
                "nucleus_center_um": [round(float(v), 3) for v in nuc.center],
                "nucleus_semi_axes_um": [round(float(v), 3) for v in nuc.radii],
            }
        )

    cyto_cell = np.where(nucleus_cell > 0, 0, cells).astype(np.uint16)

    # ---- static top layer: nucleus, nuclear reticulum, nuclear membrane, plasma membrane, filopodia
    top_labels = np.zeros(shape, np.uint8)
    top_inst = np.zeros(shape, np.uint32)
    owners: dict[tuple[str, int], int] = {("extracellular", 1): 0}
    top_labels[nucleus_cell > 0] = compartment_id("nucleus")
    top_inst[nucleus_cell > 0] = nucleus_cell[nucleus_cell > 0]
    nr_id = 0
    lab_nr = compartment_id("nuclear_reticulum")
    for k, nd in enumerate(nuclei, start=1):
        owners[("nucleus", k)] = k
        owners[("nuclear_membrane", k)] = k
        owners[("plasma_membrane", k)] = k
        owners[("cytosol", k)] = k
        owners[("er", k)] = k
        nuc = nd["ell"]
        for _ in range(int(rng.integers(1, 4))):
            d = rng.normal(0, 1, 3) * np.array([0.4, 1, 1])
            d /= np.linalg.norm(d)
            # point on the surface along d (in the nucleus frame)
            local = nuc.rotation @ d
            t = 1.0 / np.sqrt(((local / nuc.radii) ** 2).sum())
            start = nuc.center + d * t * 1.05
            end = nuc.center + d * t * rng.uniform(-0.1, 0.45)
            bend = rng.normal(0, 0.3, 3) * np.array([0.2, 1, 1])
            pts = resample_polyline(np.stack([start, 0.5 * (start + end) + bend, end]), 0.5 * vox.min())
            nr_id += 1
            n_set = paint(
                top_labels, top_inst, Tube(pts, rng.uniform(0.15, 0.25)), vox, lab_nr, nr_id, nucleus_cell, k
            )
            owners[("nuclear_reticulum", nr_id)] = k
            if n_set == 0:
                nr_id -= 1
    nuc_shell = boundary(nucleus_cell)
    top_labels[nuc_shell] = compartment_id("nuclear_membrane")
    top_inst[nuc_shell] = nucleus_cell[nuc_shell]
    pm = boundary(cells)
    top_labels[pm] = compartment_id("plasma_membrane")
    top_inst[pm] = cells[pm]

    filo_id = 0
    lab_f = compartment_id("filopodia")
    extra = np.zeros(shape, np.uint16)  # clip: draw only where no cell is
    for k, c in enumerate(cells_p, start=1):
        lo, hi = SHAPES[c["shape"]]["filo"]
        for _ in range(int(rng.integers(lo, hi + 1))):
            phi = rng.uniform(0, 2 * np.pi)
            d2 = np.array([np.sin(phi), np.cos(phi)])
            r = np.arange(0, 1.6 * max(c["a"], c["b"]), 0.05)
            py, px = c["cy"] + r * d2[0], c["cx"] + r * d2[1]
            rho = _footprint(c, py, px)
            out = np.flatnonzero(rho >= 1.0)
            if len(out) == 0:
                continue
            r0 = r[out[0]]
            length = rng.uniform(1.5, 5.0)
            z0 = zb + min(0.3, 0.5 * c["lamella"])
            ang = phi + rng.normal(0, 0.25)
            d3 = np.array([0.0, np.sin(ang), np.cos(ang)])
            start = np.array([z0, c["cy"] + (r0 - 0.4) * d2[0], c["cx"] + (r0 - 0.4) * d2[1]])
            mid = start + 0.5 * length * d3 + np.array([0, *rng.normal(0, 0.2, 2)])
            end = start + length * d3 + np.array([0, *rng.normal(0, 0.4, 2)])
            pts = resample_polyline(np.stack([start, mid, end]), 0.5 * vox.min())
            filo_id += 1
            n_set = paint(
                top_labels, top_inst, Tube(pts, rng.uniform(0.1, 0.16)), vox, lab_f, filo_id, cells, 0
            )
            if n_set == 0:
                filo_id -= 1
                continue
            owners[("filopodia", filo_id)] = k
            fm = (top_labels == lab_f) & (top_inst == filo_id)
            extra[fm] = k
    cells = np.where(extra > 0, extra, cells).astype(np.uint16)

    # ---- base layer: extracellular, cytosol, ER
    base_labels = np.where(cells > 0, compartment_id("cytosol"), compartment_id("extracellular")).astype(
        np.uint8
    )
    base_inst = np.where(cells > 0, cells, 1).astype(np.uint32)
    lab_er = compartment_id("er")
    objects: list[SceneObject] = []
    boxes = ndimage.find_objects(cyto_cell)
    for k, nd in enumerate(nuclei, start=1):
        nuc = nd["ell"]
        bb = boxes[k - 1] if k - 1 < len(boxes) else None
        if bb is None:
            continue
        crop = cyto_cell[bb] == k
        off = np.array([s.start for s in bb])
        cyto_vol = crop.sum() * vox.prod()
        axes = [np.arange(bb[i].start, bb[i].stop) * vox[i] - nuc.center[i] for i in range(3)]
        dz_, dy_, dx_ = np.meshgrid(*axes, indexing="ij", sparse=True)
        rho_n = np.sqrt(
            sum(
                (
                    (nuc.rotation[r, 0] * dz_ + nuc.rotation[r, 1] * dy_ + nuc.rotation[r, 2] * dx_)
                    / nuc.radii[r]
                )
                ** 2
                for r in range(3)
            )
        )
        dist_n = np.maximum(rho_n - 1.0, 0.0) * float(np.mean(nuc.radii[1:]))  # approx. um from the envelope
        inner = ndimage.binary_erosion(crop, iterations=1) if crop.sum() > 200 else crop
        # ER tubular network, denser near the nucleus
        n_nodes = int(np.clip(cyto_vol * 2.5, 30, 4000))
        nodes = _sample_points(rng, crop, off, vox, n_nodes, np.exp(-dist_n / 2.5))
        tree = cKDTree(nodes)
        kq = min(4, len(nodes))
        dist, nbr = tree.query(nodes, k=kq)
        ii = np.repeat(np.arange(len(nodes)), kq - 1)
        jj = nbr[:, 1:].ravel()
        dd = dist[:, 1:].ravel()
        keep = (dd < 2.2) & (ii < jj)
        pts = segments_to_points(nodes[ii[keep]], nodes[jj[keep]], 0.5 * vox.min())
        paint(base_labels, base_inst, Tube(pts, 0.05), vox, lab_er, k, cyto_cell, k)
        # perinuclear sheets: curved shells parallel to the envelope, on the sides of the nucleus
        for _ in range(int(rng.integers(2, 4))):
            phi = rng.uniform(0, 2 * np.pi)
            d0 = np.array([0.0, np.sin(phi), np.cos(phi)])
            s_um = rng.uniform(0.4, 1.2)
            norm = np.sqrt(dz_**2 + dy_**2 + dx_**2) + 1e-9
            cosang = (d0[1] * dy_ + d0[2] * dx_) / norm
            sheet = (np.abs(dist_n - s_um) < 0.09) & (cosang > np.cos(np.deg2rad(rng.uniform(25, 45)))) & crop
            base_labels[bb][sheet] = lab_er
            base_inst[bb][sheet] = k

        # mitochondria: branching persistent tubes
        n_mito = int(np.clip(cyto_vol * 0.3, 3, 300))
        starts = _sample_points(rng, inner, off, vox, n_mito)
        for s in starts:
            length = float(np.clip(rng.lognormal(np.log(1.8), 0.5), 0.5, 6.0))
            phi = rng.uniform(0, 2 * np.pi)
            walk = _random_walk(rng, s, length, np.array([rng.normal(0, 0.1), np.sin(phi), np.cos(phi)]))
            radius = rng.uniform(0.13, 0.2)
            prims: list[Primitive] = [Tube(resample_polyline(walk, 0.5 * vox.min()), radius)]
            if rng.random() < 0.35 and len(walk) > 4:
                j = int(rng.integers(1, len(walk) - 1))
                bphi = phi + rng.choice([-1, 1]) * rng.uniform(0.6, 1.4)
                br = _random_walk(
                    rng, walk[j], length * rng.uniform(0.3, 0.6), np.array([0, np.sin(bphi), np.cos(bphi)])
                )
                prims.append(Tube(resample_polyline(br, 0.5 * vox.min()), radius))
            objects.append(SceneObject("mitochondria", 0, k, prims, walk.mean(axis=0)))

        # Golgi: 1-3 mini-stacks of flat cisternae plus vesicles, on one side of the nucleus
        phi = rng.uniform(0, 2 * np.pi)
        d = np.array([0.0, np.sin(phi), np.cos(phi)])
        local = nuc.rotation @ d
        reach = 1.0 / np.sqrt(((local / nuc.radii) ** 2).sum())
        base = nuc.center + d * (reach + 0.7) - np.array([0.3 * nuc.radii[0], 0, 0])
        perp = np.array([0.0, -d[2], d[1]])
        n_stacks = int(rng.integers(1, 4))
        rot = rotation_from_normal(d)
        for i in range(n_stacks):
            cen = base + perp * (i - (n_stacks - 1) / 2) * rng.uniform(1.0, 1.4) + rng.normal(0, 0.1, 3)
            prims = []
            n_cis = int(rng.integers(3, 6))
            size = rng.uniform(0.5, 0.85)
            for j in range(n_cis):
                cc = cen + d * (j - (n_cis - 1) / 2) * 0.16 - perp * 0.0
                # curved stack: cisternae further from the nucleus bend around it
                rr = np.array([0.07, size * (1 - 0.08 * j), 0.6 * size * (1 - 0.08 * j)])
                prims.append(Ellipsoid(cc, rr, rot))
            for _ in range(int(rng.integers(2, 6))):
                vpos = cen + rng.normal(0, 1, 3) * np.array([0.15, 0.5, 0.5]) + d * rng.uniform(0.3, 0.6)
                prims.append(Ellipsoid(vpos, np.full(3, rng.uniform(0.05, 0.08))))
            objects.append(SceneObject("golgi", 0, k, prims, cen))

        # vesicles and lipid droplets
        weights = {
            "uniform": None,
            "peripheral": (dist_n + 0.5) ** 1.5,
            "perinuclear": np.exp(-dist_n / 2.0),
        }
        for cls, (r_mean, r_sd, per100, where) in VESICLES.items():
            n = int(max(1, rng.poisson(cyto_vol * per100 / 100.0)))
            pos = _sample_points(rng, inner, off, vox, n, weights[where])
            for ppos in pos:
                r_um = float(np.clip(rng.lognormal(np.log(r_mean), r_sd), 0.6 * r_mean, 2.2 * r_mean))
                radii = r_um * rng.uniform(0.85, 1.15, 3)
                objects.append(SceneObject(cls, 0, k, [Ellipsoid(ppos, radii)], ppos))

    # instance ids: contiguous per class, in drawing order
    counters: dict[str, int] = {}
    for ob in objects:
        counters[ob.cls] = counters.get(ob.cls, 0) + 1
        ob.instance = counters[ob.cls]
    return Scene(
        shape=shape,  # type: ignore[arg-type]
        voxel_um=tuple(float(v) for v in vox),  # type: ignore[arg-type]
        cells=cells,
        cyto_cell=cyto_cell,
        base_labels=base_labels,
        base_inst=base_inst,
        top_labels=top_labels,
        top_inst=top_inst,
        dna=dna,
        objects=objects,
        cells_info=cells_info,
        owners=owners,
    )


def rasterize(scene: Scene, shifts_um: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Semantic labels (uint8) and instance ids (uint32) of one frame, objects displaced by ``shifts_um``.

    Compartments are painted in :data:`PRIORITY` order; organelles are clipped to their cell's cytoplasm.
    """
    labels = scene.base_labels.copy()
    inst = scene.base_inst.copy()
    rank = {name: i for i, name in enumerate(PRIORITY)}
    order = sorted(range(len(scene.objects)), key=lambda i: (rank[scene.objects[i].cls], i))
    for i in order:
        ob = scene.objects[i]
        lab = compartment_id(ob.cls)
        shift = None if shifts_um is None else shifts_um[i]
        for prim in ob.primitives:
            paint(labels, inst, prim, scene.voxel_um, lab, ob.instance, scene.cyto_cell, ob.cell, shift)
    top = scene.top_labels > 0
    labels[top] = scene.top_labels[top]
    inst[top] = scene.top_inst[top]
    return labels, inst
