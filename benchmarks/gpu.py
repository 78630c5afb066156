"""GPU benchmark: fnet-size prediction and training throughput on CUDA, fp32 against bf16, and a smoke test.

(a) Prediction of a 65 x 624 x 924 bright-field-sized stack (random values: the speed does not depend on
    them) with the fnet-size network (fnet U-Net, depth 4, 32 base channels, random weights) through
    ``predict_array`` (Gaussian-blended 64 x 256 x 256 tiles, overlap 0.25), in fp32 and under bf16
    autocast: voxels/s of each, and the r and largest difference of the bf16 output against fp32.
(b) Training throughput, batch 24 of 32 x 64 x 64 patches: optimizer steps/s of a plain loop (fnet-size net)
    in fp32 and in bf16 autocast, and of ``fit_arrays`` (Lightning, precision 'auto', the little-data recipe
    with its on-device augmentation; depth 3 / 16 channels) on a simulated pair: overall, and the steady
    pace from two runs that differ only in length (start-up, validation and export cancel out).
    ``fit_vs_loop_bf16`` divides that pace by the plain loop's bf16 pace: the two use different networks
    (fit a depth-3 / 16-channel U-Net, the loop the fnet-size one), so it is a sanity figure, not a
    like-for-like ratio; ``real_data.py`` on the GPU compares step counts with the same network.
(c) Smoke test: a small bundle trained on the GPU predicts the same as on the CPU (max difference printed).

Writes ``benchmarks/results/gpu.json`` with the card's name. Without CUDA, ``--quick`` runs the same code on
the CPU with tiny sizes (the smoke run of ``make test``), and a full run is skipped with a message.

Run: ``python benchmarks/gpu.py`` on a machine with a GPU (about 3 minutes on an H100).
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

from _common import finish, set_threads

FULL = {"volume": (65, 624, 924), "tile": (64, 256, 256), "batch": 24, "patch": (32, 64, 64), "steps": 30}
QUICK = {"volume": (8, 40, 48), "tile": (16, 32, 32), "batch": 2, "patch": (16, 32, 32), "steps": 2}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fnet_net(depth: int = 4, base: int = 32) -> Any:
    from stainfree.models.unet import UNet

    return UNet(1, 1, spatial_dims=3, depth=depth, base_channels=base)


def part_predict(p: dict, device: str, results: dict) -> None:
    import torch

    from stainfree.inference.predict import predict_array

    torch.manual_seed(0)
    net = fnet_net().to(device).eval()
    x = np.random.default_rng(0).standard_normal((1, *p["volume"]), dtype=np.float32)
    outs = {}
    for label, bf16 in (("fp32", False), ("bf16", True)):
        kw = {"spatial_dims": 3, "roi_size": p["tile"], "overlap": 0.25, "bf16": bf16, "device": device}
        predict_array(net, x[:, : p["tile"][0], : p["tile"][1], : p["tile"][2]], **kw)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        outs[label] = predict_array(net, x, **kw)
        _sync(device)
        seconds = time.perf_counter() - t0
        results[f"predict_{label}_s"] = round(seconds, 3)
        results[f"predict_{label}_voxels_per_s"] = round(x.size / seconds)
    a, b = outs["fp32"].ravel(), outs["bf16"].ravel()
    results["predict_bf16_vs_fp32_r"] = round(float(np.corrcoef(a, b)[0, 1]), 6)
    results["predict_bf16_max_abs_diff"] = round(float(np.abs(a - b).max()), 5)
    results["predict_bf16_speedup"] = round(results["predict_fp32_s"] / results["predict_bf16_s"], 2)
    if device.startswith("cuda"):
        results["predict_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)


def part_train_loop(p: dict, device: str, results: dict) -> None:
    import torch

    torch.manual_seed(0)
    net = fnet_net().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(p["batch"], 1, *p["patch"], device=device)
    y = torch.randn(p["batch"], 1, *p["patch"], device=device)
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for i in range(p["steps"] + 3):
            if i == 3:
                _sync(device)
                t0 = time.perf_counter()
            with torch.autocast(
                device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = torch.nn.functional.mse_loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        seconds = time.perf_counter() - t0
        results[f"train_loop_{label}_steps_per_s"] = round(p["steps"] / seconds, 2)
        results[f"train_loop_{label}_voxels_per_s"] = round(p["steps"] * x.numel() / seconds)


def part_fit(p: dict, device: str, work: Path, results: dict) -> None:
    """fit_arrays on the GPU (bf16-mixed) and the bundle predicting on GPU and CPU."""
    import torch

    from stainfree.config import DataConfig, ModelConfig, TrainConfig, TrainingJob
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays
    from stainfree.types import ImageMeta

    rng = np.random.default_rng(1)
    z, y, x = (p["patch"][0], p["patch"][1] * 3, p["patch"][2] * 3)
    target = rng.random((1, z, y, x), dtype=np.float32)
    signal = (target + 0.3 * rng.standard_normal(target.shape)).astype(np.float32)
    gpu = device.startswith("cuda")

    def job(steps: int, name: str) -> Any:
        return TrainingJob(
            name="gpu_smoke",
            data=DataConfig(voxel_size_um=None, patch_shape=list(p["patch"])),
            model=ModelConfig(depth=3, base_channels=16),
            train=TrainConfig(
                max_steps=steps,
                batch_size=p["batch"],
                val_every_n_steps=steps,
                accelerator="gpu" if gpu else "cpu",
                devices=1,
            ),  # precision 'auto': bf16-mixed on a GPU that has it
            output_dir=work / name,
        )

    # the steady pace: two runs that differ only in length, so start-up, validation and export cancel out
    short, long = (10, 70) if gpu else (1, 2)
    t0 = time.perf_counter()
    fit_arrays([signal], [target], job(short, "fit_short"))
    t_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    bundle = load_bundle(fit_arrays([signal], [target], job(long, "fit")))
    t_long = time.perf_counter() - t0
    results["fit_seconds"] = round(t_long, 2)
    results["fit_steps_per_s"] = round(long / t_long, 2)
    results["fit_precision"] = bundle.config.training.get("precision", "")
    if gpu:  # (the quick CPU run's two runs are too short to tell a pace)
        results["fit_steady_steps_per_s"] = round((long - short) / max(t_long - t_short, 1e-6), 2)
        loop = results.get("train_loop_bf16_steps_per_s")
        if loop:
            results["fit_vs_loop_bf16"] = round(results["fit_steady_steps_per_s"] / loop, 3)
    meta = ImageMeta(axes="CZYX", shape=signal.shape, dtype="float32")
    pred_dev, _ = predict_with_bundle(bundle, signal, meta, device=device)
    pred_cpu, _ = predict_with_bundle(bundle, signal, meta, device="cpu")
    results["smoke_gpu_vs_cpu_max_abs_diff"] = round(float(np.abs(pred_dev - pred_cpu).max()), 6)
    results["smoke_r_vs_target"] = round(float(np.corrcoef(pred_cpu.ravel(), target.ravel())[0, 1]), 4)
    del torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; runs on the CPU without a GPU")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import torch

    set_threads(1)
    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        print("gpu benchmark: skipped, no CUDA device here (the results in gpu.json come from a GPU machine)")
        print("skipped: 1")
        return 0
    device = "cuda" if cuda else "cpu"
    p = QUICK if args.quick else FULL
    results: dict[str, Any] = {
        "quick": bool(args.quick),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "volume": "x".join(map(str, p["volume"])),
        "net": "fnet U-Net depth 4, 32 base channels",
    }
    if cuda:
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory(prefix="stainfree_gpu_") as tmp:
        for name, run in (
            ("predict", lambda: part_predict(p, device, results)),
            ("train_loop", lambda: part_train_loop(p, device, results)),
            ("fit", lambda: part_fit(p, device, Path(tmp), results)),
        ):
            t0 = time.perf_counter()
            run()
            results[f"seconds_{name}"] = round(time.perf_counter() - t0, 1)
    finish("gpu", results, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
