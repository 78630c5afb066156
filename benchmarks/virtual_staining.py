"""Virtual staining benchmark: accuracy on simulated cells, throughput, memory, a real image pair.

(a) Accuracy. Simulated fields (``stainfree.simulate``, 32 x 256 x 256 voxels of 0.29 x 0.108 x 0.108 um)
    are split into four training and two held-out fields (never trained on). One 3D fnet-style U-Net (depth
    3, 16 base channels) learns bright-field -> DNA, membrane, mitochondria and ER (four output channels)
    with ``stainfree.train.fit.fit_arrays``. As in fnet the data are resampled to isotropic 0.29 um (7x fewer
    voxels than native, so that enough steps fit); 32 x 48 x 48 patches, batch 4, Adam lr 2e-3, one thread.
    The training budget is 600 CPU seconds (``time.process_time``): steps = 0.85 x budget / the CPU seconds
    of one step of the same network in the baseline loop of (b); the CPU seconds ``fit_arrays`` really used
    are reported (``dna_train_cpu_s``). Held-out fields are predicted with ``predict_with_bundle``
    (resampled to 0.29 um, the prediction back onto the native grid) and scored there against the noisy
    target: Pearson r and r/C_max, C_max exact from the simulator's noise-free targets. Goal: DNA r/C_max
    >= 0.9 (``dna_goal_r_over_cmax_ge_0.9``).
(b) Throughput and memory, each against a straightforward baseline measured in the same run:
    - training patches/s of stainfree (images prepared once, patches sampled in memory, Lightning; its time
      includes validation and checkpoints) vs a loop that reads both images from disk, normalises them and
      crops a patch for every sample of every step (same network, batch and optimizer);
    - prediction voxels/s of ``predict_array`` (Gaussian sliding window, default tile) vs one forward pass
      over the whole image;
    - peak memory (resource.getrusage maxrss, each in a fresh subprocess) of predicting a 64 x 1024 x 1024
      volume read lazily from Zarr and written to OME-Zarr, vs fnet-style in-memory tiling (whole volume,
      output and weight sums in RAM, triangular weights). This uses a light two-layer conv net so that it fits
      the CPU budget: the memory bound comes from the blocks, not from the net.
(c) Real pair (../shared/data/phase_dapi_2d, skipped when absent): a 2D net learns phase -> DAPI on the top
    half and predicts the bottom half; Pearson r.

Run: ``.venv/bin/python benchmarks/virtual_staining.py [--quick]``: about 12 minutes on 2 cores; ``--quick``
(tiny fields, a few steps, a 16 x 256 x 256 memory volume, no real pair) under 30 s. Results:
``benchmarks/results/virtual_staining.json`` (``virtual_staining_quick.json`` for ``--quick``).
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

import numpy as np

from _common import SHARED_DATA, finish

SHARED = SHARED_DATA / "phase_dapi_2d"

FULL = {
    "mode": "3d",
    "n_train": 4,
    "n_test": 2,
    "shape": (32, 256, 256),
    "voxel_size_um": (0.29, 0.29, 0.29),
    "patch": [32, 48, 48],
    "depth": 3,
    "base": 16,
    "batch": 4,
    "lr": 2e-3,
    "train_threads": 1,
    "train_cpu_budget_s": 600.0,
    "step_safety": 0.85,
    "min_steps": 60,
    "max_steps": 5000,
    "baseline_steps": 6,
    "tile": None,
    "throughput_shape": (32, 256, 256),
    "memory_shape": (64, 1024, 1024),
    "real_steps": 80,
}
QUICK = {
    "mode": "3d",
    "n_train": 2,
    "n_test": 1,
    "shape": (16, 64, 64),
    "voxel_size_um": (0.29, 0.29, 0.29),
    "patch": [8, 16, 16],
    "depth": 2,
    "base": 4,
    "batch": 2,
    "lr": 2e-3,
    "train_threads": 1,
    "train_cpu_budget_s": 1.0,
    "step_safety": 0.85,
    "min_steps": 4,
    "max_steps": 8,
    "baseline_steps": 3,
    "tile": None,
    "throughput_shape": (8, 64, 64),
    "memory_shape": (16, 256, 256),
    "real_steps": 0,
}
STRUCTURES = ["dna", "membrane", "mitochondria", "er"]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _vm_hwm_mb() -> float | None:
    """Peak RSS of this process from /proc (a cross-check of ru_maxrss); None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _zscore(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return (a - a.mean()) / (a.std() + 1e-8)


# ----- (a) simulated fields and training ------------------------------------------------------------------


def simulate(p: dict, seed: int = 0) -> list:
    from stainfree.config import SimulationConfig
    from stainfree.simulate import simulate_field

    cfg = SimulationConfig(
        n_fields=p["n_train"] + p["n_test"],
        shape=p["shape"],
        seed=seed,
        targets=STRUCTURES,
        cells_per_field=(2, 3),
    )
    return [simulate_field(cfg, i) for i in range(cfg.n_fields)]


def training_job(p: dict, steps: int, out_dir: Path, name: str = "virtual_staining") -> object:
    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob

    return TrainingJob(
        name=name,
        data=DataConfig(
            voxel_size_um=p["voxel_size_um"], patch_shape=p["patch"], input_mode=p["mode"], val_fraction=0.0
        ),
        model=ModelConfig(depth=p["depth"], base_channels=p["base"]),
        train=TrainConfig(
            max_steps=steps,
            batch_size=p["batch"],
            lr=p["lr"],
            val_every_n_steps=max(1, steps // 10),
            val_patches=4,
            checkpoint_every_n_steps=steps,
            export="last",
        ),
        output_dir=out_dir,
    )


def field_meta(f: object, axes: str, shape: tuple, names: tuple = ()) -> object:
    """ImageMeta of a simulated array with the simulator's voxel size (so that training resamples it)."""
    from stainfree.types import ImageMeta

    return ImageMeta(
        axes=axes,
        shape=tuple(shape),
        dtype="float32",
        voxel_size_um=tuple(f.voxel_size_um),
        channel_names=tuple(names) or ("brightfield",),
    )


def baseline_training(files: list[tuple[Path, Path]], p: dict) -> tuple[float, float]:
    """Patches/s of the straightforward loop: read, normalise and crop from disk for every sample.

    Returns (patches per second, CPU seconds per step spent in the network alone).
    """
    import tifffile
    import torch

    from stainfree.models.unet import UNet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dims = 2 if p["mode"] == "2d" else 3
    model = UNet(1, len(STRUCTURES), spatial_dims=dims, depth=p["depth"], base_channels=p["base"])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    pz, py, px = p["patch"] if dims == 3 else [1, *p["patch"]]
    t0 = time.perf_counter()
    net_s = []
    for _ in range(p["baseline_steps"]):
        xs, ys = [], []
        for _ in range(p["batch"]):
            sig_path, tgt_path = files[rng.integers(len(files))]
            sig = _zscore(tifffile.imread(sig_path))
            tgt = np.stack([_zscore(c) for c in tifffile.imread(tgt_path)])
            z = rng.integers(sig.shape[0] - pz + 1)
            y = rng.integers(sig.shape[1] - py + 1)
            x = rng.integers(sig.shape[2] - px + 1)
            xs.append(sig[None, z : z + pz, y : y + py, x : x + px])
            ys.append(tgt[:, z : z + pz, y : y + py, x : x + px])
        xb, yb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        if dims == 2:
            xb, yb = xb[:, :, 0], yb[:, :, 0]
        t_net = time.process_time()  # CPU seconds: a budget that does not depend on other load on the machine
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        net_s.append(time.process_time() - t_net)
    dt = time.perf_counter() - t0
    return p["baseline_steps"] * p["batch"] / dt, float(np.median(net_s[1:] or net_s))  # first step warms up


def part_a_b_training(p: dict, work: Path, results: dict) -> object:
    """Simulate, train (stainfree and baseline), predict held-out fields, score; returns the bundle."""
    import torch

    from stainfree.evaluate.evaluate import evaluate_regression
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.io.writers import write_ome_tiff
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays

    t0 = time.perf_counter()
    fields = simulate(p)
    train, test = fields[: p["n_train"]], fields[p["n_train"] :]
    results["simulate_s"] = round(time.perf_counter() - t0, 2)
    results["voxel_size_native_um"] = list(train[0].voxel_size_um)
    results["voxel_size_train_um"] = list(p["voxel_size_um"]) if p["voxel_size_um"] else None

    files = []
    for i, f in enumerate(train):
        s = write_ome_tiff(work / f"bf_{i}.ome.tif", f.brightfield.astype(np.float32), "ZYX")
        t = write_ome_tiff(work / f"fl_{i}.ome.tif", f.fluorescence.astype(np.float32), "CZYX")
        files.append((s, t))
    threads = torch.get_num_threads()
    torch.set_num_threads(p["train_threads"])  # CPU seconds per step are lowest on one thread
    try:
        # the baseline's network seconds per step (same net, batch and patch voxels) set the number of steps
        base_rate, step_s = baseline_training(files, p)
        budget = p["train_cpu_budget_s"]
        steps = int(np.clip(p["step_safety"] * budget / max(step_s, 1e-3), p["min_steps"], p["max_steps"]))
        job = training_job(p, steps, work / "run")
        signals = [f.brightfield[None].astype(np.float32) for f in train]
        targets = [f.fluorescence.astype(np.float32) for f in train]
        smetas = [field_meta(f, "CZYX", s.shape) for f, s in zip(train, signals, strict=True)]
        tmetas = [field_meta(f, "CZYX", t.shape, STRUCTURES) for f, t in zip(train, targets, strict=True)]
        cpu0, t0 = time.process_time(), time.perf_counter()
        bundle_path = fit_arrays(signals, targets, job, signal_metas=smetas, target_metas=tmetas)
        train_cpu = time.process_time() - cpu0
        fit_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    bundle = load_bundle(bundle_path)
    summary = bundle.config.training
    train_s = float(summary.get("seconds") or fit_s)
    rate = steps * p["batch"] / train_s
    results.update(
        {
            "train_cpu_budget_s": budget,
            "train_threads": p["train_threads"],
            "train_net_cpu_s_per_step": round(step_s, 3),
            "train_steps": steps,
            "train_patch": p["patch"],
            "train_batch": p["batch"],
            "dna_train_cpu_s": round(train_cpu, 1),
            "dna_train_within_budget": bool(train_cpu <= budget),
            "train_seconds": round(train_s, 1),
            "train_final_loss": summary.get("final_train_loss", summary.get("train_loss")),
            "baseline_train_patches_per_s": round(base_rate, 3),
            "train_patches_per_s": round(rate, 3),
            "train_throughput_ratio_vs_disk_baseline": round(rate / base_rate, 2),
        }
    )
    print(f"trained {steps} steps in {train_cpu:.0f} CPU s ({fit_s:.0f} s wall); run folder {work / 'run'}")

    pairs, cleans = [], []
    for i, f in enumerate(test):
        bf = f.brightfield.astype(np.float32)
        pred, _ = predict_with_bundle(bundle, bf, field_meta(f, "ZYX", bf.shape), roi_size=p["tile"])
        pairs.append((f"test_{i}", f.fluorescence, pred))
        cleans.append(f.fluorescence_clean)
    table = evaluate_regression(pairs, STRUCTURES, clean_targets=cleans)
    means = table.groupby("structure", sort=False)[["pearson_r", "c_max", "r_over_cmax"]].mean()
    for s in STRUCTURES:
        results[f"{s}_r"] = round(float(means.loc[s, "pearson_r"]), 3)
        results[f"{s}_c_max"] = round(float(means.loc[s, "c_max"]), 3)
        results[f"{s}_r_over_cmax"] = round(float(means.loc[s, "r_over_cmax"]), 3)
    results["dna_goal_r_over_cmax_ge_0.9"] = bool(results["dna_r_over_cmax"] >= 0.9)
    return bundle


# ----- (b) prediction throughput and memory ---------------------------------------------------------------


def pad_to(x: np.ndarray, m: int) -> tuple[np.ndarray, tuple]:
    shape = x.shape[1:]
    pads = [(0, 0)] + [(0, -s % m) for s in shape]
    return np.pad(x, pads, mode="reflect"), tuple(slice(0, s) for s in shape)


def part_b_throughput(bundle: object, p: dict, results: dict) -> None:
    """Voxels/s of predict_array vs one full-image forward pass (in this process, same network)."""
    import torch

    from stainfree.inference.predict import predict_array

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, *p["throughput_shape"])).astype(np.float32)
    model = bundle.model.eval()
    dims = 2 if p["mode"] == "2d" else 3
    n = x[0].size
    t0 = time.perf_counter()
    predict_array(model, x, spatial_dims=dims, overlap=0.25)  # the default tile
    ours = n / (time.perf_counter() - t0)
    padded, crop = pad_to(x, 2 ** p["depth"])
    batch = torch.from_numpy(padded)[None] if dims == 3 else torch.from_numpy(padded).permute(1, 0, 2, 3)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(batch)  # every plane of the volume in one batch (2D) or the whole volume (3D)
    full = n / (time.perf_counter() - t0)
    results["predict_voxels_per_s"] = round(ours)
    results["baseline_full_forward_voxels_per_s"] = round(full)
    results["predict_throughput_ratio_vs_full_forward"] = round(ours / full, 3)


def light_net() -> object:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1))
    net.divisor = 1  # any size works; predict_array reads this
    return net.eval()


def worker(method: str, volume: str, out: str) -> None:
    """Subprocess body: predict the Zarr volume with the light net, print time and peak RSS as JSON."""
    import torch
    import zarr

    if method == "stainfree":
        import dask.array as da
        import monai.inferers  # noqa: F401 - imported here so that the timing below excludes it

        from stainfree.inference.predict import predict_array
        from stainfree.io.writers import create_ome_zarr
    torch.set_num_threads(2)
    rss_imports = _vm_hwm_mb()
    net = light_net()
    src = zarr.open_array(volume, mode="r")
    t0 = time.perf_counter()
    if method == "stainfree":
        lazy = da.from_zarr(src)[None]
        writer = {}

        def make(shape: tuple, dtype: object) -> object:
            writer["w"] = create_ome_zarr(out, shape, dtype, "CZYX", chunks=(1, 16, 256, 256))
            return writer["w"].array

        predict_array(
            net,
            lazy,
            spatial_dims=3,
            roi_size=(32, 128, 128),
            overlap=0.25,
            out=make,
        )
        writer["w"].finalize()
    else:
        x = np.asarray(src[...], dtype=np.float32)[None]
        fnet_tiling(net, x, (32, 128, 128), overlap=0.25)
    dt = time.perf_counter() - t0
    report = {
        "seconds": dt,
        "maxrss_mb": _maxrss_mb(),
        "vm_hwm_mb": _vm_hwm_mb(),
        "rss_after_imports_mb": rss_imports,
    }
    print(json.dumps(report))


def fnet_tiling(net: object, x: np.ndarray, tile: tuple, overlap: float) -> np.ndarray:
    """In-memory tiling as fnet does it: triangular weights, output and weight sums for the whole volume."""
    import torch

    shape = x.shape[1:]
    tile = tuple(min(t, s) for t, s in zip(tile, shape, strict=True))
    out = None
    weights = np.zeros(shape, dtype=np.float32)
    ramps = []
    for t in tile:
        r = np.minimum(np.arange(1, t + 1), np.arange(t, 0, -1)).astype(np.float32)
        ramps.append(r / r.max())
    w_tile = ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    starts = []
    for s, t in zip(shape, tile, strict=True):
        step = max(1, int(t * (1 - overlap)))
        st = list(range(0, max(s - t, 0) + 1, step))
        if st[-1] + t < s:
            st.append(s - t)
        starts.append(st)
    with torch.inference_mode():
        for z in starts[0]:
            for y in starts[1]:
                for xx in starts[2]:
                    sl = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(xx, xx + tile[2]))
                    pred = net(torch.from_numpy(np.ascontiguousarray(x[(slice(None), *sl)]))[None])[0].numpy()
                    if out is None:
                        out = np.zeros((pred.shape[0], *shape), dtype=np.float32)
                    out[(slice(None), *sl)] += pred * w_tile
                    weights[sl] += w_tile
    return out / np.maximum(weights, 1e-8)


def part_b_memory(p: dict, work: Path, results: dict) -> None:
    """Peak RSS of predicting a big volume: stainfree (lazy in, Zarr out) vs fnet-style in-memory tiling."""
    import zarr

    shape = p["memory_shape"]
    volume = work / "volume.zarr"
    arr = zarr.open_array(str(volume), mode="w", shape=shape, chunks=(16, 256, 256), dtype="float32")
    rng = np.random.default_rng(2)
    for z in range(0, shape[0], 16):
        arr[z : z + 16] = rng.normal(size=(min(16, shape[0] - z), *shape[1:])).astype(np.float32)
    measured = {}
    for method in ("stainfree", "fnet_tiling"):
        # a small launcher process starts the worker: a process started directly from this (large) one would
        # inherit its peak RSS in ru_maxrss across exec
        launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
        worker_cmd = [__file__, "--worker", method, "--volume", str(volume), "--out", str(work / "p.zarr")]
        cmd = [sys.executable, "-c", launcher, sys.executable, *worker_cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{method} worker failed: {res.stderr[-2000:]}")
        measured[method] = json.loads(res.stdout.strip().splitlines()[-1])
    ours, base = measured["stainfree"], measured["fnet_tiling"]
    label = "x".join(str(s) for s in shape)
    results[f"predict_{label}_peak_rss_mb"] = round(ours["maxrss_mb"])
    results[f"baseline_fnet_tiling_{label}_peak_rss_mb"] = round(base["maxrss_mb"])
    results["peak_rss_ratio_baseline_over_ours"] = round(base["maxrss_mb"] / ours["maxrss_mb"], 2)
    results["rss_after_imports_mb"] = round(ours["rss_after_imports_mb"])
    results["baseline_rss_after_imports_mb"] = round(base["rss_after_imports_mb"])
    n = float(np.prod(shape))
    results[f"predict_{label}_voxels_per_s_light_net"] = round(n / ours["seconds"])
    results[f"baseline_fnet_tiling_{label}_voxels_per_s_light_net"] = round(n / base["seconds"])


# ----- (c) real pair --------------------------------------------------------------------------------------


def part_c_real(p: dict, work: Path, results: dict) -> None:
    """Phase -> DAPI on a real 512 x 512 field: train 2D on the top half, predict the bottom half."""
    if p["real_steps"] <= 0:
        print("real pair: skipped in --quick (full run only)")
        results["real_phase_dapi_r"] = None
        return
    if not (SHARED / "phase.tif").is_file():
        print(f"real pair: skipped, {SHARED} not found")
        results["real_phase_dapi_r"] = None
        return
    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.evaluate.metrics import pearson
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.io.readers import read_image
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays

    phase, pmeta = read_image(SHARED / "phase.tif")
    dapi, _ = read_image(SHARED / "dapi.tif")
    phase, dapi = np.asarray(phase, dtype=np.float32), np.asarray(dapi, dtype=np.float32)
    half = phase.shape[0] // 2
    job = TrainingJob(
        name="phase_dapi",
        data=DataConfig(voxel_size_um=None, patch_shape=[128, 128], input_mode="2d", val_fraction=0.0),
        model=ModelConfig(depth=3, base_channels=16),
        train=TrainConfig(
            max_steps=p["real_steps"],
            batch_size=4,
            lr=2e-3,
            val_every_n_steps=p["real_steps"],
            val_patches=2,
            checkpoint_every_n_steps=p["real_steps"],
            export="last",
        ),
        output_dir=work / "real",
    )
    t0 = time.perf_counter()
    bundle = load_bundle(
        fit_arrays([phase[None, None, :half]], [dapi[None, None, :half]], job, progress=False)
    )
    bottom = phase[half:]
    from stainfree.types import ImageMeta

    pred, _ = predict_with_bundle(bundle, bottom, ImageMeta(axes="YX", shape=bottom.shape, dtype="float32"))
    results["real_phase_dapi_r"] = round(pearson(dapi[half:], pred[0]), 3)
    results["real_phase_dapi_seconds"] = round(time.perf_counter() - t0, 1)


# ----- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 30 s)")
    parser.add_argument("--worker", choices=["stainfree", "fnet_tiling"], help=argparse.SUPPRESS)
    parser.add_argument("--volume", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.volume, args.out)
        return
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    p = QUICK if args.quick else FULL
    results: dict = {"quick": bool(args.quick), "cpu_threads": os.cpu_count()}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stainfree_vs_") as tmp:
        work = Path(tmp)
        parts = [
            ("a_train_evaluate", lambda: results.setdefault("_bundle", part_a_b_training(p, work, results))),
            ("b_throughput", lambda: part_b_throughput(results["_bundle"], p, results)),
            ("b_memory", lambda: part_b_memory(p, work, results)),
            ("c_real_pair", lambda: part_c_real(p, work, results)),
        ]
        for name, run in parts:
            t0 = time.perf_counter()
            run()
            results[f"seconds_{name}"] = round(time.perf_counter() - t0, 1)
        results.pop("_bundle")
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    finish("virtual_staining", results, quick=bool(args.quick))


if __name__ == "__main__":
    main()
