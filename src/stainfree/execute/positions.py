"""Many images as one job: an HCS OME-Zarr plate (row / column / field), a folder or a glob of files.

Each position is one task on the cluster; one bad file fails only its position. The client records each
finished position in ``<out>/.stainfree-run/positions/`` (with the fingerprint of its input and settings), so
a rerun skips them; ``<out>/summary.csv`` lists every position as done, skipped (done in an earlier run) or
failed, with a one-line reason.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stainfree.errors import InputError
from stainfree.execute.records import RUN_DIR, file_stamp, fingerprint

#: File names a folder job takes as images (OME-Zarr stores included).
IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".czi", ".nd2", ".lif", ".png")


@dataclass(frozen=True)
class Position:
    """One unit of a job: ``key`` names it (``B/3/0`` in a plate, the file's stem otherwise) and places its
    output; ``source`` is what is read (a file, or a plate's field image)."""

    key: str
    source: str


def _attrs(path: Path) -> dict[str, Any]:
    """NGFF attributes of a Zarr group (v3 ``ome`` block or v2 attributes), or {} when not a group."""
    for name in ("zarr.json", ".zattrs"):
        f = path / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                return {}
            attrs = data.get("attributes", {}) if name == "zarr.json" else data
            return dict(attrs.get("ome", attrs)) if isinstance(attrs, dict) else {}
    return {}


def input_layout(spec: str | os.PathLike) -> str:
    """``"plate"``, ``"folder"``, ``"glob"`` or ``"file"``: how :func:`find_positions` reads ``spec``."""
    text = str(spec)
    if any(c in text for c in "*?["):
        return "glob"
    p = Path(text)
    if p.is_dir() and "plate" in _attrs(p):
        return "plate"
    if p.is_dir() and not text.rstrip("/").lower().endswith(".zarr"):
        return "folder"
    return "file"


def plate_positions(path: Path) -> list[Position]:
    """The fields of an HCS OME-Zarr plate, as ``row/column/field`` keys, in the plate's order."""
    plate = _attrs(path).get("plate", {})
    out = []
    for well in plate.get("wells", []):
        well_path = str(well["path"])
        images = _attrs(path / well_path).get("well", {}).get("images", [])
        for image in images:
            key = f"{well_path}/{image['path']}"
            out.append(Position(key, str(path / key)))
    if not out:
        raise InputError(path, "an HCS plate without wells or fields")
    return out


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def find_positions(
    spec: str | os.PathLike, *, accept: Callable[[Path], bool] | None = None
) -> tuple[str, list[Position]]:
    """The layout of ``spec`` and its positions: a plate's fields, a folder's images (or what ``accept``
    takes), the files a glob matches (keys relative to their common folder), or the one file."""
    layout = input_layout(spec)
    take = accept or (lambda p: p.name.lower().endswith(IMAGE_SUFFIXES) and not p.name.startswith("."))
    if layout == "plate":
        return layout, plate_positions(Path(spec))
    if layout == "folder":
        files = sorted(p for p in Path(spec).iterdir() if take(p))
        if not files:
            raise InputError(spec, "no images in this folder")
        return layout, [Position(_stem(p), str(p)) for p in files]
    if layout == "glob":
        files = sorted(Path(p) for p in glob.glob(str(spec)) if take(Path(p)))
        if not files:
            raise InputError(spec, "no images match this pattern")
        root = Path(os.path.commonpath([str(p.parent) for p in files]))
        keys = [str(p.parent.relative_to(root) / _stem(p)).removeprefix("./") for p in files]
        return layout, [Position(k, str(p)) for k, p in zip(keys, files, strict=True)]
    if not Path(spec).exists():
        raise InputError(spec, "no such file or folder")
    return layout, [Position(_stem(Path(spec)), str(spec))]


def _record_path(out_dir: Path, key: str) -> Path:
    return out_dir / RUN_DIR / "positions" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def _reason(exc: BaseException) -> str:
    from stainfree.errors import StainfreeError

    text = str(exc) if isinstance(exc, StainfreeError) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]


def run_positions(
    client: Any,
    positions: list[Position],
    task: Callable[..., str],
    out_dir: str | os.PathLike,
    outputs: dict[str, str],
    *,
    settings: dict[str, Any],
    progress: bool = False,
    **kwargs: Any,
) -> Any:
    """Run ``task(source, output, **kwargs)`` for each position on ``client``, skipping those finished before.

    Parameters
    ----------
    client : distributed.Client
        Where the tasks run.
    positions : list of Position
        From :func:`find_positions`.
    task : callable
        A module-level function (pickled by reference) writing one position's output; returns its path.
    out_dir : path
        The job's output folder: it receives ``summary.csv`` and the run records.
    outputs : dict
        Output path of each position key.
    settings : dict
        What else decides the result (bundles, options): part of each position's fingerprint.
    progress : bool
        Show a progress bar.
    **kwargs
        Passed to ``task``.

    Returns
    -------
    pandas.DataFrame
        The summary: ``position, input, output, status, reason, seconds``.
    """
    import pandas as pd
    from distributed import as_completed

    from stainfree.atomic import write_text
    from stainfree.io.writers import write_table

    out = Path(out_dir)
    rows: dict[str, dict[str, Any]] = {}
    futures = {}
    started = {}
    for pos in positions:
        try:
            key = fingerprint(
                {"input": file_stamp(pos.source), "settings": settings, "output": outputs[pos.key]}
            )
        except OSError as exc:
            rows[pos.key] = {"status": "failed", "reason": _reason(exc), "seconds": 0.0}
            continue
        record = _record_path(out, pos.key)
        try:
            previous = json.loads(record.read_text()).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous == key and Path(outputs[pos.key]).exists():
            rows[pos.key] = {"status": "skipped", "reason": "done in an earlier run", "seconds": 0.0}
            continue
        started[pos.key] = (time.perf_counter(), key)
        future = client.submit(task, pos.source, outputs[pos.key], pure=False, **kwargs)
        futures[future] = pos.key

    def settle(future: Any) -> None:
        k = futures[future]
        t0, fp = started[k]
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - one bad position fails only itself
            rows[k] = {"status": "failed", "reason": _reason(exc), "seconds": time.perf_counter() - t0}
            return
        write_text(_record_path(out, k), json.dumps({"fingerprint": fp, "position": k}))
        rows[k] = {"status": "done", "reason": "", "seconds": round(time.perf_counter() - t0, 3)}

    if progress and futures:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            t = bar.add_task("positions", total=len(futures))
            for future in as_completed(list(futures)):
                settle(future)
                bar.advance(t)
    else:
        for future in as_completed(list(futures)):
            settle(future)
    table = pd.DataFrame(
        [{"position": p.key, "input": p.source, "output": outputs[p.key], **rows[p.key]} for p in positions],
        columns=["position", "input", "output", "status", "reason", "seconds"],
    )
    write_table(out / "summary.csv", table)
    return table
