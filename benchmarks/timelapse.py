"""Time-lapse events: precision and recall of detected fission, fusion and contact events on simulated
time-lapses with known events.

The simulator plays fissions and fusions of mitochondria and transient lipid droplet / lysosome -
mitochondrion contacts at known frames (``SimulationConfig.events``, :mod:`stainfree.simulate.events`;
truth in ``field.json`` / ``events.csv``). Objects of the mitochondria, lipid droplets and lysosomes are
quantified frame by frame (:func:`stainfree.quantify.run.quantify_source`) and their events detected:

* from TRUE masks (the simulator's instance maps): overlap linking (the default: fission / fusion from the
  voxel overlaps) -> ``fission_precision`` ... ``contact_recall`` (goal >= 0.8 each); laptrack linking
  (centroids, gap closing, split / merge) -> ``laptrack_*``;
* from SEGMENTED masks (full run only): MITO, LD and LYSO networks trained briefly with the catalog
  machinery (``train_catalog``) on static fields of the same simulator, the time-lapse segmented frame by
  frame (:func:`stainfree.inference.segment_series.segment_series`) -> ``segmented_*`` (printed; no goal),
  with each structure's pixel F1 over all frames (``segmented_<structure>_pixel_f1``) to explain them.

Matching (:mod:`stainfree.evaluate.events`): same kind, frame +-1, within 1.5 um; contacts: same structure
pair, start and end +-1 frame, vesicle within 1.5 um. Only contact events that start and end inside the
recording are scored (contacts present from the first or to the last frame are standing contacts, not
transient events). Quantify settings: contact events bridge 1-frame gaps and last >= 2 frames; fissions
undone within 2 frames are dropped as flicker.

Run: ``.venv/bin/python benchmarks/timelapse.py [--quick]`` (``--quick``: two small fields, true masks only).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from _common import finish
from stainfree.config import QuantifyConfig, SimulationConfig
from stainfree.evaluate.events import event_scores, match_events
from stainfree.quantify.inputs import load_masks
from stainfree.quantify.run import quantify_source
from stainfree.simulate import simulate_field
from stainfree.types import COMPARTMENTS

STRUCTURES = ("mitochondria", "lipid_droplet", "lysosome")
VESICLES = ("lipid_droplet", "lysosome")
#: Small 2D networks (the demo's size), batch Dice + cross-entropy (see benchmarks/segmentation.py).
NET = {
    "spatial_dims": 2,
    "patch_shape": [64, 64],
    "depth": 3,
    "base_channels": 8,
    "batch_size": 4,
    "loss": "dice_ce",
}


def sim_config(quick: bool, seed: int = 7) -> SimulationConfig:
    """Time-lapses with many events per field, slow background motion."""
    return SimulationConfig(
        seed=seed,
        n_fields=2 if quick else 4,
        shape=(16, 160, 160) if quick else (16, 192, 192),
        cells_per_field=(2, 2) if quick else (2, 3),
        n_frames=8 if quick else 12,
        frame_interval_s=2.0,
        diffusion_um2_s=0.005,
        directed_fraction=0.0,
        events=(3, 3, 3) if quick else (5, 5, 5),
    )


def quantify_config(method: str) -> QuantifyConfig:
    return QuantifyConfig(
        frame_interval_s=2.0,
        link_method=method,  # type: ignore[arg-type]
        figures=False,
        derive_cells=False,
        contact_max_gap_frames=1,
        contact_min_frames=2,
        flicker_frames=2,
    )


def detected_contacts(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Transient vesicle-mitochondrion contact events with the vesicle's position at the start frame."""
    ev = tables["contact_events"]
    ev = ev[~ev["open_start"] & ~ev["open_end"]]
    pair = ev["structure_a"].isin(VESICLES) & (ev["structure_b"] == "mitochondria")
    pair |= ev["structure_b"].isin(VESICLES) & (ev["structure_a"] == "mitochondria")
    ev = ev[pair]
    obj = tables["objects"].set_index(["structure", "track_id", "frame"])
    rows = []
    for r in ev.itertuples(index=False):
        side = "a" if r.structure_a in VESICLES else "b"
        s, tr = getattr(r, f"structure_{side}"), getattr(r, f"track_{side}")
        pos = obj.loc[(s, tr, r.start_frame), ["centroid_z_um", "centroid_y_um", "centroid_x_um"]]
        pos = np.asarray(pos, float).reshape(-1, 3)[0]
        rows.append(
            {
                "structure_a": r.structure_a,
                "structure_b": r.structure_b,
                "frame": r.start_frame,
                "end_frame": r.end_frame,
                "z_um": pos[0],
                "y_um": pos[1],
                "x_um": pos[2],
            }
        )
    return pd.DataFrame(
        rows, columns=["structure_a", "structure_b", "frame", "end_frame", "z_um", "y_um", "x_um"]
    )


def detect(source, vox, method: str, field: int) -> dict[str, pd.DataFrame]:
    tables = quantify_source(source, vox, config=quantify_config(method))
    tev = tables["track_events"]
    tev = tev[tev["structure"] == "mitochondria"]
    return {
        "fission": tev[tev["kind"] == "fission"].assign(field=field),
        "fusion": tev[tev["kind"] == "fusion"].assign(field=field),
        "contact": detected_contacts(tables).assign(field=field),
    }


def scores(truth: pd.DataFrame, found: dict[str, list[pd.DataFrame]], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in ("fission", "fusion", "contact"):
        t = truth[truth["kind"] == kind]
        d = pd.concat(found[kind], ignore_index=True) if found[kind] else pd.DataFrame()
        m, nt, nd = match_events(t, d, contact=kind == "contact") if len(d) else (0, len(t), 0)
        p, r = event_scores(m, nt, nd)
        out[f"{prefix}{kind}_precision"] = round(p, 4)
        out[f"{prefix}{kind}_recall"] = round(r, 4)
        out[f"{prefix}{kind}_true_detected_matched"] = f"{nt}/{nd}/{m}"
    return out


def instance_source(field):
    keep = [COMPARTMENTS.index(c) for c in STRUCTURES]
    return load_masks(field.instances[:, keep], axes="TCZYX", names=list(STRUCTURES), kind="instances")


def segmented_run(
    cfg: SimulationConfig, fields: list, work: Path, steps: int
) -> tuple[dict[str, list[pd.DataFrame]], dict[str, float]]:
    """Train MITO / LD / LYSO briefly, segment every time-lapse frame by frame, detect events; also the pixel
    F1 of each structure's masks over all frames."""
    from stainfree import api
    from stainfree.inference.segment import find_bundles
    from stainfree.inference.segment_series import segment_frames

    train_cfg = SimulationConfig(
        seed=cfg.seed + 100, n_fields=4, shape=cfg.shape, cells_per_field=cfg.cells_per_field
    )
    api.simulate(work / "train", train_cfg)
    paths = api.train_catalog(
        work / "train" / "manifest.csv",
        work / "catalog",
        structures=["MITO", "LD", "LYSO"],
        max_steps=steps,
        **NET,
    )
    bundles = find_bundles(paths)
    found: dict[str, list[pd.DataFrame]] = {"fission": [], "fusion": [], "contact": []}
    hits = {c: np.zeros(3) for c in STRUCTURES}  # true positives, predicted, true voxels
    for i, field in enumerate(fields):
        masks, _ = segment_frames(
            bundles, field.nilered.astype(np.float32), channel_names=field.nilered_names
        )
        keep = [COMPARTMENTS.index(c) for c in STRUCTURES]
        for c in STRUCTURES:
            pred = masks[:, COMPARTMENTS.index(c)] > 0
            true = field.labels == COMPARTMENTS.index(c) + 1
            hits[c] += [np.sum(pred & true), pred.sum(), true.sum()]
        src = load_masks(masks[:, keep], axes="TCZYX", names=list(STRUCTURES), kind="masks")
        for kind, df in detect(src, field.voxel_size_um, "overlap", i).items():
            found[kind].append(df)
    f1 = {f"segmented_{c}_pixel_f1": round(float(2 * h[0] / max(h[1] + h[2], 1)), 4) for c, h in hits.items()}
    return found, f1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two small fields, true masks only (< 40 s)")
    ap.add_argument("--steps", type=int, default=200, help="training steps of each segmentation network")
    args = ap.parse_args()
    logging.getLogger("stainfree.inference.segment").setLevel(logging.ERROR)  # "no bundle segments ..." x 48
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = sim_config(args.quick)
    fields, truths = [], []
    found = {m: {"fission": [], "fusion": [], "contact": []} for m in ("overlap", "laptrack")}
    for i in range(cfg.n_fields):
        field = simulate_field(cfg, i)
        fields.append(field)
        truths.append(pd.DataFrame(field.metadata["events"]).assign(field=i))
        src = instance_source(field)
        for method in found:
            for kind, df in detect(src, field.voxel_size_um, method, i).items():
                found[method][kind].append(df)
    truth = pd.concat(truths, ignore_index=True)
    results: dict[str, object] = {
        "fields": cfg.n_fields,
        "frames": cfg.n_frames,
        "shape": "x".join(str(s) for s in cfg.shape),
        "true_fissions": int((truth["kind"] == "fission").sum()),
        "true_fusions": int((truth["kind"] == "fusion").sum()),
        "true_contacts": int((truth["kind"] == "contact").sum()),
    }
    results.update(scores(truth, found["overlap"]))
    results.update(scores(truth, found["laptrack"], "laptrack_"))
    results["true_masks_seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick:
        t1, c1 = time.perf_counter(), time.process_time()
        work = Path(tempfile.mkdtemp(prefix="stainfree_timelapse_"))
        try:
            seg, f1 = segmented_run(cfg, fields, work, args.steps)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results.update(scores(truth, seg, "segmented_"))
        results.update(f1)
        results["segmented_training_steps"] = args.steps
        results["segmented_seconds"] = round(time.perf_counter() - t1, 1)
        results["segmented_cpu_seconds"] = round(time.process_time() - c1, 1)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["cpu_seconds"] = round(time.process_time() - c0, 1)
    finish("timelapse", results, quick=args.quick)


if __name__ == "__main__":
    main()
