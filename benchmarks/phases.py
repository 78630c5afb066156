"""Mitotic phases: per-phase anatomy of simulated cells from exact masks (Zhanghao et al. Fig. 5, S8, S11).

Simulated fields whose cells are all in one phase (``SimulationConfig.phases``; interphase, prophase,
metaphase, anaphase, telophase) are quantified from their exact instance masks with
``api.quantify(..., group_by="phase")`` (the phase of each cell from field.json). Printed and stored per
phase: nuclear volume per cell, Golgi and mitochondria objects per cell and mean object volumes,
plasma-membrane volume fraction, the voxel-wise median distance of mitochondria to the own nucleus, and the
paper's trends as booleans (nuclear volume near 0 in metaphase; more and smaller Golgi and mitochondrial
objects in metaphase than in interphase). The full run also keeps the bar and voxel-distance figures.

Run: ``.venv/bin/python benchmarks/phases.py [--quick]`` (``--quick``: one small field per phase, < 40 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import RESULTS, finish
from stainfree import api
from stainfree.config import QuantifyConfig, SimulationConfig
from stainfree.io.writers import write_table
from stainfree.simulate import simulate_field, write_field

PHASES = ("interphase", "prophase", "metaphase", "anaphase", "telophase")


def simulate(out: Path, shape: tuple[int, int, int], per_phase: int, seed: int) -> Path:
    """Fields of every phase (cells all in that phase) and a manifest; returns the manifest path."""
    rows = []
    for p_i, phase in enumerate(PHASES):
        cfg = SimulationConfig(
            seed=seed,
            shape=shape,
            cells_per_field=(2, 3),
            phases=[phase],
            targets=["dna"],
            n_fields=per_phase,
        )
        for i in range(per_phase):
            name = f"field_{p_i * per_phase + i:03d}"
            files = write_field(simulate_field(cfg, i), out / name)
            rows.append({"field": name, "phase": phase, **{k: f"{name}/{v}" for k, v in files.items()}})
    return write_table(out / "manifest.csv", pd.DataFrame(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small field per phase")
    args = ap.parse_args()
    shape = (20, 160, 160) if args.quick else (32, 256, 256)
    per_phase = 1 if args.quick else 2
    work = Path(tempfile.mkdtemp(prefix="stainfree-phases-"))
    try:
        t0 = time.perf_counter()
        manifest = simulate(work / "sim", shape, per_phase, seed=7)
        t_sim = time.perf_counter() - t0
        cfg = QuantifyConfig(figures=not args.quick)
        tables = api.quantify(manifest, work / "q", config=cfg, group_by="phase")
        t_q = time.perf_counter() - t0 - t_sim
        g = tables["groups"].set_index(["phase", "structure"])

        def val(phase: str, structure: str, col: str) -> float | None:
            try:
                v = float(g.loc[(phase, structure), col])
            except KeyError:
                return 0.0
            return None if v != v else round(v, 4)  # NaN (no nucleus) -> null in the JSON

        res: dict[str, object] = {"fields": len(PHASES) * per_phase, "shape": list(shape)}
        for p in PHASES:
            cells = tables["groups"]
            res[f"{p}_cells"] = (
                int(cells.loc[cells["phase"] == p, "cells"].max()) if (cells["phase"] == p).any() else 0
            )
            res[f"{p}_nucleus_volume_per_cell_um3"] = val(p, "nucleus", "volume_per_cell_um3")
            res[f"{p}_golgi_objects_per_cell"] = val(p, "golgi", "objects_per_cell")
            res[f"{p}_golgi_mean_volume_um3"] = val(p, "golgi", "mean_volume_um3")
            res[f"{p}_mito_objects_per_cell"] = val(p, "mitochondria", "objects_per_cell")
            res[f"{p}_mito_mean_volume_um3"] = val(p, "mitochondria", "mean_volume_um3")
            res[f"{p}_pm_fraction"] = val(p, "plasma_membrane", "volume_fraction")
            res[f"{p}_mito_voxel_median_nucleus_distance_um"] = val(
                p, "mitochondria", "median_voxel_nucleus_distance_um"
            )
        i, m = "interphase", "metaphase"
        res["trend_nucleus_near_zero_metaphase"] = bool(
            res[f"{m}_nucleus_volume_per_cell_um3"] < 0.05 * res[f"{i}_nucleus_volume_per_cell_um3"]  # type: ignore[operator]
        )
        for short in ("golgi", "mito"):
            res[f"trend_{short}_more_objects_metaphase"] = bool(
                res[f"{m}_{short}_objects_per_cell"] > res[f"{i}_{short}_objects_per_cell"]  # type: ignore[operator]
            )
            res[f"trend_{short}_smaller_metaphase"] = bool(
                res[f"{m}_{short}_mean_volume_um3"] < res[f"{i}_{short}_mean_volume_um3"]  # type: ignore[operator]
            )
        res["all_trends"] = all(v for k, v in res.items() if k.startswith("trend_"))
        res["simulate_s"] = round(t_sim, 1)
        res["quantify_s"] = round(t_q, 1)
        if not args.quick:
            for src, dst in (
                ("groups_bars.png", "phases_bars.png"),
                ("groups_distances.png", "phases_distances.png"),
            ):
                if (work / "q" / src).is_file():
                    shutil.copyfile(work / "q" / src, RESULTS / dst)
        finish("phases", res, quick=args.quick)
    finally:
        if os.environ.get("STAINFREE_KEEP_BENCH") is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
