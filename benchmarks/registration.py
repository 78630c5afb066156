"""Registration benchmark: EM tiles placed in a large IF image through the predicted IF (issue 15).

After Ounkomol et al. 2018 (EM -> MBP-IF: 86 of 90 tiles converged, mean error 1.16 +/- 0.79 IF px):

- simulated: an EM -> MBP-IF model is trained (stainfree's default recipe, ``train.max_time`` = the budget) on
  registered EM / IF pairs of separate simulated fields resampled to the IF pixel size (0.1 um); ``--tiles``
  EM tiles (15 x 15 um at 0.05 um, rotation up to +/- 10 degrees, scale change up to +/- 5%) are placed at
  random in a held-out field (102.4 x 102.4 um) that no training pair comes from. Each tile is resampled,
  predicted (reflection padding), filtered by content and registered; the same registration on the raw EM
  (no prediction) of the tiles that passed the filter is the baseline.
- real: ``../shared/data/clem_em_chromatin`` (four registered SEM / chromatin sections); an EM -> chromatin
  model is trained on s6-s8; crops of s9's EM (384 x 384, rotation up to +/- 10 degrees, scale change up to
  +/- 5%) placed at random are registered in s9's whole chromatin image; the real stain is sparse, so these
  are refined by maximizing the correlation (``refine="ncc"``), not by optical flow.

The fraction converged is over the tiles that passed the content filter; the error (mean displacement over
the tile, in target pixels) is the mean +/- sd over the converged tiles. Prints ``name: value`` lines and
writes ``benchmarks/results/registration.json`` (``converged_fraction``, ``mean_error_px``,
``baseline_converged_fraction``, ``real_converged_fraction``, ``real_mean_error_px``, ...). Goal: >= 95%
converged with mean error <= 1.0 IF px.

Run: ``.venv/bin/python benchmarks/registration.py [--quick] [--budget S] [--real-budget S] [--tiles N]``;
the full run takes the two budgets plus a few minutes; ``--quick`` trains a few seconds on small fields and
registers 2 tiles each (a smoke test, figures meaningless).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, SHARED_DATA, finish, set_threads

#: The real chromatin stain is sparse (a few labelled nuclei in a dark field; the model also "stains" nuclei
#: the real label misses): the optical flow has little to follow, so the real crops are refined by maximizing
#: the correlation (``refine="ncc"``), which also refuses ambiguous best placements. That refinement smooths
#: on its own (sigma 4, 2, 1 px, coarse to fine): no extra smoothing first.
REAL_REFINE = "ncc"
REAL_SMOOTH = 0.0


def _czyx(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)[None, None]


def train(xs: list[np.ndarray], ys: list[np.ndarray], budget_s: float, work: Path, name: str) -> Any:
    """An EM -> fluorescence 2D bundle trained with the default recipe in ``budget_s`` seconds (loaded)."""
    from stainfree.config import DataConfig, TrainConfig, TrainingJob
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays

    job = TrainingJob(
        name=name,
        output_dir=work / name,
        data=DataConfig(input_mode="2d"),
        train=TrainConfig(max_time=budget_s),
    )
    return load_bundle(fit_arrays([_czyx(x) for x in xs], [_czyx(y) for y in ys], job))


def evaluate(
    tiles: list[tuple[np.ndarray, Any]],
    target: np.ndarray,
    bundle: Any,
    factor: float,
    prefix: str,
    smooth: float = 0.0,
    refine: Any = "flow",
) -> dict[str, Any]:
    """Register every tile through its prediction; baseline: the raw EM of those that passed the filter.

    ``tiles_with_target_content``: of the tiles that passed the filter, those whose TRUE footprint in the
    target holds content by the same rule (1% of the pixels above half the target's robust maximum): the
    tiles that can be registered at all (an analysis figure; the registration never sees the truth).
    """
    from stainfree.register import content_fraction, mean_displacement_error, warp_into
    from stainfree.register.match import zscore
    from stainfree.workflows.register import content_reference, prepare_tile, register_tile

    target_z = zscore(target)
    bg, top = np.percentile(target_z, (50.0, 99.9))
    level = float(bg + 0.5 * (top - bg))
    t0 = time.perf_counter()
    preds = [prepare_tile(tile, bundle=bundle, factor=factor) for tile, _ in tiles]
    reference = content_reference([p[0] for p in preds])
    errors, base_errors, n_ok, n_conv, n_base, n_wrong, n_able = [], [], 0, 0, 0, 0, 0
    for (tile, truth), (pred, pred_to_tile) in zip(tiles, preds, strict=True):
        res = register_tile(pred, pred_to_tile, target_z, reference=reference, smooth=smooth, refine=refine)
        if res.tile_to_target is None or res.registration is None:
            continue
        n_ok += 1
        n_able += content_fraction(warp_into(target_z, truth, tile.shape), level) > 0.01
        err = mean_displacement_error(truth, res.tile_to_target, tile.shape)
        if res.registration.converged:
            n_conv += 1
            errors.append(err)
            n_wrong += err > 5.0
        raw, raw_to_tile = prepare_tile(tile, factor=factor)
        base = register_tile(
            raw,
            raw_to_tile,
            target_z,
            reference=reference,
            check_content=False,
            smooth=smooth,
            refine=refine,
        )
        assert base.registration is not None and base.tile_to_target is not None
        b_err = mean_displacement_error(truth, base.tile_to_target, tile.shape)
        base_errors.append(b_err)
        n_base += base.registration.converged
    per_tile = (time.perf_counter() - t0) / max(len(tiles), 1)
    e = np.array(errors) if errors else None

    def stat(f: Any) -> float | None:
        return None if e is None else round(float(f(e)), 4)

    return {
        f"{prefix}tiles": len(tiles),
        f"{prefix}tiles_with_content": n_ok,
        f"{prefix}tiles_with_target_content": n_able,
        f"{prefix}converged": n_conv,
        f"{prefix}converged_fraction": round(n_conv / max(n_ok, 1), 4),
        f"{prefix}mean_error_px": stat(np.mean),
        f"{prefix}sd_error_px": stat(np.std),
        f"{prefix}median_error_px": stat(np.median),
        f"{prefix}converged_but_wrong": int(n_wrong),
        f"{prefix}baseline_converged_fraction": round(n_base / max(n_ok, 1), 4),
        f"{prefix}baseline_within_2px_fraction": round(
            float(np.mean(np.array(base_errors) < 2.0)) if base_errors else 0.0, 4
        ),
        f"{prefix}seconds_per_tile": round(per_tile, 3),
        f"{prefix}smooth_px": smooth,
    }


def simulated(budget: float, n_tiles: int, quick: bool, work: Path, seed: int = 2019) -> dict[str, Any]:
    """Train on separate simulated fields, register tiles placed at random in a held-out field."""
    from stainfree.simulate.conjugate import em_tile, random_placement, simulate_conjugate, training_pair

    size = 25.6 if quick else 102.4
    n_train = 1 if quick else 4
    t0 = time.perf_counter()
    pairs = [training_pair(simulate_conjugate(100 + k, size_um=size)) for k in range(n_train)]
    test = simulate_conjugate(seed, size_um=size)  # training fields are seeds 100-103
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bundle = train([p[0] for p in pairs], [p[1] for p in pairs], budget, work, "em2mbp")
    train_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(n_tiles):
        pl = random_placement(rng, test)
        tiles.append(
            em_tile(
                test, (pl["cy"], pl["cx"]), rotation_deg=pl["rotation_deg"], scale_change=pl["scale_change"]
            )
        )
    out = evaluate(tiles, test.fluorescence, bundle, 0.05 / test.if_pixel_um, "")
    out.update(
        simulate_s=round(sim_s, 1),
        train_s=round(train_s, 1),
        steps=bundle.config.training["steps"],
        budget_s=budget,
        seed=seed,
    )
    return out


def real(budget: float, n_tiles: int, quick: bool, work: Path) -> dict[str, Any] | None:
    """Train EM -> chromatin on s6-s8, register crops of s9's EM placed at random in s9's chromatin."""
    import imageio.v3 as iio

    from stainfree.register import about_center, warp_into

    root = SHARED_DATA / "clem_em_chromatin"
    if not (root / "s9_EM.png").is_file():
        return None
    em = [iio.imread(root / f"s{s}_EM.png").astype(np.float32) for s in (6, 7, 8, 9)]
    fm = [iio.imread(root / f"s{s}_FM_chromatin.png").astype(np.float32) for s in (6, 7, 8, 9)]
    if quick:
        em = [a[:256, :256] for a in em[:3]] + [em[3][:384, :384]]
        fm = [a[:256, :256] for a in fm[:3]] + [fm[3][:384, :384]]
    t0 = time.perf_counter()
    bundle = train(em[:3], fm[:3], budget, work, "em2chromatin")
    train_s = time.perf_counter() - t0
    rng = np.random.default_rng(2020)
    shape = (128, 128) if quick else (384, 384)
    h, w = em[3].shape
    half = 0.5 * np.hypot(*shape) * 1.05 + 1
    tiles = []
    for _ in range(n_tiles):
        cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
        truth = about_center(shape, 1 + rng.uniform(-0.05, 0.05), rng.uniform(-10, 10), (cx, cy))
        tiles.append((warp_into(em[3], truth, shape, cval=0.0), truth))
    out = evaluate(tiles, fm[3], bundle, 1.0, "real_", smooth=REAL_SMOOTH, refine=REAL_REFINE)
    out.update(
        real_train_s=round(train_s, 1), real_steps=bundle.config.training["steps"], real_budget_s=budget
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures meaningless)")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds, simulated model")
    parser.add_argument("--real-budget", type=float, default=300.0, help="training seconds, real model")
    parser.add_argument("--tiles", type=int, default=150, help="held-out tiles placed (simulated)")
    parser.add_argument("--real-tiles", type=int, default=100, help="held-out crops (real)")
    parser.add_argument(
        "--merge", action="store_true", help="update the existing results file instead of replacing it"
    )
    parser.add_argument(
        "--seed", type=int, default=2019, help="seed of the held-out field and tile placements"
    )
    parser.add_argument("--parts", default="sim,real", help="comma-separated: sim, real")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    set_threads(args.threads)
    quick = bool(args.quick)
    budget = 3.0 if quick else args.budget
    real_budget = 3.0 if quick else args.real_budget
    results: dict[str, Any] = {"quick": quick}
    with tempfile.TemporaryDirectory(prefix="stainfree_registration_") as tmp:
        parts = {p.strip() for p in args.parts.split(",")}
        if "sim" in parts:
            results.update(simulated(budget, 2 if quick else args.tiles, quick, Path(tmp), args.seed))
        r = real(real_budget, 2 if quick else args.real_tiles, quick, Path(tmp)) if "real" in parts else {}
    if r is None:
        print(f"real: skipped, clem_em_chromatin is not in {SHARED_DATA}")
    else:
        results.update(r)
    if args.merge and not quick and (RESULTS / "registration.json").is_file():
        import json

        results = {**json.loads((RESULTS / "registration.json").read_text()), **results}
    finish("registration", results, quick=quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
