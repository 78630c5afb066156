"""Real-data benchmark: held-out Pearson r of stainfree's default recipe against a plain U-Net loop.

Five real label-free (or EM) -> fluorescence pairs from ``../shared/data`` (skipped with a reason when the
folder is absent), each split so that no test pixel is ever trained on:

- ``envelope_3d``: bright-field z-stack -> nuclear envelope (lamin B1), iPSCs, 3D crops of 16 x 128 x 128;
  train on the crops of fields P16-E05 and P26-E06, test on the five crops of field P58-E05.
- ``phase_dapi``: phase contrast -> Hoechst, 512 x 512; train on the top half, test on the bottom half.
- ``nd2_dapi``: bright-field -> DAPI in two Nikon ND2 files of PBMCs at different pixel sizes; train on
  ``example-pbmc.nd2`` (0.647 um), test on ``example-multichannel.nd2`` (0.323 um).
- ``nd2_dapi_field``: the same within ``example-pbmc.nd2`` alone: train on the left 60 % of the field, test
  on the right part beyond a 32-pixel gap. Added because ``nd2_dapi`` cannot be learned: the two files'
  DAPI channels show opposite things (medium bright around dark cells in one, a dark field with a few
  stained nuclei in the other), so every method scores a negative r across them.
- ``clem_chromatin``: scanning EM -> chromatin fluorescence, four registered sections; train on s6-s8, test
  on s9.

For each pair both methods get the same wall-clock training budget in the same process, one after the other,
one torch thread each:

- stainfree: the recipe a new job gets (``TrainingJob`` defaults with ``recipe: auto`` and
  ``train.max_time`` = the budget): spatial validation and model selection on validation r, flips and
  90-degree rotations, intensity and noise augmentation, warm-up + cosine schedule, weight averaging,
  then ``predict_with_bundle`` (blended tiles, test-time augmentation).
- plain: a minimal PyTorch loop: the same network (the fnet U-Net of the depth and width the recipe chose),
  MSE, Adam, random flips, per-image z-score, random patches of the recipe's size and batch, last weights,
  one forward pass over each test image.

Prints ``<pair> r: value`` and ``<pair> plain r: value`` and writes ``benchmarks/results/real_data.json``
(keys ``<pair>_r``, ``<pair>_plain_r``). Goals (issue 10): stainfree >= plain + 0.05 on every pair; phase ->
DAPI r >= 0.85; bright-field -> nuclear envelope r >= 0.75.

On a machine with CUDA both methods train on the GPU and the results go to ``real_data_gpu.json``.

Run: ``.venv/bin/python benchmarks/real_data.py [--quick] [--budget SECONDS] [--pairs a,b]``; the full run
takes about 8 x the budget (default 240 s per method and pair, about 35 minutes on 2 cores); ``--quick``
trains 8 s per method on small crops of two pairs (a smoke test, figures meaningless).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, SHARED_DATA, finish, set_threads

PAIRS = ("envelope_3d", "phase_dapi", "nd2_dapi", "nd2_dapi_field", "clem_chromatin")


@dataclass
class Pair:
    """Train and test arrays of one real pair: lists of (C, Z, Y, X) float32 arrays and their metadata."""

    name: str
    mode: str  # "3d" or "2d"
    train_x: list[np.ndarray]
    train_y: list[np.ndarray]
    test_x: list[np.ndarray]
    test_y: list[np.ndarray]
    train_meta: list[Any] = field(default_factory=list)
    test_meta: list[Any] = field(default_factory=list)
    voxel_size_um: tuple[float, float, float] | None = None


def _meta(shape: tuple[int, ...], voxel: tuple[float, float, float] | None = None) -> Any:
    from stainfree.types import ImageMeta

    return ImageMeta(axes="CZYX", shape=shape, dtype="float32", voxel_size_um=voxel)


def _czyx(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    while a.ndim < 4:
        a = a[None]
    return a


def load_pair(name: str) -> Pair | None:
    """The arrays of one pair, or None when its files are absent."""
    import tifffile

    if name == "envelope_3d":
        root = SHARED_DATA / "brightfield_envelope_3d"
        if not (root / "image").is_dir():
            return None
        tr_x, tr_y, te_x, te_y = [], [], [], []
        for f in sorted((root / "image").glob("*.tif")):
            g = root / "groundtruth" / f.name
            if not g.is_file():
                continue
            x, y = _czyx(tifffile.imread(f)), _czyx(tifffile.imread(g))
            if "P58-E05" in f.name:
                te_x.append(x)
                te_y.append(y)
            else:
                tr_x.append(x)
                tr_y.append(y)
        p = Pair(name, "3d", tr_x, tr_y, te_x, te_y)
    elif name == "phase_dapi":
        root = SHARED_DATA / "phase_dapi_2d"
        if not (root / "phase.tif").is_file():
            return None
        x, y = _czyx(tifffile.imread(root / "phase.tif")), _czyx(tifffile.imread(root / "dapi.tif"))
        h = x.shape[2] // 2
        p = Pair(name, "2d", [x[..., :h, :]], [y[..., :h, :]], [x[..., h:, :]], [y[..., h:, :]])
    elif name == "nd2_dapi":
        root = SHARED_DATA / "nd2"
        if not (root / "example-pbmc.nd2").is_file():
            return None
        from stainfree.io.readers import as_czyx, read_image

        arrays = []
        for f in ("example-pbmc.nd2", "example-multichannel.nd2"):
            a, meta = read_image(root / f)
            czyx = np.asarray(as_czyx(a, meta.axes), dtype=np.float32)  # Mono (bright-field), DAPI, ...
            vox = tuple(float(v) for v in meta.voxel_size_um)
            arrays.append((czyx[0:1], czyx[1:2], vox))
        (tx, ty, tv), (sx, sy, sv) = arrays
        p = Pair(name, "2d", [tx], [ty], [sx], [sy])
        p.train_meta = [_meta(tx.shape, tv)]
        p.test_meta = [_meta(sx.shape, sv)]
        p.voxel_size_um = tv
        return p
    elif name == "nd2_dapi_field":
        root = SHARED_DATA / "nd2"
        if not (root / "example-pbmc.nd2").is_file():
            return None
        from stainfree.io.readers import as_czyx, read_image

        a, meta = read_image(root / "example-pbmc.nd2")
        czyx = np.asarray(as_czyx(a, meta.axes), dtype=np.float32)
        x, y = czyx[0:1], czyx[1:2]
        cut, gap = int(0.6 * x.shape[-1]), 32
        p = Pair(name, "2d", [x[..., :cut]], [y[..., :cut]], [x[..., cut + gap :]], [y[..., cut + gap :]])
        vox = tuple(float(v) for v in meta.voxel_size_um)
        p.train_meta = [_meta(p.train_x[0].shape, vox)]
        p.test_meta = [_meta(p.test_x[0].shape, vox)]
        p.voxel_size_um = vox
        return p
    elif name == "clem_chromatin":
        import imageio.v3 as iio

        root = SHARED_DATA / "clem_em_chromatin"
        if not (root / "s9_EM.png").is_file():
            return None
        xs = [_czyx(iio.imread(root / f"s{s}_EM.png")) for s in (6, 7, 8, 9)]
        ys = [_czyx(iio.imread(root / f"s{s}_FM_chromatin.png")) for s in (6, 7, 8, 9)]
        p = Pair(name, "2d", xs[:3], ys[:3], xs[3:], ys[3:])
    else:
        raise ValueError(f"unknown pair {name!r}; known: {', '.join(PAIRS)}")
    p.train_meta = [_meta(x.shape) for x in p.train_x]
    p.test_meta = [_meta(x.shape) for x in p.test_x]
    return p


def quick_crop(p: Pair) -> Pair:
    """Small crops for the --quick smoke run (train and test stay disjoint images)."""

    def crop(a: np.ndarray) -> np.ndarray:
        return a[..., :64, :64]

    p.train_x, p.train_y = [crop(a) for a in p.train_x[:2]], [crop(a) for a in p.train_y[:2]]
    p.test_x, p.test_y = [crop(a) for a in p.test_x[:1]], [crop(a) for a in p.test_y[:1]]
    p.train_meta, p.test_meta = p.train_meta[:2], p.test_meta[:1]
    return p


def pooled_r(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Pearson r over every test voxel of every test image (each image z-scored first, so that the
    arbitrary intensity scale of separate images does not count)."""

    def z(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64).ravel()
        return (a - a.mean()) / (a.std() or 1.0)

    x = np.concatenate([z(p) for p in preds])
    y = np.concatenate([z(t) for t in truths])
    return float(np.corrcoef(x, y)[0, 1])


# ----- stainfree's recipe -----------------------------------------------------------------------------------


def run_stainfree(p: Pair, *, budget_s: float, work: Path, **overrides: Any) -> dict:
    """Train with the recipe a new job gets (``TrainingJob()`` defaults, ``train.max_time``), predict the test
    images with test-time augmentation, score them."""
    from stainfree.config import DataConfig, TrainConfig, TrainingJob
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.models.bundle import load_bundle
    from stainfree.train.fit import fit_arrays

    job = TrainingJob(
        name=p.name,
        output_dir=work / p.name,
        data=DataConfig(input_mode=p.mode, voxel_size_um=p.voxel_size_um, **overrides.pop("data", {})),
        train=TrainConfig(max_time=budget_s, **overrides.pop("train", {})),
        **overrides,
    )
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    bundle = load_bundle(
        fit_arrays(p.train_x, p.train_y, job, signal_metas=p.train_meta, target_metas=p.train_meta)
    )
    train_s = time.perf_counter() - t0
    preds = []
    for x, meta in zip(p.test_x, p.test_meta, strict=True):
        pred, _ = predict_with_bundle(bundle, x, meta, tta=True, device=device)
        preds.append(pred[0] if p.mode == "3d" else pred[0, 0] if pred.ndim == 4 else pred[0])
    truths = [t[0] if p.mode == "3d" else t[0, 0] for t in p.test_y]
    cfg = bundle.config
    t = cfg.training
    return {
        "r": pooled_r(preds, truths),
        "steps": t["steps"],
        "train_s": train_s,
        "network": {
            "depth": cfg.model.depth,
            "base": cfg.model.base_channels,
            "patch": list(cfg.patch_shape),
            "batch": t["batch_size"],
        },
        "settings": {
            "patch": list(cfg.patch_shape),
            "batch": t["batch_size"],
            "depth": cfg.model.depth,
            "base_channels": cfg.model.base_channels,
            "steps": t["steps"],
            "max_steps": t["max_steps"],
            "validation": t["validation"]["mode"],
            "exported": t["exported"],
            "best_val_r": t.get("best_val_r"),
            "train_s": round(train_s, 1),
        },
    }


# ----- the plain baseline -----------------------------------------------------------------------------------


def _zscore(a: np.ndarray) -> np.ndarray:
    return ((a - a.mean()) / (a.std() or 1.0)).astype(np.float32)


def plain_baseline(p: Pair, *, depth: int, base: int, patch: list[int], batch: int, budget_s: float) -> dict:
    """A minimal U-Net loop: MSE, Adam, flips, per-image z-score, last weights; whole-image prediction."""
    import torch

    from stainfree.models.unet import UNet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dims = 3 if p.mode == "3d" else 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = UNet(1, 1, spatial_dims=dims, depth=depth, base_channels=base).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs = [_zscore(x[0]) for x in p.train_x]  # (Z, Y, X)
    ys = [_zscore(y[0]) for y in p.train_y]
    patch3 = list(patch) if dims == 3 else [1, *patch]
    steps, t0 = 0, time.perf_counter()
    net.train()
    while time.perf_counter() - t0 < budget_s:
        bx, by = [], []
        for _ in range(batch):
            i = int(rng.integers(len(xs)))
            corner = [int(rng.integers(0, s - q + 1)) for s, q in zip(xs[i].shape, patch3, strict=True)]
            sl = tuple(slice(c, c + q) for c, q in zip(corner, patch3, strict=True))
            a, b = xs[i][sl], ys[i][sl]
            if dims == 2:
                a, b = a[0], b[0]
            for ax in range(a.ndim - 2, a.ndim):
                if rng.random() < 0.5:
                    a, b = np.flip(a, ax), np.flip(b, ax)
            bx.append(a.copy())
            by.append(b.copy())
        x = torch.from_numpy(np.stack(bx)[:, None]).to(device)
        y = torch.from_numpy(np.stack(by)[:, None]).to(device)
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    train_s = time.perf_counter() - t0
    net.eval()
    preds = []
    m = 2**depth
    with torch.inference_mode():
        for x in p.test_x:
            a = _zscore(x[0]) if dims == 3 else _zscore(x[0, 0])
            pad = [(0, (-s) % m) for s in a.shape]
            x = torch.from_numpy(np.pad(a, pad, mode="reflect")[None, None]).to(device)
            out = net(x)[0, 0].cpu().numpy()
            preds.append(out[tuple(slice(0, s) for s in a.shape)])
    truths = [t[0] if dims == 3 else t[0, 0] for t in p.test_y]
    return {"r": pooled_r(preds, truths), "steps": steps, "train_s": train_s}


# ----- main -------------------------------------------------------------------------------------------------


def run_pretrained(p: Pair, *, budget_s: float, work: Path) -> dict:
    """Half the budget on masked-image pretraining over every label-free image of the pair (the test inputs
    too: no target is used), half on training from it with the default recipe."""
    from stainfree.config import AugmentConfig, DataConfig, TrainConfig, TrainingJob
    from stainfree.train.fit import fit_arrays

    inputs = [*p.train_x, *p.test_x]
    metas = [*p.train_meta, *p.test_meta]
    pre = TrainingJob(
        name="pretrained",
        output_dir=work / "pre",
        data=DataConfig(input_mode=p.mode, voxel_size_um=p.voxel_size_um),
        train=TrainConfig(
            max_time=budget_s / 2, monitor="val_loss", augment=AugmentConfig(mask_fraction=0.5)
        ),
    )
    bundle = fit_arrays(inputs, inputs, pre, signal_metas=metas, target_metas=metas)
    return run_stainfree(p, budget_s=budget_s / 2, work=work, train={"init_from": bundle})


def run_pair(
    name: str, budget: float, quick: bool, threads: int, pretrain: bool = False
) -> dict[str, Any] | None:
    """Both methods on one pair, one after the other in this process (and with ``pretrain`` the pretrained
    variant of stainfree); None when its files are absent."""
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    set_threads(threads)
    pair = load_pair(name)
    if pair is None:
        return None
    if quick:
        pair = quick_crop(pair)
    with tempfile.TemporaryDirectory(prefix=f"stainfree_real_{name}_") as tmp:
        ours = run_stainfree(pair, budget_s=budget, work=Path(tmp))
    plain = plain_baseline(pair, budget_s=budget, **ours["network"])
    extra = {}
    if pretrain:
        with tempfile.TemporaryDirectory(prefix=f"stainfree_real_pre_{name}_") as tmp:
            pre = run_pretrained(pair, budget_s=budget, work=Path(tmp))
        extra = {f"{name}_pretrained_r": round(pre["r"], 4), f"{name}_pretrained_steps": pre["steps"]}
    return {
        **extra,
        f"{name}_r": round(ours["r"], 4),
        f"{name}_plain_r": round(plain["r"], 4),
        f"{name}_gain": round(ours["r"] - plain["r"], 4),
        f"{name}_budget_s": budget,
        f"{name}_steps": ours["steps"],
        f"{name}_plain_steps": plain["steps"],
        f"{name}_settings": ours["settings"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run on small crops (figures meaningless)"
    )
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per method and 2D pair")
    parser.add_argument(
        "--budget-3d",
        type=float,
        default=None,
        help="training seconds per method for envelope_3d (default: 2.5x)",
    )
    parser.add_argument(
        "--pairs", default=",".join(PAIRS), help="comma-separated subset of " + ", ".join(PAIRS)
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--jobs", type=int, default=1, help="pairs run at once, each in its own process")
    parser.add_argument(
        "--merge", action="store_true", help="update the existing results file instead of replacing it"
    )
    parser.add_argument(
        "--pretrain",
        default="",
        help="comma-separated pairs that also run half the budget of pretraining + half of training",
    )
    args = parser.parse_args(argv)
    import torch

    budget = 8.0 if args.quick else float(args.budget)
    budget_3d = budget if args.quick else float(args.budget_3d or 2.5 * budget)
    gpu = torch.cuda.is_available()
    names = ["phase_dapi", "envelope_3d"] if args.quick else [n.strip() for n in args.pairs.split(",") if n]
    unknown = set(names) - set(PAIRS)
    if unknown:
        parser.error(f"unknown pairs {sorted(unknown)}; known: {', '.join(PAIRS)}")
    results: dict[str, Any] = {
        "quick": bool(args.quick),
        "budget_s": budget,
        "budget_3d_s": budget_3d,
        "threads": args.threads,
        "jobs": args.jobs,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
    }
    pre = {n.strip() for n in args.pretrain.split(",") if n.strip()}
    jobs = [
        (n, budget_3d if n == "envelope_3d" else budget, args.quick, args.threads, n in pre) for n in names
    ]
    if args.jobs > 1 and not gpu:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            outs = list(pool.map(run_pair, *zip(*jobs, strict=True)))
    else:
        outs = [run_pair(*job) for job in jobs]
    for name, out in zip(names, outs, strict=True):
        if out is None:
            print(f"{name}: skipped, its files are not in {SHARED_DATA}")
            continue
        results.update(out)
        print(f"{name} r: {out[f'{name}_r']:.4f}")
        print(f"{name} plain r: {out[f'{name}_plain_r']:.4f}")
        if f"{name}_pretrained_r" in out:
            print(f"{name} pretrained r: {out[f'{name}_pretrained_r']:.4f}")
    name = "real_data_gpu" if gpu else "real_data"
    if args.merge and not args.quick and (RESULTS / f"{name}.json").is_file():
        import json

        results = {**json.loads((RESULTS / f"{name}.json").read_text()), **results}
    finish(
        name,
        results,
        quick=args.quick,
        skip=tuple(k for k in results if k.endswith("_settings")),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
