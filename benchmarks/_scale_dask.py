"""The Dask part of the scale benchmark: a 4 GB volume in bounded memory, 1 -> 2 workers, resume, a pair.

- ``volume_4gb_peak_rss_mb``: a 4.3 GB uint16 OME-Zarr volume (1 x 128 x 4096 x 4096, written once to a
  scratch folder and reused) predicted as blocks with a tiny random net on a LocalCluster of 2 worker
  processes (1 thread each); the largest peak RSS of a worker process. The whole volume takes about an hour on
  2 cores, so the full run predicts its first ``volume_4gb_blocks_done`` blocks of ``volume_4gb_blocks_total``
  (peak memory is set by one block, reached with the first ones); ``--quick``: a small volume.
- ``scaling_2_workers``: wall time of the same block job on 1 worker process (1 thread) / on 2.
- ``resume_time_ratio``: ``stainfree predict --cluster local:2`` in a subprocess, killed with SIGKILL once
  half of its blocks are recorded, then run again to the end: (time to the kill + time of the rerun) / time
  of an uninterrupted run (each run pays its own start-up: Python, torch, the cluster). The rerun's output
  equals the uninterrupted one (``resume_equal``).
- ``scheduler_pair_equal``: 1 when the job run through a separately started ``dask scheduler`` +
  ``dask worker`` pair (subprocesses on 127.0.0.1) equals the in-process run (max difference <= 1e-5).

Run standalone: ``.venv/bin/python benchmarks/_scale_dask.py [--quick]`` (writes ``results/scale_dask.json``);
``benchmarks/scale.py`` calls :func:`measure`. Scratch data go to ``$TMPDIR/stainfree_scale_dask``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import ROOT, finish

SCRATCH = Path(tempfile.gettempdir()) / "stainfree_scale_dask"
TILE = (32, 128, 128)  # the 4 GB volume's tile (and the bundle's patch)
JOB_TILE = (16, 64, 64)  # the scaling, resume and pair jobs: small blocks, many of them
JOB_BLOCK = 1 << 19  # their largest block with its halo: 32 x 128 x 128


def _env() -> dict[str, str]:
    """Environment of worker and CLI subprocesses: this checkout's stainfree, one thread per process."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def tiny_bundle(folder: Path) -> Path:
    """A random 3D regression net (fnet U-Net, depth 2, 8 base channels), saved as a bundle."""
    import torch

    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model

    torch.manual_seed(0)
    mc = ModelConfig(architecture="fnet_unet", spatial_dims=3, depth=2, base_channels=8)
    cfg = BundleConfig(name="tiny", model=mc, voxel_size_um=None, patch_shape=list(TILE))
    path = folder / "tiny.stainfree"
    if not path.exists():
        save_bundle(path, build_model(mc).eval(), cfg)
    return path


def volume(path: Path, shape: tuple[int, ...]) -> Path:
    """A uint16 OME-Zarr volume of random texture, written chunk by chunk (kept for the next run)."""
    import dask.array as da

    from stainfree.io.writers import write_ome_zarr

    if (path / "done").is_file():
        return path
    shutil.rmtree(path, ignore_errors=True)
    slab = np.random.default_rng(0).integers(0, 4096, size=(*shape[:2], 512, 512), dtype=np.uint16)
    reps = (1, 1, -(-shape[2] // 512), -(-shape[3] // 512))
    data = da.tile(da.from_array(slab, chunks=(1, 32, 512, 512)), reps)[..., : shape[2], : shape[3]]
    write_ome_zarr(path, data, "CZYX", ngff_version="0.5")
    (path / "done").write_text("ok")
    return path


def _cluster(n: int) -> Any:
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _blocks(client: Any, bundle: Path, src: Path, out: Path, **kw: Any) -> tuple[float, Any]:
    from stainfree.execute.blocks import predict_blocks

    shutil.rmtree(out, ignore_errors=True)
    kw = {"roi_size": JOB_TILE, "max_block_voxels": JOB_BLOCK, **kw}
    t0 = time.perf_counter()
    run = predict_blocks(client, bundle, src, out, **kw)
    return time.perf_counter() - t0, run


def measure_volume(bundle: Path, quick: bool) -> dict[str, float]:
    from distributed import Client

    from stainfree.execute.cluster import WorkerSetup

    shape = (1, 16, 128, 256) if quick else (1, 128, 4096, 4096)
    src = volume(SCRATCH / f"volume_{'x'.join(map(str, shape))}.ome.zarr", shape)
    n_blocks = 2  # one per worker: peak memory is set by one block
    with _cluster(2) as cluster, Client(cluster) as client:
        client.register_plugin(WorkerSetup())
        out = SCRATCH / "volume_out.ome.zarr"
        _, run = _blocks(
            client, bundle, src, out, max_blocks=n_blocks, roi_size=TILE, max_block_voxels=1 << 24
        )
        rss = max(client.run(_peak_rss_mb).values())
    shutil.rmtree(SCRATCH / "volume_out.ome.zarr", ignore_errors=True)
    shutil.rmtree(SCRATCH / ".volume_out.ome.zarr.stainfree-resume", ignore_errors=True)
    return {
        "volume_4gb_peak_rss_mb": round(float(rss), 1),
        "volume_4gb_bytes": float(np.prod(shape) * 2),
        "volume_4gb_blocks_done": float(run.computed),
        "volume_4gb_blocks_total": float(run.total),
    }


def measure_scaling(bundle: Path, quick: bool) -> dict[str, float]:
    from distributed import Client

    from stainfree.execute.cluster import WorkerSetup

    shape = (1, 16, 128, 256) if quick else (1, 32, 256, 256)
    src = volume(SCRATCH / f"scaling_{'x'.join(map(str, shape))}.ome.zarr", shape)
    times = {}
    out = SCRATCH / "scaling_out.ome.zarr"
    with _cluster(1) as cluster, Client(cluster) as client:
        client.register_plugin(WorkerSetup())
        _blocks(client, bundle, src, out, max_blocks=1)  # warm-up: imports, bundle
        times[1], run = _blocks(client, bundle, src, out)
        cluster.scale(2)
        client.wait_for_workers(2, timeout=120)
        client.register_plugin(WorkerSetup())
        client.run(_warm_up, str(bundle))
        times[2], _ = _blocks(client, bundle, src, out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "scaling_2_workers": round(times[1] / times[2], 3),
        "scaling_1_worker_s": round(times[1], 2),
        "scaling_2_workers_s": round(times[2], 2),
        "scaling_blocks": float(run.total),
    }


def _warm_up(bundle: str) -> None:
    from stainfree.execute.cluster import cached_bundle

    cached_bundle(bundle)
    import monai.inferers  # noqa: F401


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stainfree.cli", *args],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def measure_resume(bundle: Path, quick: bool) -> dict[str, float]:
    import zarr

    from stainfree.execute.blocks import working_path

    shape = (1, 16, 128, 256) if quick else (1, 32, 384, 384)
    src = volume(SCRATCH / f"resume_{'x'.join(map(str, shape))}.ome.zarr", shape)
    if quick:
        return _resume_in_process(bundle, src)
    common = [str(bundle), str(src), "--cluster", "local:2", "--quiet", "--tile", *map(str, JOB_TILE)]
    common += ["--block-voxels", str(JOB_BLOCK)]
    full, resumed = SCRATCH / "resume_full.ome.zarr", SCRATCH / "resume_killed.ome.zarr"
    for p in (full, resumed, working_path(full), working_path(resumed)):
        shutil.rmtree(p, ignore_errors=True)
    t0 = time.perf_counter()
    proc = _cli(["predict", *common, "--out", str(full)])
    if proc.wait() != 0:
        raise RuntimeError("the uninterrupted run failed")
    uninterrupted = time.perf_counter() - t0
    t0 = time.perf_counter()
    plan = plan_size(bundle, src)
    proc = _cli(["predict", *common, "--out", str(resumed)])
    done_dir = working_path(resumed) / ".stainfree-run" / "done"
    try:
        while proc.poll() is None and len(list(done_dir.glob("*.json"))) < plan // 2:
            time.sleep(0.05)
    finally:
        _kill(proc)
    first = time.perf_counter() - t0
    recorded = len(list(done_dir.glob("*.json")))
    t0 = time.perf_counter()
    proc = _cli(["predict", *common, "--out", str(resumed)])
    if proc.wait() != 0:
        raise RuntimeError("the resumed run failed")
    second = time.perf_counter() - t0
    a = zarr.open_array(str(full / "0"), mode="r")[...]
    b = zarr.open_array(str(resumed / "0"), mode="r")[...]
    for p in (full, resumed):
        shutil.rmtree(p, ignore_errors=True)
    return {
        "resume_time_ratio": round((first + second) / uninterrupted, 3),
        "resume_uninterrupted_s": round(uninterrupted, 2),
        "resume_killed_after_s": round(first, 2),
        "resume_rerun_s": round(second, 2),
        "resume_blocks_recorded_at_kill": float(recorded),
        "resume_blocks_total": float(plan),
        "resume_equal": float(np.abs(a - b).max() <= 1e-5),
    }


def _resume_in_process(bundle: Path, src: Path) -> dict[str, float]:
    """The smoke-test form: an interruption after half the blocks (``max_blocks``), in this process."""
    from stainfree.execute.cluster import open_client

    kw: dict[str, Any] = {}
    with open_client() as client:
        full, run = _blocks(client, bundle, src, SCRATCH / "resume_full.ome.zarr", **kw)
        first, _ = _blocks(
            client, bundle, src, SCRATCH / "resume_killed.ome.zarr", max_blocks=run.total // 2, **kw
        )
        t0 = time.perf_counter()
        from stainfree.execute.blocks import predict_blocks

        predict_blocks(
            client,
            bundle,
            src,
            SCRATCH / "resume_killed.ome.zarr",
            roi_size=JOB_TILE,
            max_block_voxels=JOB_BLOCK,
        )
        second = time.perf_counter() - t0
    for name in ("resume_full.ome.zarr", "resume_killed.ome.zarr"):
        shutil.rmtree(SCRATCH / name, ignore_errors=True)
    return {"resume_time_ratio": round((first + second) / full, 3), "resume_blocks_total": float(run.total)}


def plan_size(bundle: Path, src: Path) -> int:
    """Number of blocks of the resume job (the plan the CLI run makes)."""
    from stainfree.inference.blockplan import plan_blocks
    from stainfree.io.readers import read_image

    image, _ = read_image(src, lazy=True)
    plan = plan_blocks(
        image.shape[-3:], spatial_dims=3, divisor=4, roi_size=JOB_TILE, max_block_voxels=JOB_BLOCK
    )
    return len(plan.cores)


def _free_port() -> int | None:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    except OSError:
        return None


def measure_pair(bundle: Path, quick: bool) -> dict[str, float]:
    import zarr
    from distributed import Client

    from stainfree import api

    shape = (1, 16, 128, 128) if quick else (1, 32, 256, 256)
    src = volume(SCRATCH / f"pair_{'x'.join(map(str, shape))}.ome.zarr", shape)
    dask_cli = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    port = _free_port()
    if dask_cli is None or port is None:
        return {"scheduler_pair_equal": float("nan")}
    address = f"tcp://127.0.0.1:{port}"
    opts: dict[str, Any] = {"env": _env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        start_new_session=True,
        **opts,
    )
    worker = subprocess.Popen(
        [dask_cli, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
        start_new_session=True,
        **opts,
    )
    outs = {k: SCRATCH / f"pair_{k}.ome.zarr" for k in ("remote", "local")}
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        kw: dict[str, Any] = {"tile": list(JOB_TILE), "block_voxels": JOB_BLOCK, "progress": False}
        for k, out in outs.items():
            shutil.rmtree(out, ignore_errors=True)
            api.predict_job(bundle, src, out, scheduler=address if k == "remote" else None, **kw)
    finally:
        _kill(worker)
        _kill(scheduler)
    a, b = (zarr.open_array(str(outs[k] / "0"), mode="r")[...] for k in ("remote", "local"))
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)
    return {"scheduler_pair_equal": float(a.shape == b.shape and np.abs(a - b).max() <= 1e-5)}


def measure(quick: bool) -> dict[str, float]:
    """Every figure of the Dask part (see the module docstring); scratch data under ``SCRATCH``."""
    import torch

    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]  # worker processes import this checkout's stainfree
    torch.set_num_threads(1)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    bundle = tiny_bundle(SCRATCH)
    results: dict[str, float] = {}
    # the smoke run (make test) exercises the block engine and its resume after a kill; the LocalCluster and
    # the separately started scheduler / worker pair are already run by tests/integration and tests/e2e
    parts = (
        (measure_volume, measure_resume)
        if quick
        else (measure_volume, measure_scaling, measure_resume, measure_pair)
    )
    for part in parts:
        t0 = time.perf_counter()
        results.update(part(bundle, quick))
        print(f"{part.__name__}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small volumes and jobs (a smoke test)")
    args = parser.parse_args()
    finish("scale_dask", measure(args.quick), quick=args.quick)


if __name__ == "__main__":
    main()
