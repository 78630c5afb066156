"""Scale benchmark (issue 11): prediction and training speed against fnet-style code on one machine, and
the Dask figures of ``_scale_dask.py`` when that module is present.

(a) ``predict_vs_fnet_style``: voxels/s of predicting a 32 x 512 x 512 stack with the fnet-size network
    (fnet's U-Net: depth 4, 32 base channels, the same seeded weights on both sides) by stainfree's
    ``predict_array`` with the defaults a user of the CLI gets (32 x 256 x 256 tile, 3/16 overlap,
    cross-fade blending, batch norms folded, bf16 autocast where the CPU computes bf16 natively, channels-last
    activations, windows within the default 768 MiB activation budget (2 x 4 windows of 32 x 288 x 160 here),
    the allocator setting of the CLI) against a re-implementation of fnet's in-memory ``predict_piecewise``
    (pieces of at most 32 x 512 x 512 overlapping by 16, triangular weights, one fp32 forward pass per piece
    under ``no_grad``; for this stack one piece). ``predict_peak_rss_mb``: the peak resident memory of
    stainfree's process. ``predict_agreement_r``: the two outputs compared (a random network: a check that
    both compute the same function, not a precision figure; see the README for a trained bundle).
(b) ``train_vs_plain_loop``: training voxels/s on batch 24 of 32 x 64 x 64 patches with the same network:
    stainfree's ``fit_arrays`` (precision 'auto', its default little-data recipe) against a plain PyTorch loop
    (fp32, MSE, Adam, tensors already in memory); both after one warm-up step (stainfree's steps timed from
    the end of the first to the end of the last, so start-up, validation and export stay out).

Each side runs in its own process with its default threads, as a user of that code would run it; the sides
alternate (two rounds of prediction in a full run, one of training: a float32 step of batch 24 takes minutes
on 2 busy cores; every round is reported) and the figures are ratios of the same round (the median over
rounds is the headline). Goals: prediction >= 3x at <= 2048 MB, training >= 1.5x.
(c) ``volume_4gb_peak_rss_mb``, ``scaling_2_workers``, ``resume_time_ratio``, ``scheduler_pair_equal`` come
    from ``_scale_dask.measure(quick)`` when that module exists.

Run: ``nice -n 10 python benchmarks/scale.py`` (about 10 minutes on 2 busy cores; ``--quick``: tiny sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import finish

FULL = {
    "volume": (32, 512, 512),
    "net": (4, 32),
    "batch": 24,
    "patch": (32, 64, 64),
    "loop_steps": 1,
    "fit_steps": 1,
    "rounds": 2,
    "train_rounds": 1,
}
QUICK = {
    "volume": (16, 64, 300),
    "net": (2, 8),
    "batch": 2,
    "patch": (16, 32, 32),
    "loop_steps": 1,
    "fit_steps": 1,
    "rounds": 1,
    "train_rounds": 1,
}
FNET_DIMS_MAX = (32, 512, 512)  # fnet's predict_piecewise defaults for a (C, Z, Y, X) input
FNET_OVERLAP = 16


def _net(p: dict) -> Any:
    import torch

    from stainfree.models.unet import UNet

    torch.manual_seed(0)
    depth, base = p["net"]
    return UNet(1, 1, spatial_dims=3, depth=depth, base_channels=base)


def _volume(p: dict) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, *p["volume"]), dtype=np.float32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----- fnet-style in-memory piecewise prediction (a re-implementation, not fnet's code) --------------------


def _triangle(n: int) -> np.ndarray:
    from scipy.signal.windows import triang

    return triang(n).astype(np.float32)


def _fnet_pieces(predict: Any, x: np.ndarray, dims_max: list[int], overlaps: list[int]) -> tuple:
    """(weighted sum, weight sum) over ``x`` (C, *spatial): split the first axis longer than ``dims_max``
    into pieces of ``dims_max`` overlapping by ``overlaps`` (the last piece flush with the end), recursing
    until a piece fits; each piece's prediction is weighted by a separable triangle."""
    spatial = x.shape[1:]
    axis = next((a for a, (s, m) in enumerate(zip(spatial, dims_max, strict=True)) if s > m), None)
    if axis is None:
        y = predict(x)
        w = np.ones((), dtype=np.float32)
        for ax, n in enumerate(y.shape[1:]):
            shape = [1] * (y.ndim - 1)
            shape[ax] = n
            w = w * _triangle(n).reshape(shape)
        w = np.broadcast_to(w, y.shape[1:])
        return y * w, np.array(w)
    total: np.ndarray | None = None
    weight = np.zeros(spatial, dtype=np.float32)
    step = dims_max[axis] - overlaps[axis]
    start = 0
    while True:
        stop = min(start + dims_max[axis], spatial[axis])
        start = stop - dims_max[axis]
        index = [slice(None)] * len(spatial)
        index[axis] = slice(start, stop)
        y, w = _fnet_pieces(predict, x[(slice(None), *index)], dims_max, overlaps)
        if total is None:
            total = np.zeros((y.shape[0], *spatial), dtype=np.float32)
        total[(slice(None), *index)] += y
        weight[tuple(index)] += w
        if stop == spatial[axis]:
            break
        start += step
    assert total is not None
    return total, weight


def fnet_style_predict(net: Any, x: np.ndarray) -> np.ndarray:
    """fnet's ``predict_piecewise`` of a (C, Z, Y, X) array, in memory: pieces of at most 32 x 512 x 512
    overlapping by 16, fp32 forward passes under ``no_grad``, triangular weights, normalised where > 0."""
    import torch

    net.eval()

    def predict(piece: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(piece))[None]).cpu().numpy()[0]

    dims_max = [min(m, s) for m, s in zip(FNET_DIMS_MAX, x.shape[1:], strict=True)]
    total, weight = _fnet_pieces(predict, x, dims_max, [FNET_OVERLAP] * 3)
    mask = np.broadcast_to(weight > 0, total.shape)
    total[mask] /= np.broadcast_to(weight, total.shape)[mask]
    return total


# ----- the sides, each run in its own process --------------------------------------------------------------


def side_predict_stainfree(p: dict, out: Path) -> dict:
    from stainfree.inference.tiling import predict_array
    from stainfree.inference.windows import native_bf16
    from stainfree.runtime import keep_freed_memory

    keep_freed_memory()  # what the CLI sets at start-up
    net, x = _net(p), _volume(p)
    bf16 = native_bf16("cpu")  # the CLI's default
    t0 = time.perf_counter()
    y = predict_array(net, x, spatial_dims=3, bf16=bf16)
    seconds = time.perf_counter() - t0
    np.save(out, y)
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "bf16": bf16}


def side_predict_fnet(p: dict, out: Path) -> dict:
    net, x = _net(p), _volume(p)
    t0 = time.perf_counter()
    y = fnet_style_predict(net, x)
    seconds = time.perf_counter() - t0
    np.save(out, y)
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def side_train_plain(p: dict, out: Path) -> dict:
    import torch

    net = _net(p).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p["batch"], 1, *p["patch"], generator=gen)
    y = torch.randn(p["batch"], 1, *p["patch"], generator=gen)

    def step() -> None:
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(p["loop_steps"]):
        step()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "voxels_per_s": p["loop_steps"] * x.numel() / seconds}


def side_train_stainfree(p: dict, out: Path) -> dict:
    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.models.bundle import load_bundle
    from stainfree.runtime import keep_freed_memory
    from stainfree.train.fit import fit_arrays
    from stainfree.train.module import TrainModule

    keep_freed_memory()  # what the CLI sets at start-up
    rng = np.random.default_rng(1)
    z, y, x = p["patch"][0], p["patch"][1] * 4, p["patch"][2] * 4
    target = rng.random((1, z, y, x), dtype=np.float32)
    signal = (target + 0.3 * rng.standard_normal(target.shape)).astype(np.float32)
    depth, base = p["net"]
    steps = p["fit_steps"] + 1
    ends: list[float] = []

    def on_train_batch_end(self: Any, *args: Any) -> None:  # an observer only: the time each step ends
        ends.append(time.perf_counter())

    TrainModule.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]
    job = TrainingJob(
        name="scale",
        data=DataConfig(voxel_size_um=None, patch_shape=list(p["patch"])),
        model=ModelConfig(depth=depth, base_channels=base),
        train=TrainConfig(max_steps=steps, batch_size=p["batch"], val_every_n_steps=steps),
        output_dir=out.parent / "fit",
    )
    t0 = time.perf_counter()
    bundle = fit_arrays([signal], [target], job)
    overall = time.perf_counter() - t0
    # the steady pace: from the end of the first step (start-up, first-call costs) to the end of the last
    # (validation and export come after it)
    per_step = (ends[-1] - ends[0]) / (len(ends) - 1)
    voxels = p["batch"] * int(np.prod(p["patch"]))
    return {
        "seconds_per_step": per_step,
        "voxels_per_s": voxels / per_step,
        "overall_voxels_per_s": steps * voxels / overall,
        "precision": load_bundle(bundle).config.training.get("precision", ""),
    }


SIDES = {
    "predict_stainfree": side_predict_stainfree,
    "predict_fnet": side_predict_fnet,
    "train_stainfree": side_train_stainfree,
    "train_plain": side_train_plain,
}


def _run_side(name: str, quick: bool, work: Path) -> dict:
    """Run one side in a fresh process (default threads) and read its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", name, "--work", str(work)]
    if quick:
        cmd.append("--quick")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("SIDE ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"side {name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return dict(json.loads(lines[-1][5:]))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def measure(p: dict, quick: bool, results: dict[str, Any]) -> None:
    voxels = int(np.prod(p["volume"]))
    predict_ratios, train_ratios, rss = [], [], []
    with tempfile.TemporaryDirectory(prefix="stainfree_scale_") as tmp:
        work = Path(tmp)
        for rnd in range(p["rounds"]):
            order = ("stainfree", "fnet") if rnd % 2 == 0 else ("fnet", "stainfree")
            got = {side: _run_side(f"predict_{side}", quick, work) for side in order}
            s, f = got["stainfree"], got["fnet"]
            results[f"round{rnd + 1}_predict_stainfree_s"] = round(s["seconds"], 2)
            results[f"round{rnd + 1}_predict_fnet_style_s"] = round(f["seconds"], 2)
            results[f"round{rnd + 1}_predict_fnet_style_peak_rss_mb"] = round(f["peak_rss_mb"])
            predict_ratios.append(f["seconds"] / s["seconds"])
            rss.append(s["peak_rss_mb"])
            results["predict_bf16"] = bool(s["bf16"])
            if rnd == 0:  # the two sides compute the same function (bf16 and the tiling aside)
                a, b = np.load(work / "predict_stainfree.npy"), np.load(work / "predict_fnet.npy")
                results["predict_agreement_r"] = round(_pearson(a, b), 6)
                results["predict_agreement_max_abs_diff"] = round(float(np.abs(a - b).max()), 4)
                results["predict_output_range"] = round(float(b.max() - b.min()), 4)
            if rnd >= p["train_rounds"]:
                continue
            order = ("stainfree", "plain") if rnd % 2 == 0 else ("plain", "stainfree")
            tgot = {side: _run_side(f"train_{side}", quick, work) for side in order}
            ts, tp = tgot["stainfree"], tgot["plain"]
            results[f"round{rnd + 1}_train_stainfree_voxels_per_s"] = round(ts["voxels_per_s"])
            results[f"round{rnd + 1}_train_stainfree_overall_voxels_per_s"] = round(
                ts["overall_voxels_per_s"]
            )
            results[f"round{rnd + 1}_train_plain_voxels_per_s"] = round(tp["voxels_per_s"])
            results["train_precision"] = ts["precision"]
            train_ratios.append(ts["voxels_per_s"] / tp["voxels_per_s"])
    results["predict_voxels"] = voxels
    results["predict_vs_fnet_style"] = round(float(np.median(predict_ratios)), 3)
    results["predict_peak_rss_mb"] = round(max(rss))
    results["train_vs_plain_loop"] = round(float(np.median(train_ratios)), 3)
    for i, ratio in enumerate(predict_ratios):
        results[f"round{i + 1}_predict_vs_fnet_style"] = round(ratio, 3)
    for i, ratio in enumerate(train_ratios):
        results[f"round{i + 1}_train_vs_plain_loop"] = round(ratio, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    p = QUICK if args.quick else FULL
    if args.side:
        import logging
        import warnings

        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        out = SIDES[args.side](p, args.work / f"{args.side}.npy")
        print("SIDE " + json.dumps(out), flush=True)
        return 0
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "quick": bool(args.quick),
        "cpu_count": os.cpu_count(),
        "volume": "x".join(map(str, p["volume"])),
        "net": "fnet U-Net depth {}, {} base channels".format(*p["net"]),
        "train_batch": f"{p['batch']} x " + "x".join(map(str, p["patch"])),
    }
    measure(p, args.quick, results)
    try:
        from _scale_dask import measure as dask_measure  # type: ignore[import-not-found]
    except ImportError:
        print("note: benchmarks/_scale_dask.py not present: the Dask figures are skipped")
    else:
        results.update(dask_measure(args.quick))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    finish("scale", results, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
