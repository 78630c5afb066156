"""Segmentation benchmark: 15 compartments from one dye on simulated Nile Red fields, fixed CPU budget.

Measured in one run (small 2D attention U-Nets, the catalog recipe through the shared ``fit``):

* per-structure F1 and Manders' overlap (MOC) of all 15 compartments on held-out simulated fields (binary
  nets at their own threshold, chosen on validation at export), and object-level detection precision,
  recall and F1 of the vesicular classes (:func:`stainfree.evaluate.metrics.object_scores`: connected
  components matched one to one at IoU >= 0.5) beside the pixel F1;
* ratio-vs-intensity ablation (early endosomes, Golgi, mitochondria, lipid droplets): the same nets trained
  on intensity only;
* MOC before and after fine-tuning on a second microscope profile (widefield, spread cells);
* per mitotic phase (:mod:`stainfree.simulate.mitosis`): extra held-out fields of each of the five phases
  (all cells of a field in one phase, so every phase is covered), segmented by the same nets (trained on
  interphase cells only); pixel F1 of each
  structure restricted to the voxels of each phase's cells (the simulator's ``cells`` map and each cell's
  ``phase`` in field.json; the extracellular class lies outside every cell and is not scored per phase; a
  structure with no truth voxels in a phase, e.g. the nucleus in metaphase, gets no F1 there, only the
  fraction of that phase's cell voxels the net calls it, ``phase_absent_fp``);
* segmentation throughput (voxels/s) of the catalog runner (tiled, Gaussian-blended) against a
  tile-and-stitch baseline without overlap or blending, on the same bundles and field;
* real nuclei (``/work/shared/data/nuclei_3d``, skipped when absent): a nucleus net trained on the
  simulator's DNA channel and nucleus class, F1 on one half of the real image zero-shot and after
  fine-tuning on the other half.

Run ``.venv/bin/python benchmarks/segmentation.py [--quick]``. Prints ``name: value`` lines and writes
``benchmarks/results/segmentation.json`` and figures (``segmentation_*.png``) there (``--quick``:
``segmentation_quick.json``, ``segmentation_*_quick.png``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, SHARED_DATA, finish, set_threads

NUCLEI = SHARED_DATA / "nuclei_3d"

ABLATION = ["EE", "GOLGI", "MITO", "LD"]
#: classes also scored per object (connected components matched one to one at IoU >= 0.5)
VESICLES = ["lipid_droplet", "peroxisome", "early_endosome", "late_endosome", "lysosome", "golgi"]
FINE_TUNE = ["MITO", "VOLUME"]

FULL = {
    "shape": (16, 192, 192),  # 20 x 20 um at 0.108 um, 4.6 um deep: cells of natural size and height
    "cells": (2, 3),
    "n_train": 8,  # 6 train + 2 val
    "n_test": 2,
    "n_second": 3,  # second microscope: 2 for fine-tuning, 1 test
    "n_phase": 2,  # held-out fields per mitotic phase (2-3 cells each)
    "steps": 1500,
    "ft_steps": 100,
    "patch": [64, 64],
    "depth": 3,
    "base": 16,
    "batch": 4,
    "val_patches": 16,
    "lr": 3e-3,  # Adam; 1e-4 (the catalog recipe) barely moves in a CPU budget
    "nuclei_steps": 100,
    "nuclei_ft_steps": 40,
}
QUICK = {
    "shape": (8, 32, 32),
    "cells": (1, 1),
    "n_train": 2,
    "n_test": 1,
    "n_second": 2,
    "n_phase": 1,
    "steps": 1,
    "ft_steps": 1,
    "patch": [32, 32],
    "depth": 1,
    "base": 2,
    "batch": 1,
    "val_patches": 1,
    "lr": 1e-3,
    "nuclei_steps": 1,
    "nuclei_ft_steps": 1,
}


def _simulate(out: Path, n: int, shape: tuple, cells: tuple, seed: int, **kw: Any) -> Path:
    from stainfree.config import SimulationConfig
    from stainfree.simulate import write_dataset

    val_fraction = kw.pop("val_fraction", 2 / n if n > 2 else 0.5)  # two validation fields
    cfg = SimulationConfig(
        n_fields=n,
        shape=shape,
        cells_per_field=cells,
        seed=seed,
        val_fraction=val_fraction,
        targets=["dna"],
        **kw,
    )
    return write_dataset(cfg, out)


def _fields(manifest: Path, splits: tuple[str, ...] | None = None) -> list[dict]:
    """(nilered CZYX, meta, labels ZYX) of each field of a simulator manifest."""
    from dataclasses import replace

    from stainfree.io.manifest import read_manifest
    from stainfree.io.readers import as_czyx, read_image

    df = read_manifest(manifest)
    out = []
    for _, row in df.iterrows():
        if splits is not None and row["split"] not in splits:
            continue
        arr, meta = read_image(row["nilered"])
        czyx = np.asarray(as_czyx(np.asarray(arr), meta.axes))
        labels, _ = read_image(row["labels"])
        dna, dmeta = read_image(row["fluorescence"])
        out.append(
            {
                "nilered": czyx,
                "meta": replace(meta, axes="CZYX", shape=czyx.shape),
                "labels": np.asarray(labels),
                "dna": np.asarray(as_czyx(np.asarray(dna), dmeta.axes))[0],
            }
        )
    return out


def _phase_fields(manifest: Path) -> list[dict]:
    """:func:`_fields` plus each field's cell map (ZYX) and the phase of each cell id (from field.json)."""
    from stainfree.io.manifest import read_manifest
    from stainfree.io.readers import read_image, read_json

    df = read_manifest(manifest)
    out = _fields(manifest)
    for f, (_, row) in zip(out, df.iterrows(), strict=True):
        cells, _ = read_image(row["cells"])
        f["cells"] = np.asarray(cells)
        f["phase_of"] = {int(c["cell"]): str(c["phase"]) for c in read_json(row["json"])["cells"]}
    return out


def _phase_scores(
    fields: list[dict], bundles: Any, catalog: Any, compartments: list[str]
) -> tuple[dict, dict, dict]:
    """Pixel F1 per phase and structure inside each phase's cells, pooled over the fields.

    Returns ``(f1, absent_fp, n_cells)``: phase -> structure -> F1 (structures with truth voxels in that
    phase's cells), phase -> structure -> fraction of the phase's cell voxels predicted as a structure
    that has no truth voxel there, and phase -> number of cells.
    """
    from stainfree.evaluate.metrics import f1
    from stainfree.inference.segment import find_bundles, segment
    from stainfree.simulate.mitosis import PHASES
    from stainfree.types import compartment_id

    bundles = find_bundles(bundles)
    truths: dict[tuple[str, str], list] = {}
    preds: dict[tuple[str, str], list] = {}
    n_cells = dict.fromkeys(PHASES, 0)
    for f in fields:
        masks, _ = segment(bundles, f["nilered"], f["meta"], catalog=catalog.catalog_version)
        for phase in PHASES:
            ids = [k for k, p in f["phase_of"].items() if p == phase]
            inside = np.isin(f["cells"], ids) if ids else np.zeros(f["cells"].shape, bool)
            n_cells[phase] += len(ids)
            if not inside.any():
                continue
            for c in compartments:
                truths.setdefault((phase, c), []).append(_truth(f["labels"], c, catalog)[inside])
                preds.setdefault((phase, c), []).append(masks[compartment_id(c) - 1][inside])
    table: dict[str, dict] = {}
    absent: dict[str, dict] = {}
    for (phase, c), ts in truths.items():
        t, p = np.concatenate(ts).astype(bool), np.concatenate(preds[(phase, c)]).astype(bool)
        if t.any():
            table.setdefault(phase, {})[c] = f1(t, p)
        else:
            absent.setdefault(phase, {})[c] = float(p.mean())
    return table, absent, {p: n for p, n in n_cells.items() if n}


def _phase_figure(path: Path, phase_f1: dict, compartments: list[str]) -> Path:
    """Heatmap of F1, structures (rows) x phases (columns); blank where a structure is absent."""
    from stainfree.evaluate.figures import _pyplot, save_figure

    plt = _pyplot()
    phases = list(phase_f1)
    grid = np.array([[phase_f1[p].get(c, np.nan) for p in phases] for c in compartments], float)
    fig, ax = plt.subplots(figsize=(1.2 * len(phases) + 3, 0.32 * len(compartments) + 1.4))
    im = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            text = "absent" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            colour = "black" if np.isnan(grid[i, j]) or grid[i, j] > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(phases)), phases, rotation=20, ha="right")
    ax.set_yticks(range(len(compartments)), [c.replace("_", " ") for c in compartments], fontsize=8)
    ax.set_title("Pixel F1 inside the cells of each mitotic phase", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="F1")
    return save_figure(fig, path)


def _truth(labels: np.ndarray, compartment: str, catalog: Any) -> np.ndarray:
    """The truth mask of a compartment as its catalog net is trained (from_labels of its class)."""
    from stainfree.catalog import compartment_truth

    return compartment_truth(catalog, compartment, labels)


def _scores(
    fields: list[dict], bundles: Any, catalog: Any, compartments: list[str], keep: dict | None = None
) -> tuple[dict, float]:
    """Pooled segmentation scores per compartment over the fields, and the runner's voxels/s.

    ``keep`` (a dict) receives the masks and label map of the first field.
    """
    from stainfree.evaluate.metrics import object_scores, segmentation_scores
    from stainfree.inference.segment import find_bundles, segment
    from stainfree.types import compartment_id

    counts = {c: np.zeros(3, np.int64) for c in compartments if c in VESICLES}  # matched, truth, pred
    truths: dict[str, list] = {c: [] for c in compartments}
    preds: dict[str, list] = {c: [] for c in compartments}
    seconds, voxels = 0.0, 0
    bundles = find_bundles(bundles)  # loaded once, outside the timing (as for the baseline)
    segment(bundles, fields[0]["nilered"], fields[0]["meta"], catalog=catalog.catalog_version)  # warm-up
    for f in fields:
        t0 = time.perf_counter()
        masks, labels = segment(bundles, f["nilered"], f["meta"], catalog=catalog.catalog_version)
        seconds += time.perf_counter() - t0
        voxels += int(np.prod(f["nilered"].shape[1:]))
        if keep is not None and not keep:
            keep.update(masks=masks, labels=labels)
        for c in compartments:
            truth, pred = _truth(f["labels"], c, catalog), masks[compartment_id(c) - 1]
            truths[c].append(truth.ravel())
            preds[c].append(pred.ravel())
            if c in counts:
                o = object_scores(truth, pred)
                counts[c] += (o["matched"], o["n_truth"], o["n_pred"])
    table = {
        c: segmentation_scores(np.concatenate(truths[c]), np.concatenate(preds[c])) for c in compartments
    }
    for c, (matched, n_truth, n_pred) in counts.items():  # pooled over the fields
        table[c]["object_f1"] = 2 * matched / (n_truth + n_pred) if n_truth + n_pred else 1.0
        table[c]["object_precision"] = matched / n_pred if n_pred else float(n_truth == 0)
        table[c]["object_recall"] = matched / n_truth if n_truth else float(n_pred == 0)
        table[c]["n_objects_truth"] = int(n_truth)
    return table, voxels / max(seconds, 1e-9)


def _baseline_throughput(fields: list[dict], bundle_dir: Path) -> float:
    """Voxels/s of a plain tile-and-stitch runner: same tiles, no overlap, no blending, same bundles."""
    import torch

    from stainfree.data.preprocess import prepare_input, restore_output
    from stainfree.inference.predict import apply_activation, default_bundle_roi
    from stainfree.inference.segment import find_bundles

    bundles = find_bundles(bundle_dir)
    seconds, voxels = 0.0, 0
    for f in fields:
        t0 = time.perf_counter()
        for b in bundles:
            x = prepare_input(f["nilered"], b.config, f["meta"])  # (C, Z, Y, X), 2D net per plane
            c, z, y, xx = x.shape
            div = 2 ** int(b.config.model.depth)
            ty, tx = (
                min(t, -(-n // div) * div)
                for t, n in zip(default_bundle_roi(b.config)[-2:], (y, xx), strict=True)
            )
            py, px = -(-y // ty) * ty, -(-xx // tx) * tx
            padded = np.pad(x, ((0, 0), (0, 0), (0, py - y), (0, px - xx)), mode="reflect")
            out = None
            with torch.no_grad():
                for k in range(z):
                    for i in range(0, py, ty):
                        for j in range(0, px, tx):
                            tile = torch.from_numpy(
                                np.ascontiguousarray(padded[None, :, k, i : i + ty, j : j + tx])
                            )
                            pred = b.model(tile)[0].numpy()
                            if out is None:
                                out = np.zeros((pred.shape[0], z, py, px), np.float32)
                            out[:, k, i : i + ty, j : j + tx] = pred
            prob = apply_activation(out[:, :, :y, :xx], b.config.task)
            restore_output(prob, f["nilered"].shape[1:])
        seconds += time.perf_counter() - t0
        voxels += int(np.prod(f["nilered"].shape[1:]))
    return voxels / max(seconds, 1e-9)


def _bars(path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> Path:
    from stainfree.evaluate.figures import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) + 2), 3.4))
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for j, (name, values) in enumerate(series.items()):
        ax.bar(x + (j - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, groups, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, path)


def _nuclei(s: dict, train_fields: list[dict], work: Path) -> dict[str, Any]:
    """Simulator-trained nucleus net on real nuclei: zero-shot and after fine-tuning on half the image."""
    from scipy import ndimage

    from stainfree.config import AugmentConfig, DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.evaluate.metrics import f1
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.io.readers import read_image
    from stainfree.train.fit import fit_arrays
    from stainfree.types import ImageMeta, compartment_id

    if not (NUCLEI / "img3d.tif").is_file() or not (NUCLEI / "mask3d.tif").is_file():
        print(f"nuclei: skipped, real data not found at {NUCLEI}")
        return {}
    img, _ = read_image(NUCLEI / "img3d.tif")
    lab, _ = read_image(NUCLEI / "mask3d.tif")
    img, truth = np.asarray(img, np.float32), np.asarray(lab) > 0

    def diameter(mask2d_labels: np.ndarray) -> float:
        _, counts = np.unique(mask2d_labels[mask2d_labels > 0], return_counts=True)
        return float(np.sqrt(4 * np.median(counts) / np.pi)) if counts.size else 1.0

    mid = truth.shape[0] // 2
    d_real = diameter(np.asarray(lab)[mid])
    sims, targets = [], []
    nuc = [compartment_id("nucleus"), compartment_id("nuclear_reticulum")]
    d_sim = []
    for f in train_fields:
        nmask = np.isin(f["labels"], nuc)
        z = int(np.argmax(nmask.sum(axis=(1, 2))))
        cc, n = ndimage.label(nmask[z])
        if n:
            d_sim.append(diameter(cc))
    zoom = d_real / float(np.median(d_sim)) if d_sim else 1.0
    for f in train_fields:
        nmask = np.isin(f["labels"], nuc)
        sims.append(ndimage.zoom(f["dna"].astype(np.float32), (1, zoom, zoom), order=1)[None])
        targets.append((ndimage.zoom(nmask.astype(np.uint8), (1, zoom, zoom), order=0) > 0)[None])
    patch = [32, 32]
    job = TrainingJob(
        name="nuclei",
        data=DataConfig(input_mode="2d", voxel_size_um=None, patch_shape=patch, class_names=["nucleus"]),
        model=ModelConfig(architecture="attention_unet", spatial_dims=2, depth=2, base_channels=s["base"]),
        train=TrainConfig(
            task="binary",
            loss="dice_ce",
            lr=s["lr"],
            betas=(0.9, 0.999),
            batch_size=s["batch"],
            max_steps=s["nuclei_steps"],
            val_every_n_steps=max(1, s["nuclei_steps"] // 3),
            checkpoint_every_n_steps=max(1, s["nuclei_steps"] // 3),
            val_patches=4,
            monitor="val_f1",
            augment=AugmentConfig(enabled=True, rotation_degrees=180.0),
            accelerator="cpu",
            devices=1,
        ),
        output_dir=work / "nuclei_sim",
    )
    splits = ["train"] * (len(sims) - 1) + ["val"] if len(sims) > 1 else ["train"]
    bundle = fit_arrays(sims, [t.astype(np.float32) for t in targets], job, splits=splits)
    half = img.shape[2] // 2
    meta = ImageMeta(axes="CZYX", shape=(1, *img.shape), dtype="float32")

    def f1_right(b: Any) -> float:
        prob, _ = predict_with_bundle(b, img[None], meta)
        return f1(truth[:, :, half:], np.asarray(prob)[0][:, :, half:] >= 0.5)

    before = f1_right(bundle)
    ft_job = job.model_copy(
        update={
            "name": "nuclei_ft",
            "output_dir": work / "nuclei_ft",
            "train": job.train.model_copy(
                update={"init_from": bundle, "max_steps": s["nuclei_ft_steps"], "lr": s["lr"] / 2}
            ),
        }
    )
    left = img[None, :, :, :half], truth[None, :, :, :half].astype(np.float32)
    tuned = fit_arrays([left[0]], [left[1]], ft_job)
    after = f1_right(tuned)
    return {
        "nuclei_scale_factor": round(zoom, 3),
        "nuclei_f1_zero_shot": before,
        "nuclei_f1_fine_tuned": after,
    }


def run(quick: bool) -> dict[str, Any]:
    from stainfree import api
    from stainfree.catalog import load_catalog
    from stainfree.evaluate.figures import plot_segmentation_bars
    from stainfree.inference.segment import write_segmentation
    from stainfree.io.atomic import write_bytes
    from stainfree.simulate.mitosis import PHASES
    from stainfree.types import COMPARTMENTS

    s = QUICK if quick else FULL
    tag = "_quick" if quick else ""  # --quick never overwrites the results of a full run
    catalog = load_catalog()
    work = Path(tempfile.mkdtemp(prefix="stainfree_segbench_"))
    results: dict[str, Any] = {"mode": "quick" if quick else "full"}
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        train_m = _simulate(work / "sim", s["n_train"], s["shape"], s["cells"], seed=0)
        test_m = _simulate(work / "test", s["n_test"], s["shape"], s["cells"], seed=1000, val_fraction=0.0)
        second_m = _simulate(
            work / "second",
            s["n_second"],
            s["shape"],
            s["cells"],
            seed=2000,
            microscope="widefield",
            cell_shape="spread",
            val_fraction=1 / s["n_second"],
        )
        phase_ms = [
            _simulate(
                work / "phases" / p,
                s["n_phase"],
                s["shape"],
                s["cells"],
                seed=3000 + i,
                val_fraction=0.0,
                phases=[p],
            )
            for i, p in enumerate(PHASES)
        ]
        timings["simulate_s"] = time.perf_counter() - t0
        over = {
            "spatial_dims": 2,
            "patch_shape": s["patch"],
            "depth": s["depth"],
            "base_channels": s["base"],
            "batch_size": s["batch"],
            "lr": s["lr"],
            "val_every_n_steps": max(1, s["steps"] // 3),
            "val_patches": s["val_patches"],
            # batch Dice + weighted CE: within a CPU budget, weighted BCE/CE alone converges to "no rare
            # organelle anywhere"; foreground sampling: the catalog's per-net share
            "loss": "dice_ce",
        }
        # 1. all 10 nets, intensity + ratio (--quick: LD trained, the other nets untrained, as a smoke test)
        t0 = time.perf_counter()
        trained = ["LD"] if quick else None
        api.train_catalog(train_m, work / "ratio", structures=trained, max_steps=s["steps"], **over)
        if quick:
            _untrained_bundles(
                catalog, [n.name for n in catalog.networks if n.name != "LD"], work / "ratio", over
            )
        timings["train_catalog_s"] = time.perf_counter() - t0
        test = _fields(test_m)
        first: dict = {}
        table, voxels_per_s = _scores(test, work / "ratio", catalog, list(COMPARTMENTS), keep=first)
        for c in COMPARTMENTS:
            results[f"f1_{c}"] = table[c]["f1"]
            results[f"moc_{c}"] = table[c]["moc"]
        for c in VESICLES:
            for k in ("object_f1", "object_precision", "object_recall"):
                results[f"{k}_{c}"] = table[c][k]
        results["f1_mean_15"] = float(np.mean([table[c]["f1"] for c in COMPARTMENTS]))
        results["moc_mean_15"] = float(np.mean([table[c]["moc"] for c in COMPARTMENTS]))
        import pandas as pd

        rows = [
            {"structure": c, **{k: table[c][k] for k in ("accuracy", "precision", "recall", "f1", "moc")}}
            for c in COMPARTMENTS
        ]
        plot_segmentation_bars(
            pd.DataFrame(rows),
            RESULTS / f"segmentation_structures{tag}.png",
            title="15 compartments, held-out fields",
        )
        # throughput: the catalog runner (blended) vs tile-and-stitch without blending
        results["throughput_voxels_per_s"] = voxels_per_s
        results["baseline_stitch_voxels_per_s"] = _baseline_throughput(test, work / "ratio")
        results["throughput_ratio_vs_stitch"] = voxels_per_s / results["baseline_stitch_voxels_per_s"]
        # an overlay of one held-out field
        inten = test[0]["nilered"][:2].astype(np.float32).mean(axis=0)
        paths = write_segmentation(work / "overlay", first["masks"], first["labels"], inten, name="heldout")
        write_bytes(RESULTS / f"segmentation_overlay{tag}.png", paths["overlay"].read_bytes())
        # 1b. per mitotic phase: the same nets on held-out fields of all five phases
        t0 = time.perf_counter()
        per_phase = [c for c in COMPARTMENTS if c != "extracellular"]
        phase_f1, absent_fp, n_cells = _phase_scores(
            [f for m in phase_ms for f in _phase_fields(m)], work / "ratio", catalog, per_phase
        )
        results["phase_f1"] = phase_f1
        results["phase_absent_fp"] = absent_fp
        results["phase_n_cells"] = n_cells
        results["phase_mean_f1"] = {p: float(np.mean(list(v.values()))) for p, v in phase_f1.items()}
        for p, v in results["phase_mean_f1"].items():
            results[f"phase_{p}_mean_f1"] = v
        _phase_figure(RESULTS / f"segmentation_phases{tag}.png", phase_f1, per_phase)
        timings["phases_s"] = time.perf_counter() - t0
        # 2. ratio-vs-intensity ablation
        t0 = time.perf_counter()
        ablation = ["LD"] if quick else ABLATION
        api.train_catalog(
            train_m,
            work / "intensity",
            structures=ablation,
            max_steps=s["steps"],
            input_transform="intensity_only",
            **over,
        )
        timings["train_ablation_s"] = time.perf_counter() - t0
        abl_comp = [next(n for n in catalog.networks if n.name == a).classes[0].name for a in ablation]
        t_int, _ = _scores(test, work / "intensity", catalog, abl_comp)
        for c in abl_comp:
            results[f"ablation_f1_ratio_{c}"] = table[c]["f1"]
            results[f"ablation_f1_intensity_{c}"] = t_int[c]["f1"]
            results[f"ablation_f1_gain_{c}"] = table[c]["f1"] - t_int[c]["f1"]
        _bars(
            RESULTS / f"segmentation_ablation{tag}.png",
            abl_comp,
            {
                "intensity + ratio": [table[c]["f1"] for c in abl_comp],
                "intensity only": [t_int[c]["f1"] for c in abl_comp],
            },
            "F1",
            "Ratio vs intensity (held-out fields)",
        )
        # 3. fine-tuning on the second microscope (widefield, spread cells)
        t0 = time.perf_counter()
        second_test = _fields(second_m, splits=("val",))
        ft_comp, before, after = [], [], []
        for net_name in ["LD"] if quick else FINE_TUNE:
            net = next(n for n in catalog.networks if n.name == net_name)
            comps = [c.name for c in net.classes]
            src = work / "ratio" / f"{net_name}.stainfree"
            t_b, _ = _scores(second_test, [src], catalog, comps)
            tuned = api.fine_tune(
                src,
                _train_only(second_m, work),
                work / "ft",
                max_steps=s["ft_steps"],
                lr=s["lr"],
                val_every_n_steps=max(1, s["ft_steps"] // 2),
                batch_size=s["batch"],
                loss="dice_ce",
            )
            t_a, _ = _scores(second_test, [tuned], catalog, comps)
            for c in comps:
                ft_comp.append(c)
                before.append(t_b[c]["moc"])
                after.append(t_a[c]["moc"])
                results[f"finetune_moc_before_{c}"] = t_b[c]["moc"]
                results[f"finetune_moc_after_{c}"] = t_a[c]["moc"]
        timings["fine_tune_s"] = time.perf_counter() - t0
        _bars(
            RESULTS / f"segmentation_finetune{tag}.png",
            ft_comp,
            {"before": before, "after fine-tuning": after},
            "MOC",
            "Second microscope (widefield, spread cells)",
        )
        # 4. real nuclei
        t0 = time.perf_counter()
        if quick:
            print("nuclei: skipped in --quick")
        else:
            results.update(_nuclei(s, _fields(train_m), work))
        timings["nuclei_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - t_all
    results.update({k: round(v, 2) for k, v in timings.items()})
    results["settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}
    return results


def _untrained_bundles(catalog: Any, names: list[str], out: Path, over: dict) -> None:
    """Bundles with freshly initialised weights for the named nets (the --quick smoke test only)."""
    from stainfree.api import catalog_training_job
    from stainfree.config import BundleConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    for name in names:
        net = next(n for n in catalog.networks if n.name == name)
        job = catalog_training_job(net, out / "unused.csv", out, catalog=catalog, **over)
        cfg = BundleConfig(
            name=name,
            task=net.task,
            spatial_dims=job.model.spatial_dims,
            input_mode=job.data.input_mode,
            model=job.model,
            signal_channels=job.data.signal_channels,
            class_names=job.data.class_names,
            input_transform=job.data.input_transform,
            normalization=job.data.normalization,
            voxel_size_um=None,
            patch_shape=list(job.data.patch_shape),
        )
        save_bundle(out / f"{name}.stainfree", build_model(job.model), cfg)


def _train_only(manifest: Path, work: Path) -> Path:
    """The fine-tuning rows of the second-microscope manifest (its 'train' rows; 'val' rows are the test)."""
    from stainfree.io.manifest import read_manifest, write_manifest

    df = read_manifest(manifest)
    return write_manifest(df[df["split"] == "train"].reset_index(drop=True), work / "second_train.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and nets, < 30 s (a smoke test)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: on a busy 2-core machine, 2 OpenMP threads spin, ~100x slower)",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    set_threads(args.threads)
    results = run(args.quick)
    skip = ("settings", "phase_f1", "phase_absent_fp", "phase_n_cells", "phase_mean_f1")
    finish("segmentation", results, quick=args.quick, skip=skip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
