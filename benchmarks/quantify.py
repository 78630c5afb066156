"""Quantification speed and memory on a 32 x 1024 x 1024 field with all 15 structures, vs a per-object loop.

The field is a simulator field (``stainfree.simulate``, 32 x 256 x 256, 3 cells) tiled 4 x 4 (about 50 cells
and thousands of objects); without the simulator, random cells and organelles are drawn instead. The
optimised path (:func:`stainfree.quantify.run.quantify_source`: objects, summaries, contacts) is timed on the
whole field with its peak traced memory (tracemalloc, numpy allocations included).

The baseline is the straightforward loop a script would write: for every object a full-volume boolean mask,
``np.sum``/``np.nonzero`` on it, a bounding box from the full mask, marching cubes on the crop (no smoothing),
the mean intensity through the full mask (on a uniform random sample of the objects, after labelling every
structure, which is timed in full); for contacts, for every ordered pair of different structures a
full-volume binary dilation of B intersected with A. It runs on a subset of objects and pairs in the same
process and is extrapolated linearly to all objects and all 210 pairs (said so in the output).

Run: ``.venv/bin/python benchmarks/quantify.py [--quick]`` (``--quick``: one 32 x 256 x 256 tile, < 30 s).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np

from _common import finish
from stainfree.config import QuantifyConfig
from stainfree.quantify.inputs import MaskSource
from stainfree.quantify.run import quantify_source
from stainfree.types import COMPARTMENTS, compartment_id


def simulated_tile(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    """(labels, intensity, voxel size, origin) of one tile: the simulator's, else drawn at random."""
    try:
        from stainfree.config import SimulationConfig
        from stainfree.simulate import simulate_field

        cfg = SimulationConfig(shape=shape, n_fields=1, cells_per_field=(3, 3), seed=seed)
        f = simulate_field(cfg, 0)
        ny = f.nilered_clean.astype(np.float32)
        return f.labels.astype(np.uint8), ny.sum(axis=0), tuple(f.voxel_size_um), "stainfree.simulate"
    except Exception as exc:  # noqa: BLE001 - the simulator is optional here
        print(f"simulator unavailable ({type(exc).__name__}: {exc}); drawing random objects", file=sys.stderr)
        return random_tile(shape, seed), None, (0.29, 0.108, 0.108), "random objects"


def random_tile(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A tile with 2 cells and every compartment drawn as boxes and balls (fallback without the simulator)."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    lab = np.full(shape, compartment_id("extracellular"), np.uint8)
    zz, yy, xx = np.ogrid[:z, :y, :x]
    for cy, cx in ((y // 4, x // 3), (3 * y // 4, 2 * x // 3)):
        r = min(y, x) // 5
        cell = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (zz >= 2) & (zz < z - 4)
        lab[cell] = compartment_id("plasma_membrane")
        inner = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (r - 2) ** 2) & (zz >= 3) & (zz < z - 5)
        lab[inner] = compartment_id("cytosol")
        nuc = ((zz - z // 2) / (z / 4)) ** 2 + ((yy - cy) ** 2 + (xx - cx) ** 2) / (r / 2.2) ** 2 <= 1
        lab[nuc] = compartment_id("nuclear_membrane")
        core = ((zz - z // 2) / (z / 4 - 1)) ** 2 + ((yy - cy) ** 2 + (xx - cx) ** 2) / (
            r / 2.2 - 2
        ) ** 2 <= 1
        lab[core] = compartment_id("nucleus")
        for name, n, rad in (
            ("er", 60, 3),
            ("golgi", 8, 3),
            ("lipid_droplet", 20, 3),
            ("mitochondria", 120, 2),
            ("peroxisome", 60, 1),
            ("early_endosome", 40, 1),
            ("late_endosome", 30, 2),
            ("lysosome", 30, 2),
            ("nuclear_reticulum", 5, 1),
        ):
            for _ in range(n):
                a = rng.uniform(0, 2 * np.pi)
                d = rng.uniform(r / 2.2 + 3, r - 5) if name != "nuclear_reticulum" else rng.uniform(0, r / 3)
                py, px = int(cy + d * np.sin(a)), int(cx + d * np.cos(a))
                pz = int(rng.integers(5, z - 8))
                lab[pz - 1 : pz + 1, py - rad : py + rad, px - rad : px + rad] = compartment_id(name)
        for k in range(6):
            a = k * np.pi / 3
            py, px = int(cy + (r + 1) * np.sin(a)), int(cx + (r + 1) * np.cos(a))
            lab[3:5, py - 1 : py + 1, px - 1 : px + 1] = compartment_id("filopodia")
    return lab


def baseline_objects(
    lab: np.ndarray, intensity: np.ndarray, voxel: tuple, n_sample: int, seed: int = 0
) -> tuple[float, float, int]:
    """The per-object loop: labelling of every structure (timed in full), then, for a uniform random sample
    of the objects of >= 10 voxels, the full-volume mask work.

    Returns (label seconds, seconds per object, objects sampled).
    """
    from scipy import ndimage as ndi
    from skimage.measure import marching_cubes, mesh_surface_area

    struct = np.ones((3, 3, 3))
    t0 = time.perf_counter()
    sizes = []
    for cid in range(1, len(COMPARTMENTS) + 1):
        labels, n = ndi.label(lab == cid, structure=struct)
        counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        sizes.append(np.flatnonzero(counts >= 10) + 1)
    t_label = time.perf_counter() - t0
    everything = [(cid, i) for cid, ids in enumerate(sizes, start=1) for i in ids]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(everything), size=min(n_sample, len(everything)), replace=False))
    chosen: dict[int, list[int]] = {}
    for k in pick:
        cid, i = everything[k]
        chosen.setdefault(cid, []).append(int(i))
    t_obj = 0.0
    for cid, ids in chosen.items():
        labels, _ = ndi.label(lab == cid, structure=struct)  # not timed: already counted above
        t1 = time.perf_counter()
        for i in ids:
            mask = labels == i
            _nvox = int(np.sum(mask))
            zz, yy, xx = np.nonzero(mask)
            _centroid = (zz.mean() * voxel[0], yy.mean() * voxel[1], xx.mean() * voxel[2])
            crop = np.pad(mask[zz.min() : zz.max() + 1, yy.min() : yy.max() + 1, xx.min() : xx.max() + 1], 1)
            verts, faces, _, _ = marching_cubes(crop.astype(np.float32), 0.5, spacing=voxel)
            _area = mesh_surface_area(verts, faces)
            _mean = float(intensity[mask].mean())
        t_obj += time.perf_counter() - t1
    return t_label, t_obj / max(len(pick), 1), len(pick)


def baseline_contacts(lab: np.ndarray, n_pairs: int) -> tuple[float, int]:
    """Full-volume dilation of B and intersection with A for the first ``n_pairs`` ordered structure pairs."""
    from scipy import ndimage as ndi

    struct = ndi.generate_binary_structure(3, 1)
    pairs = [(a, b) for a in range(1, 16) for b in range(1, 16) if a != b][:n_pairs]
    t0 = time.perf_counter()
    for a, b in pairs:
        near_b = ndi.binary_dilation(lab == b, structure=struct)
        _n = int(np.count_nonzero(near_b & (lab == a)))
    return time.perf_counter() - t0, len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 32 x 256 x 256 tile (< 30 s)")
    args = parser.parse_args()
    tiles = 1 if args.quick else 4
    tile, inten, voxel, origin = simulated_tile((32, 256, 256))
    lab = np.tile(tile, (1, tiles, tiles))
    intensity = np.tile(inten, (1, tiles, tiles)) if inten is not None else lab.astype(np.float32)
    print(f"field {lab.shape} from {origin} ({tiles}x{tiles} tiles), voxel {voxel} um")

    source = MaskSource("labels", lab[None], COMPARTMENTS, voxel_size_um=voxel)
    cfg = QuantifyConfig(figures=False)
    tracemalloc.start()
    t0 = time.perf_counter()
    tables = quantify_source(source, voxel, config=cfg, intensity=intensity)
    t_fast = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_obj = len(tables["objects"])
    counts = tables["objects"]["structure"].value_counts()
    print(
        f"optimised: {n_obj} objects in {len(counts)} structures, {t_fast:.1f} s, peak {peak / 2**20:.0f} MiB"
    )

    # baseline on a subset, extrapolated
    sub_obj = 30 if args.quick else 60
    t_label, per_obj, done = baseline_objects(lab, intensity, voxel, sub_obj)
    sub_pairs = 4 if args.quick else 6
    t_bc, pairs = baseline_contacts(lab, sub_pairs)
    est = t_label + per_obj * n_obj + t_bc / max(pairs, 1) * 210
    print(
        f"baseline: labelling {t_label:.1f} s, {done} random objects at {per_obj:.3f} s each, {pairs} of 210 "
        f"structure pairs in {t_bc:.1f} s; extrapolated to {n_obj} objects + 210 pairs: {est:.0f} s"
    )
    results = {
        "field_shape": "x".join(str(s) for s in lab.shape),
        "field_source": origin,
        "n_objects": n_obj,
        "n_structures_present": int(len(counts)),
        "quantify_s": round(t_fast, 2),
        "quantify_peak_mib": round(peak / 2**20, 1),
        "process_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "baseline_objects_measured": done,
        "baseline_pairs_measured": pairs,
        "baseline_label_s": round(t_label, 2),
        "baseline_s_per_object": round(per_obj, 4),
        "baseline_extrapolated_s": round(est, 1),
        "speedup_vs_baseline": round(est / t_fast, 1),
        "quick": bool(args.quick),
    }
    finish("quantify", results, quick=bool(args.quick))


if __name__ == "__main__":
    main()
