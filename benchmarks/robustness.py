"""Robustness: hostile inputs end in one line and exit code 2; killed runs resume or restart, never leave a
partial output under its final name; a second run on a busy output folder is refused.

Bad inputs: the corpus of ``tests/hostile.py`` through ``stainfree info``, plus a bundle with pickled code, a
garbage manifest and a file size limit. Kills: ``simulate``, ``quantify``, ``train``, ``predict`` and
``segment`` subprocesses get SIGKILL at several moments; each is then rerun (``train --resume`` when a
checkpoint exists) and must finish with complete outputs. After every kill each file under its final name
must read completely (``partial_outputs_seen`` counts those that do not).

``--quick`` (used by ``make test``): the corpus and two kills of ``simulate``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import ROOT, finish

sys.path.insert(0, str(ROOT / "tests"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
SIMULATE = ["simulate", "--n-fields", "2", "--shape", "8", "32", "32", "--n-frames", "1"]


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stainfree.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def _handled(code: int, stderr: str, name: str) -> bool:
    """Exit code 2 and exactly one ``error:`` line naming the file, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0]


def _partial_outputs(folder: Path) -> list[str]:
    """Files under their final name that do not read completely (logs of the CSV logger excepted)."""
    from stainfree.errors import InputError
    from stainfree.io.readers import read_image

    bad = []
    for p in sorted(folder.rglob("*")) if folder.exists() else []:
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if "logs" in p.relative_to(folder).parts:  # Lightning's CSV log is appended to, by design
            continue
        try:
            if p.name.endswith((".tif", ".tiff")):
                read_image(p, validate=False)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix in (".ckpt", ".pt"):
                with zipfile.ZipFile(p) as z:
                    assert z.testzip() is None
            elif p.suffix == ".csv":
                assert p.read_text().endswith("\n")
            elif p.suffix == ".png":
                from PIL import Image

                with Image.open(p) as im:
                    im.load()
        except (InputError, AssertionError, ValueError, OSError, zipfile.BadZipFile):
            bad.append(str(p))
    return bad


def bad_inputs(tmp: Path) -> tuple[int, int, list[str]]:
    """Run every hostile input; returns (handled, total, names of those not handled)."""
    import numpy as np
    import yaml
    from typer.testing import CliRunner

    from hostile import make_corpus
    from stainfree.cli import app
    from stainfree.config import TrainingJob

    failed: list[str] = []
    files = make_corpus(tmp / "corpus")
    for f in files:
        res = CliRunner().invoke(app, ["info", str(f)])
        if not _handled(res.exit_code, res.stderr, f.name):
            failed.append(f.name)
    total = len(files)

    # a bundle whose weights carry pickled code: refused, and the code never runs
    evil = tmp / "evil.stainfree"
    evil.mkdir()
    (evil / "bundle.yaml").write_text(yaml.safe_dump({"name": "evil"}))
    marker = tmp / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: D105
            return (os.system, (f"touch {marker}",))

    import pickle

    (evil / "weights.pt").write_bytes(pickle.dumps({"state": Evil()}))
    image = tmp / "img.tif"
    import tifffile

    tifffile.imwrite(image, np.ones((16, 16), np.float32))
    res = CliRunner().invoke(app, ["predict", str(evil), str(image), "--out", str(tmp / "p.ome.tif"), "-q"])
    total += 1
    if not (res.exit_code == 2 and "Traceback" not in res.output and not marker.exists()):
        failed.append("evil.stainfree")

    # a garbage manifest
    (tmp / "m.csv").write_bytes(b'\x00\xff,,\n"unterminated\n' * 3)
    job = TrainingJob(output_dir=tmp / "run")
    job.data.manifest = tmp / "m.csv"
    (tmp / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["train", str(tmp / "job.yaml")])
    total += 1
    if not (res.exit_code == 2 and "m.csv" in res.stderr and "Traceback" not in res.output):
        failed.append("m.csv")

    # a destination with a file size limit (as a full disk): one line, no partial file
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp / "full"
    res = _cli([*SIMULATE, str(out)], preexec_fn=limit)
    total += 1
    if not (_handled(res.returncode, res.stderr, str(out)) and not _partial_outputs(out)):
        failed.append("file size limit")
    return total - len(failed), total, failed


def _kill_and_rerun(
    name: str, args: list[str], out: Path, delays: list[float], rerun: list[str] | None = None
) -> tuple[int, int, int]:
    """Kill ``args`` after each delay and rerun; returns (survived, kills, partial outputs seen)."""
    survived = partial = 0
    for delay in delays:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stainfree.cli", *args],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = _partial_outputs(out)
        partial += len(seen)
        again = rerun if rerun is not None and (out / "checkpoints" / "last.ckpt").exists() else args
        res = _cli(again)
        ok = res.returncode == 0 and not _partial_outputs(out)
        survived += ok
        state = "finished before the kill" if finished else "killed"
        print(
            f"{name}: {state} at {delay:.1f} s, rerun {'ok' if ok else 'FAILED'}"
            + (f" {seen}" if seen else "")
        )
        if not ok:
            print(res.stderr[-2000:])
    return survived, len(delays), partial


def _training_data(root: Path, max_steps: int = 60) -> Path:
    """Three small 2D pairs, their manifest and a tiny training job (checkpoint every 4 steps)."""
    import numpy as np
    import yaml

    from stainfree.config import TrainingJob
    from stainfree.io.writers import write_ome_tiff

    rng = np.random.default_rng(0)
    rows = ["signal,target,split"]
    for i in range(3):
        s = rng.normal(size=(2, 24, 24)).astype(np.float32)
        write_ome_tiff(root / "signal" / f"img{i}.ome.tif", s, "ZYX", voxel_size_um=(0.29, 0.29, 0.29))
        write_ome_tiff(
            root / "target" / f"img{i}.ome.tif", s * 2 + 1, "ZYX", voxel_size_um=(0.29, 0.29, 0.29)
        )
        rows.append(f"signal/img{i}.ome.tif,target/img{i}.ome.tif,{'test' if i == 2 else 'train'}")
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    job = TrainingJob.model_validate(
        {
            "data": {"manifest": str(root / "m.csv"), "input_mode": "2d", "patch_shape": [16, 16]},
            "model": {"depth": 2, "base_channels": 4},
            "train": {
                "batch_size": 2,
                "max_steps": max_steps,
                "val_every_n_steps": 4,
                "checkpoint_every_n_steps": 4,
                "val_patches": 2,
            },
            "output_dir": str(root / "run"),
        }
    )
    (root / "job.yaml").write_text(yaml.safe_dump(job.model_dump(mode="json")))
    return root / "job.yaml"


def kills(tmp: Path, quick: bool) -> tuple[int, int, int, bool]:
    """(survived, kills, partial outputs seen, second run refused)."""
    total = [0, 0, 0]

    def add(result: tuple[int, int, int]) -> None:
        for i, v in enumerate(result):
            total[i] += v

    sim = tmp / "sim"
    add(
        _kill_and_rerun("simulate", [*SIMULATE, str(sim)], sim, [0.8, 1.6] if quick else [0.5, 1.0, 1.6, 2.5])
    )
    # lock: a second run while one is running
    proc = subprocess.Popen(
        [sys.executable, "-m", "stainfree.cli", *SIMULATE, "--n-fields", "20", str(tmp / "busy")],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not (tmp / "busy" / ".stainfree.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    res = _cli([*SIMULATE, str(tmp / "busy")])
    refused = res.returncode == 2 and "in use by another stainfree run" in res.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if quick:
        return total[0], total[1], total[2], refused

    q = tmp / "quant"
    add(_kill_and_rerun("quantify", ["quantify", str(sim), "--out", str(q)], q, [2.0, 4.0, 6.0]))
    job = _training_data(tmp / "train")
    run = tmp / "train" / "run"
    train = ["train", str(job), "-q"]
    add(_kill_and_rerun("train", train, run, [8.0, 12.0, 16.0], rerun=[*train, "--resume"]))
    bundle = run / "model.stainfree"
    steps = json.loads(json.dumps(__import__("yaml").safe_load((bundle / "bundle.yaml").read_text())))
    print(f"train: bundle after kills and resumes trained {steps['training']['steps']} steps")
    pred = tmp / "pred"
    image = tmp / "train" / "signal" / "img2.ome.tif"
    args = ["predict", str(bundle), str(image), "--out", str(pred / "img2.ome.tif"), "-q"]
    add(_kill_and_rerun("predict", args, pred, [3.0, 6.0]))
    seg = tmp / "seg"
    nets = _catalog_bundles(tmp / "nets")
    nilered = sim / "field_000" / "nilered.ome.tif"
    add(
        _kill_and_rerun(
            "segment", ["segment", str(nilered), "-b", str(nets), "--out", str(seg)], seg, [3.0, 6.0]
        )
    )
    return total[0], total[1], total[2], refused


def _catalog_bundles(folder: Path) -> Path:
    """Tiny constant-output bundles of the catalog's nets (LD, MITO, VOLUME, ER): what segment needs."""
    from fakes import constant_bundle

    nets = {
        "LD": ("binary", ["lipid_droplet"], [10.0]),
        "MITO": ("binary", ["mitochondria"], [-10.0]),
        "VOLUME": ("multiclass", ["nucleus", "cytosol", "extracellular"], [0.0, 5.0, 0.0]),
        "ER": (
            "multiclass",
            ["background", "er", "nuclear_membrane", "nuclear_reticulum"],
            [0.0, 0.0, 5.0, 0.0],
        ),
    }
    for name, (task, classes, bias) in nets.items():
        constant_bundle(folder, name, task, classes, bias, patch_shape=(32, 32))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: the corpus and two kills of simulate."
    )
    args = parser.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        handled, total, failed = bad_inputs(tmp)
        print(f"not handled: {failed}" if failed else "every bad input handled")
        survived, n_kills, partial, refused = kills(tmp, args.quick)
    results = {
        "bad_inputs_handled": handled,
        "bad_inputs_total": total,
        "kills_survived": survived,
        "kills_total": n_kills,
        "partial_outputs_seen": partial,
        "second_run_refused": refused,
        "seconds": round(time.time() - t0, 1),
    }
    print(f"bad inputs handled: {handled} of {total}")
    print(f"kills survived: {survived} of {n_kills}")
    print(f"partial outputs seen: {partial}")
    finish("robustness", results, quick=args.quick)


if __name__ == "__main__":
    main()
