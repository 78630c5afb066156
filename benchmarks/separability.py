"""Separability benchmark: can the small organelle classes be told apart at all, before any training?

No network: a few simulated fields per microscope profile (spinning_disk, widefield, sdsim, and the spinning
disk with 4x the Nile Red photons) and per version
of the Nile Red constants (``SimulationConfig.nilered_model`` v1, the default, and v2), exact truth. For each
small class (peroxisome, Golgi, early / late endosome, lysosome, mitochondria):

* **ratio separability**: the AUC of a 1D threshold on the ratio R/Y between the class and its hardest
  neighbour class (the other compartment with the lowest AUC; direction free, 0.5 = inseparable, 1 = a clean
  cut; ``auc_*`` against every other compartment, ``auc_small_*`` against the other small classes only),
  at each level of imaging:
  ``intrinsic`` (the simulator's own per-object ratios), ``voxel_noise`` (per voxel, photon and camera noise
  without blur), ``voxel_blur`` (per voxel, PSF without noise), ``object_imaged`` (the mean R / mean Y of each
  imaged object, blur and noise), ``voxel_imaged`` (per voxel, blur and noise);
* **intensity contrast**: ``contrast`` (mean background-corrected intensity of the class over that of a
  2-voxel shell around its objects) and ``cnr`` (their difference over the pooled voxel spread) in the imaged
  field;
* **size**: median z-extent of the objects in planes, and the fraction of objects smaller than one PSF
  volume (FWHM_z x FWHM_y x FWHM_x).

Imaged channels are background-corrected with the known camera offset and background and the red channel
is moved back by the known chromatic shift (what ``channel_alignment: auto`` estimates).

Run ``.venv/bin/python benchmarks/separability.py [--quick]``; writes ``benchmarks/results/separability.json``
and ``separability.png`` (``--quick``: ``_quick``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, finish

SMALL = ["peroxisome", "golgi", "early_endosome", "late_endosome", "lysosome", "mitochondria"]
LEVELS = ["intrinsic", "voxel_noise", "voxel_blur", "object_imaged", "voxel_imaged"]
#: imaging set-ups: (microscope profile, Nile Red photons in a lipid droplet); the last one has 4x the
#: photons of the default to show how much of the loss is photon noise
PROFILES = ["spinning_disk", "widefield", "sdsim", "spinning_disk_x4_photons"]
SETUPS = {
    "spinning_disk": ("spinning_disk", 300.0),
    "widefield": ("widefield", 300.0),
    "sdsim": ("sdsim", 300.0),
    "spinning_disk_x4_photons": ("spinning_disk", 1200.0),
}
MODELS = ["v1", "v2"]
FIELD_UM = (4.6, 17.3, 17.3)  # physical field size (z, y, x): 16 x 160 x 160 spinning-disk voxels

FULL = {"n_fields": 3, "cells": (2, 3), "max_voxels": 20000, "scale": 1.0}
QUICK = {"n_fields": 1, "cells": (1, 1), "max_voxels": 2000, "scale": 0.45}


def auc(a: np.ndarray, b: np.ndarray) -> float:
    """Direction-free area under the ROC curve of a 1D threshold separating ``a`` from ``b`` (0.5..1)."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size == 0 or b.size == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2
    v = u / (a.size * b.size)
    return float(max(v, 1 - v))


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    values = np.asarray(values).ravel()
    return values if values.size <= n else rng.choice(values, n, replace=False)


def _field_shape(voxel_um: tuple, scale: float) -> tuple[int, int, int]:
    z, y, x = (
        max(8 if i == 0 else 32, round(scale * s / v))
        for i, (s, v) in enumerate(zip(FIELD_UM, voxel_um, strict=True))
    )
    return int(z), int(y), int(x)


def _analyse(fields: list, s: dict, seed: int) -> dict[str, Any]:
    """Ratio AUCs, contrast and sizes of the small classes over the simulated fields of one configuration."""
    from scipy import ndimage

    from stainfree.simulate.optics import shift_subpixel
    from stainfree.types import COMPARTMENTS, compartment_id

    rng = np.random.default_rng(seed)
    present = [c for c in COMPARTMENTS if c != "extracellular"]
    # per class: intrinsic object ratios; per level: voxel / object ratio samples; contrast pieces
    intrinsic: dict[str, list] = {c: [] for c in present}
    samples: dict[str, dict[str, list]] = {lv: {c: [] for c in present} for lv in LEVELS[1:]}
    inner: dict[str, list] = {c: [] for c in SMALL}
    shell: dict[str, list] = {c: [] for c in SMALL}
    zext: dict[str, list] = {c: [] for c in SMALL}
    small_obj: dict[str, list] = {c: [] for c in SMALL}
    for f in fields:
        md = f.metadata
        nr = md["nilered"]
        photons = float(nr["photons"])
        offset, bg = float(md["noise_model"]["offset_counts"]), float(md["noise_model"]["background_photons"])
        shift = np.asarray(nr["chromatic_shift_voxels"], float)
        vox = np.asarray(f.voxel_size_um, float)
        fwhm = 2.3548 * np.asarray(nr["psf_sigma_um"]["yellow"], float) / vox
        psf_vox = float(np.prod(np.maximum(fwhm, 1.0)))
        labels = np.asarray(f.labels)
        inst = np.asarray(f.instances).max(axis=0)
        # the exact per-voxel brightness and ratio (the simulator's own objects)
        m = int(inst.max()) + 1
        lut_b = np.zeros((len(COMPARTMENTS) + 1, m), np.float32)
        lut_r = np.zeros_like(lut_b)
        for o in md["objects"]:
            lut_b[o["label"], o["instance"]] = o["nilered_brightness"]
            lut_r[o["label"], o["instance"]] = o["nilered_ratio"]
            if o["class"] in intrinsic:
                intrinsic[o["class"]].append(o["nilered_ratio"])
        b, r = lut_b[labels, inst], lut_r[labels, inst]
        yd, rd = b / (1 + r), b * r / (1 + r)
        noise = np.random.default_rng(seed + f.index)
        yn = noise.poisson(photons * yd).astype(np.float32)
        rn = noise.poisson(photons * rd).astype(np.float32)
        yc, rc = (np.asarray(f.nilered_clean[i], np.float32) - offset - bg for i in (0, 1))
        yi, ri = (np.asarray(f.nilered[i], np.float32) - offset - bg for i in (0, 1))
        rc = shift_subpixel(rc, -shift)
        ri = shift_subpixel(ri, -shift)
        for c in present:
            cid = compartment_id(c)
            where = labels == cid
            if not where.any():
                continue
            idx = np.flatnonzero(where.ravel())
            pick = _sample(idx, s["max_voxels"], rng)

            def ratio_at(yy: np.ndarray, rr: np.ndarray, p: np.ndarray = pick) -> np.ndarray:
                y1, r1 = yy.ravel()[p], rr.ravel()[p]
                ok = y1 > 0
                return np.log(np.clip(r1[ok], 1e-3, None) / y1[ok])

            samples["voxel_noise"][c].append(ratio_at(yn, rn))
            samples["voxel_blur"][c].append(ratio_at(yc, rc))
            samples["voxel_imaged"][c].append(ratio_at(yi, ri))
            ids = inst[where]
            n_obj = int(ids.max()) + 1
            sy = np.bincount(ids, weights=yi[where], minlength=n_obj)
            sr = np.bincount(ids, weights=ri[where], minlength=n_obj)
            cnt = np.bincount(ids, minlength=n_obj)
            ok = (cnt > 0) & (sy > 0)
            samples["object_imaged"][c].append(np.log(np.clip(sr[ok], 1e-3, None) / sy[ok]))
            if c in SMALL:
                own = where
                ring = (
                    ndimage.binary_dilation(own, iterations=2)
                    & ~own
                    & (labels != compartment_id("extracellular"))
                )
                it = (yi + ri)[own]
                sh = (yi + ri)[ring]
                inner[c].append(_sample(it, s["max_voxels"], rng))
                shell[c].append(_sample(sh, s["max_voxels"], rng))
                objs, n = ndimage.label(own)
                if n:
                    sl = ndimage.find_objects(objs)
                    zext[c].extend(int(q[0].stop - q[0].start) for q in sl if q is not None)
                    sizes = np.bincount(objs.ravel())[1:]
                    small_obj[c].extend((sizes < psf_vox).tolist())
    out: dict[str, Any] = {}
    for c in SMALL:
        if not intrinsic[c]:
            continue
        row: dict[str, Any] = {}
        for lv, (prefix, others) in ((lv, n) for lv in LEVELS for n in (("", present), ("small_", SMALL))):
            best, hardest = 1.0, ""
            for o in others:
                if o == c:
                    continue
                if lv == "intrinsic":
                    a, bb = np.log(intrinsic[c]), np.log(intrinsic[o]) if intrinsic[o] else np.array([])
                else:
                    a = np.concatenate(samples[lv][c]) if samples[lv][c] else np.array([])
                    bb = np.concatenate(samples[lv][o]) if samples[lv][o] else np.array([])
                v = auc(a, bb)
                if np.isfinite(v) and v < best:
                    best, hardest = v, o
            row[f"auc_{prefix}{lv}"] = best
            row[f"hardest_{prefix}{lv}"] = hardest
        it, sh = np.concatenate(inner[c]), np.concatenate(shell[c])
        row["contrast"] = float(it.mean() / max(sh.mean(), 1e-9))
        row["cnr"] = float((it.mean() - sh.mean()) / np.sqrt((it.var() + sh.var()) / 2 + 1e-12))
        row["z_planes_median"] = float(np.median(zext[c])) if zext[c] else 0.0
        row["below_one_psf_fraction"] = float(np.mean(small_obj[c])) if small_obj[c] else 0.0
        out[c] = row
    return out


def _figure(path: Path, table: dict) -> Path:
    from stainfree.evaluate.figures import _pyplot, save_figure

    plt = _pyplot()
    shown = {
        "small_intrinsic": "intrinsic, vs small classes",
        "intrinsic": "intrinsic, vs all",
        "voxel_blur": "voxel, blur only, vs all",
        "object_imaged": "imaged object, vs all",
        "voxel_imaged": "imaged voxel, vs all",
    }
    fig, axes = plt.subplots(
        len(MODELS), len(PROFILES), figsize=(4.2 * len(PROFILES), 3.0 * len(MODELS)), sharey=True
    )
    axes = np.atleast_2d(axes)
    x = np.arange(len(SMALL))
    width = 0.8 / len(shown)
    for i, model in enumerate(MODELS):
        for j, prof in enumerate(PROFILES):
            ax = axes[i, j]
            rows = table.get(model, {}).get(prof, {})
            for k, (lv, label) in enumerate(shown.items()):
                vals = [rows.get(c, {}).get(f"auc_{lv}", np.nan) for c in SMALL]
                ax.bar(x + (k - (len(shown) - 1) / 2) * width, vals, width, label=label)
            cnr = [rows.get(c, {}).get("cnr", np.nan) for c in SMALL]
            ax.set_xticks(
                x,
                [f"{c.replace('_', ' ')}\nCNR {v:.2f}" for c, v in zip(SMALL, cnr, strict=True)],
                fontsize=6,
            )
            ax.set_ylim(0.5, 1.0)
            ax.set_title(f"{prof.replace('_', ' ')}, constants {model}", fontsize=8)
            ax.axhline(0.5, color="k", lw=0.5)
    for row in axes:
        row[0].set_ylabel("AUC vs hardest neighbour")
    axes[0, 0].legend(fontsize=6, frameon=False, ncol=2)
    fig.suptitle(
        "Ratio separability of the small classes (1D threshold on R/Y), and intensity CNR", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def run(quick: bool) -> dict[str, Any]:
    from stainfree.config import SimulationConfig
    from stainfree.simulate.field import simulate_field
    from stainfree.simulate.optics import MICROSCOPES

    s = QUICK if quick else FULL
    results: dict[str, Any] = {"mode": "quick" if quick else "full"}
    table: dict[str, dict[str, dict]] = {}
    t_all = time.perf_counter()
    profiles = ["spinning_disk", "sdsim"] if quick else PROFILES
    for model in MODELS:
        table[model] = {}
        for prof in profiles:
            t0 = time.perf_counter()
            microscope, photons = SETUPS[prof]
            shape = _field_shape(MICROSCOPES[microscope]["voxel_size_um"], s["scale"])
            cfg = SimulationConfig(
                n_fields=s["n_fields"],
                shape=shape,
                cells_per_field=s["cells"],
                microscope=microscope,
                nilered_photons=photons,
                targets=["dna"],
                nilered_model=model,
                seed=7,
            )
            fields = [simulate_field(cfg, i) for i in range(s["n_fields"])]
            table[model][prof] = _analyse(fields, s, seed=11)
            results[f"seconds_{model}_{prof}"] = round(time.perf_counter() - t0, 1)
            rows = table[model][prof]
            for lv in LEVELS:
                for prefix in ("", "small_"):
                    vals = [rows[c][f"auc_{prefix}{lv}"] for c in rows]
                    mean = float(np.mean(vals)) if vals else float("nan")
                    results[f"auc_{prefix}{lv}_mean_{model}_{prof}"] = mean
            for c, row in rows.items():
                results[f"cnr_{c}_{model}_{prof}"] = row["cnr"]
                results[f"contrast_{c}_{model}_{prof}"] = row["contrast"]
                results[f"auc_object_imaged_{c}_{model}_{prof}"] = row["auc_object_imaged"]
                results[f"auc_intrinsic_{c}_{model}_{prof}"] = row["auc_intrinsic"]
    results["classes"] = table
    results["total_s"] = round(time.perf_counter() - t_all, 1)
    _figure(RESULTS / f"separability{'_quick' if quick else ''}.png", table)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small field per configuration (< 40 s)")
    args = parser.parse_args(argv)
    results = run(args.quick)
    per_class = tuple(
        k
        for k in results
        if k.startswith(("contrast_", "auc_object_imaged_", "auc_intrinsic_"))
        and not k.startswith(("auc_object_imaged_mean", "auc_intrinsic_mean"))
    )
    finish("separability", results, quick=args.quick, skip=("classes", *per_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
