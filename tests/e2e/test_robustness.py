"""Hostile input and interrupted work: one line and exit 2, no partial output, one run per output folder."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.errors import InputError
from stainfree.io.readers import read_image
from stainfree.lock import output_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile import make_corpus  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
LOCK_HOLDER = (
    "import sys, time; from stainfree.lock import output_lock\n"
    "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n"
)
SIMULATE = ["simulate", "--n-fields", "2", "--shape", "8", "32", "32", "--n-frames", "1"]


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stainfree.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def _one_line(stderr: str, name: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], stderr
    assert "Traceback" not in stderr


def test_every_hostile_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    files = make_corpus(tmp_path)
    assert len(files) >= 18
    for f in files:
        res = CliRunner().invoke(app, ["info", str(f)])
        assert res.exit_code == 2, (f, res.output, res.exception)
        _one_line(res.stderr, f.name)


def test_size_is_checked_against_max_bytes_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.ones((64, 64), np.uint16))
    assert read_image(path, max_bytes=64 * 64 * 2)[0].shape == (64, 64)
    with pytest.raises(InputError, match=r"64 x 64 uint16 image \(8.0 KiB\), more than max_bytes"):
        read_image(path, max_bytes=8191)
    arr, _ = read_image(path, lazy=True, max_bytes=64 * 64 * 2)  # lazy: the limit is per plane
    assert int(arr.sum().compute()) == 64 * 64


def _final_outputs_complete(folder: Path) -> int:
    """Every file under its final name reads completely; returns how many were checked."""
    n = 0
    for p in folder.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.name.endswith(".tif"):
            read_image(p, validate=False)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".csv":
            assert p.read_text().endswith("\n")
        n += 1
    return n


@pytest.mark.parametrize("delay", [0.8, 1.6])
def test_killed_simulate_leaves_no_partial_file_and_reruns(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "sim"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stainfree.cli", *SIMULATE, str(out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if out.exists():
        _final_outputs_complete(out)
    res = _cli([*SIMULATE, str(out)])
    assert res.returncode == 0, res.stderr
    assert _final_outputs_complete(out) >= 18 and not (out / ".stainfree.lock").exists()
    assert not list(out.rglob("*.stainfree-partial"))  # the rerun removed what the killed run left


def test_lock_removes_only_the_temporaries_of_killed_runs(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    left = tmp_path / "f" / ".a.ome.tif.x1y2.stainfree-partial"
    left.write_bytes(b"half")
    mine = [tmp_path / ".notes.tmp", tmp_path / "a.ome.tif"]
    for p in mine:
        p.write_bytes(b"keep")
    with output_lock(tmp_path):
        assert not left.exists() and all(p.read_bytes() == b"keep" for p in mine)


def test_second_run_on_a_locked_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    with output_lock(out):
        res = _cli([*SIMULATE, str(out)])
    assert res.returncode == 2
    _one_line(res.stderr, "is in use by another stainfree run")
    assert f"(pid {os.getpid()})" in res.stderr and not (out / "manifest.csv").exists()


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match=rf"in use by another stainfree run \(pid {proc.pid}\)"):
        with output_lock(tmp_path):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with output_lock(tmp_path) as lock:  # no stale lock after SIGKILL
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_file_size_limit_is_one_line_and_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "sim"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    res = _cli([*SIMULATE, str(out)], preexec_fn=limit)
    assert res.returncode == 2
    _one_line(res.stderr, "file too large for this place")
    assert "nothing was written under the final name" in res.stderr
    _final_outputs_complete(out)
    assert not list(out.rglob("*.stainfree-partial")) and not (out / "manifest.csv").exists()


def test_boolean_pixels_are_refused_where_intensities_are_expected(tmp_path: Path) -> None:
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, np.eye(8, dtype=bool))
    assert read_image(path)[0].dtype == bool  # a mask is fine where masks are read
    with pytest.raises(InputError, match="boolean pixels"):
        read_image(path, intensities=True)


def test_info_max_bytes_option(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    res = CliRunner().invoke(app, ["info", str(path), "--max-bytes", "1000"])
    assert res.exit_code == 2
    _one_line(res.stderr, "a.tif: header claims a 64 x 64 uint16 plane (8.0 KiB), more than max_bytes")
    assert CliRunner().invoke(app, ["info", str(path), "--max-bytes", "8192"]).exit_code == 0


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from robustness import _training_data

    job = _training_data(tmp_path, max_steps=64)  # 2D, depth 2, a checkpoint every 4 steps
    run = tmp_path / "run"
    train = [sys.executable, "-m", "stainfree.cli", "train", str(job), "-q"]
    proc = subprocess.Popen(train, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90

    def checkpointed() -> bool:
        ckpts = run / "checkpoints"
        return bool(list(ckpts.glob("step*.ckpt"))) and (ckpts / "last.ckpt").is_file()

    # killed as soon as the first checkpoint is there: 60 steps remain (16 steps could finish within a fixed
    # half-second wait on a fast or idle machine, and the run then ended before the kill)
    while not checkpointed() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "model.stainfree").exists()
    holder = subprocess.Popen(  # another process holds the folder: this run is refused
        [sys.executable, "-c", LOCK_HOLDER, str(run)], env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    res = CliRunner().invoke(app, ["train", str(job), "-q", "--resume"])
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert res.exit_code == 2
    _one_line(res.stderr, f"is in use by another stainfree run (pid {holder.pid})")
    res = CliRunner().invoke(app, ["train", str(job), "-q", "--resume"])
    assert res.exit_code == 0, res.output
    summary = yaml.safe_load((run / "model.stainfree" / "bundle.yaml").read_text())["training"]
    assert summary["steps"] == 64 and summary["resumed_from_step"] >= 4


def test_bundle_weights_on_a_full_disk_are_one_error_and_nothing_written(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "from torch import nn\n"
        "from stainfree.config import BundleConfig\n"
        "from stainfree.cli import os_error_line\n"
        "from stainfree.models.bundle import save_bundle\n"
        "net = nn.Linear(2000, 2000)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        f"    save_bundle({str(tmp_path / 'm.stainfree')!r}, net, BundleConfig())\n"
        "except OSError as exc:\n"
        "    print(os_error_line(exc)); sys.exit(2)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    line = res.stdout.strip()
    assert line.startswith(str(tmp_path / "m.stainfree")) and "file too large" in line and "\n" not in line
    assert not (tmp_path / "m.stainfree").exists() and not list(tmp_path.iterdir())
