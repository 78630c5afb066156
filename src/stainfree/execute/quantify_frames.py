"""Quantify one mask time-lapse with its time points as tasks: tables identical to the in-memory path.

The in-memory path (:func:`stainfree.quantify.run.quantify_source`) walks the frames in one process. Here each
step is a task on the cluster, recorded in the hidden working folder of the output (as
:mod:`stainfree.execute.quantify_blocks`: a rerun skips what is recorded):

``values``   (integer mask stacks only) the first values of each channel per frame, so that the client
             reads the stack as masks or instance maps as :func:`~stainfree.quantify.inputs.load_masks` does;
``frame``    per time point: its object map, cells, objects, contacts and cell rows
             (:func:`~stainfree.quantify.run.measure_frame`, the in-memory per-frame code);
``overlaps`` (``link_method="overlap"``) per pair of consecutive frames: :func:`frame_overlaps`, both maps
             rebuilt from the input.

Linking, track assignment, fission / fusion and contact events then run on the client from those small
results (:func:`~stainfree.quantify.run.link_pair`, :func:`~stainfree.quantify.run.assemble_frames`), with
the very functions and inputs of the in-memory path: every value is the same.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.blocks import BlockRun
from stainfree.execute.quantify_tasks import close_run, open_run, record_path, save_record
from stainfree.execute.records import file_stamp, fingerprint, local_dask

__all__ = ["quantify_frames", "quantify_frames_job"]


# ----- tasks (module level: the workers import them by name) -----------------------------------------------


def _frame_source(job: dict[str, Any], t: int, kind: str | None) -> Any:
    """The masks of time point ``t`` as a one-frame :class:`~stainfree.quantify.inputs.MaskSource`."""
    from stainfree.io.readers import read_image
    from stainfree.quantify.inputs import _from_array

    image, meta = read_image(job["input"], lazy=True)
    axes = str(meta.axes)
    index = tuple(t if a == "T" else slice(None) for a in axes)
    frame = np.asarray(image[index])
    return _from_array(frame, axes.replace("T", ""), None, meta.channel_names, job["source"], kind)


def _object_map(job: dict[str, Any], t: int) -> Any:
    cfg = job["config"]
    src = _frame_source(job, t, job["kind"])
    omap = src.object_map(
        0, connectivity=cfg.connectivity, min_size=cfg.min_size_voxels, structures=cfg.structures
    )
    return src, omap


@local_dask
def values_task(job: dict[str, Any], t: int) -> int:
    """Per structure channel of frame ``t``: its three smallest values and its largest."""
    src = _frame_source(job, t, "masks")
    a = src.array[0]
    found = [(np.unique(a[i])[:3], a[i].max() if a[i].size else 0) for i in range(a.shape[0])]
    save_record(record_path(job["work"], job["stage"], t), found)
    return t


@local_dask
def frame_task(job: dict[str, Any], t: int) -> int:
    """Objects, contacts and cell rows of frame ``t`` (:func:`~stainfree.quantify.run.measure_frame`)."""
    from stainfree.quantify.maps import derive_cells
    from stainfree.quantify.run import measure_frame

    cfg = job["config"]
    src, omap = _object_map(job, t)
    cells = derive_cells(omap) if cfg.derive_cells else None
    parts = measure_frame(omap, t, job["voxel_size_um"], cfg, cells=cells)
    save_record(record_path(job["work"], job["stage"], t), (src.names, parts))
    return t


@local_dask
def overlaps_task(job: dict[str, Any], i: int) -> int:
    """Voxel overlaps between the objects of frames ``i`` and ``i + 1`` (:func:`frame_overlaps`)."""
    from stainfree.quantify.tracking import frame_overlaps

    overlaps = frame_overlaps(_object_map(job, i)[1], _object_map(job, i + 1)[1])
    save_record(record_path(job["work"], job["stage"], i), overlaps)
    return i


# ----- on the client ------------------------------------------------------------------------------------


def _kind(found: list[list[tuple[np.ndarray, Any]]], integer: bool) -> str:
    """``"instances"`` where a channel holds more than two values over all frames (as ``load_masks``)."""
    if not integer or not found or max(float(m) for frame in found for _, m in frame) <= 1:
        return "masks"
    n_c = len(found[0])
    values = [np.unique(np.concatenate([frame[c][0] for frame in found])) for c in range(n_c)]
    return "instances" if any(v.size > 2 for v in values) else "masks"


def quantify_frames(
    client: Any,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: Any = None,
    max_tasks: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Quantify one mask time-lapse (a ``T`` axis) with its time points as tasks on ``client``.

    Every table equals that of :func:`stainfree.api.quantify` on the same image, value for value (see the
    module docstring). A rerun skips the frames (and frame pairs) recorded by an earlier, interrupted run.

    Parameters
    ----------
    client : distributed.Client
        Where the tasks run (:func:`stainfree.execute.cluster.open_client`).
    input_path, out_dir : path
        The mask time-lapse (label map, mask stack or instance stack), the output folder (tables, figures and
        ``quantify.json`` as the per-position path writes them).
    config : QuantifyConfig, optional
        Settings.
    max_tasks : int, optional
        Compute at most this many unfinished tasks, then stop with the run resumable.
    progress : bool
        Show a progress bar per stage.

    Returns
    -------
    dict
        ``output`` (None until complete), ``tables`` (None until complete or when finished before) and
        ``frames`` (:class:`~stainfree.execute.blocks.BlockRun`: tasks in all, computed now, found done).
    """
    from stainfree.config import QuantifyConfig
    from stainfree.execute.quantify_blocks import _Runner, _Stopped, _write
    from stainfree.io.readers import read_image
    from stainfree.quantify.run import link_pair

    cfg = config if config is not None else QuantifyConfig()
    image, meta = read_image(input_path, lazy=True)
    if "T" not in meta.axes:
        raise InputError(input_path, "not a time-lapse (no T axis)")
    n_t = int(image.shape[meta.axes.index("T")])
    out = Path(out_dir)
    key = fingerprint({"input": file_stamp(input_path), "config": cfg.model_dump(mode="json")})
    finished, work = open_run(out, key, "quantify-frames.json")
    if finished is not None:  # finished before: nothing to do
        return {"output": out, "tables": None, "frames": BlockRun(out, finished, 0, finished)}
    vox_file = tuple(meta.voxel_size_um)
    n_spatial = sum(a in "ZYX" for a in meta.axes)
    if any(v is None for v in vox_file[3 - n_spatial :]):  # as the in-memory path warns
        warnings.warn(
            f"{input_path}: voxel size unknown; assuming 1 um (pass voxel_size_um / --voxel-size)",
            stacklevel=2,
        )
    job: dict[str, Any] = {
        "work": str(work),
        "input": str(Path(input_path).resolve()),
        "source": str(input_path),
        "config": cfg,
        "voxel_size_um": tuple(1.0 if v is None else float(v) for v in vox_file),
        "kind": None,
    }
    runner = _Runner(client, work, progress, max_tasks)
    integer = bool(np.issubdtype(image.dtype, np.integer))
    try:
        if "C" in meta.axes and integer:
            found = runner.stage(job, "values", n_t, values_task, "reading values")
            job["kind"] = _kind(found, integer)
        frames = runner.stage(job, "frame", n_t, frame_task, "quantifying frames")
        overlaps: list[Any] = [None] * max(n_t - 1, 0)
        if cfg.link_method == "overlap" and n_t > 1:
            overlaps = runner.stage(job, "overlaps", n_t - 1, overlaps_task, "overlaps of frame pairs")
    except _Stopped:
        return {"output": None, "tables": None, "frames": BlockRun(None, 0, runner.computed, runner.skipped)}
    tables = _tables(cfg, frames, overlaps, link_pair)
    src_names = frames[0][0]
    info = {
        "source": str(input_path),
        "kind": job["kind"] or ("labels" if "C" not in meta.axes else "masks"),
        "frames": n_t,
        "shape": [int(s) for a, s in zip(meta.axes, image.shape, strict=True) if a in "ZYX"],
        "voxel_size_um": list(job["voxel_size_um"]),
        "frame_interval_s": cfg.frame_interval_s,
        "structures": list(cfg.structures or src_names),
    }
    _write(tables, out, cfg, info)
    total = runner.computed + runner.skipped
    close_run(out, key, "quantify-frames.json", total, work)
    return {"output": out, "tables": tables, "frames": BlockRun(out, total, runner.computed, runner.skipped)}


def _tables(cfg: Any, frames: list[Any], overlaps: list[Any], link_pair: Any) -> dict[str, Any]:
    """Links, events and every table from the frame records, as :func:`quantify_source` assembles them."""
    from stainfree.quantify.run import assemble_frames

    names = tuple(cfg.structures) if cfg.structures else frames[0][0]
    parts = [p for _, p in frames]
    links, raw_events = [], []
    if cfg.link_method != "laptrack":
        for t in range(1, len(parts)):
            link, raw = link_pair(parts[t - 1].objects, parts[t].objects, overlaps[t - 1], t, cfg)
            links.append(link)
            if raw is not None:
                raw_events.append(raw)
    return assemble_frames(cfg, names, parts, links, raw_events)


def quantify_frames_job(
    position: Any, out: Path, scheduler: str | None, cluster: str | None, cfg: Any, progress: bool
) -> dict[str, Any]:
    """:func:`quantify_frames` of one position (``<out>/<key>/``) on a client of ``scheduler`` / ``cluster``,
    under the output's lock; the result's ``output`` is the job's folder."""
    from stainfree.execute.cluster import open_client
    from stainfree.lock import output_lock

    with output_lock(out), open_client(scheduler, cluster) as client:
        result = quantify_frames(client, position.source, out / position.key, config=cfg, progress=progress)
    return {**result, "output": out}
