"""`stainfree predict --scheduler ADDRESS` against a separately started `dask scheduler` + `dask worker` pair
(processes on 127.0.0.1, one worker process: start-up dominates), equal to the in-process default."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    except OSError as exc:
        pytest.skip(f"cannot bind a port on 127.0.0.1 for a dask scheduler: {exc}")


@pytest.fixture()
def scheduler_pair(tmp_path):
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command line is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    common = {
        "env": env,
        "cwd": tmp_path,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,  # each with its worker processes in its own group, killed as one below
    }
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **common
    )
    worker = subprocess.Popen(
        [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"], **common
    )
    try:
        from distributed import Client

        deadline = time.monotonic() + 25
        with Client(address, timeout="20s") as client:
            while len(client.scheduler_info()["workers"]) < 1:
                if time.monotonic() > deadline or worker.poll() is not None:
                    pytest.skip("the dask worker did not come up on 127.0.0.1")
                time.sleep(0.2)
        yield address
    finally:
        for p in (worker, scheduler):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


@pytest.mark.slow
def test_predict_through_a_started_scheduler_equals_local(tmp_path, scheduler_pair):
    from typer.testing import CliRunner

    from fakes import random_bundle
    from stainfree.cli import app
    from stainfree.io.writers import write_ome_zarr

    bundle = random_bundle(tmp_path)
    img = (np.random.default_rng(3).random((1, 8, 64, 64)) * 1000).astype(np.uint16)
    inp = write_ome_zarr(tmp_path / "in.ome.zarr", img, "CZYX")
    runner = CliRunner()
    args = ["predict", str(bundle), str(inp), "--tile", "8", "32", "32", "--quiet"]
    remote = runner.invoke(
        app, [*args, "--out", str(tmp_path / "remote.ome.zarr"), "--scheduler", scheduler_pair]
    )
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local.ome.zarr")])
    assert local.exit_code == 0, local.output
    import zarr

    a = zarr.open_array(str(tmp_path / "remote.ome.zarr" / "0"), mode="r")[...]
    b = zarr.open_array(str(tmp_path / "local.ome.zarr" / "0"), mode="r")[...]
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5
