"""A time-lapse of big frames predicted as (time point, block) tasks on a Dask cluster, into one OME-Zarr.

Where one frame is larger than a block of the predictor (or ``block_voxels`` is given) and a bundle can
predict it block by block (no resampling, no input transform), every block of every time point is a task:
each frame gets its own normalization statistics (computed chunk-wise on the workers, as single-process
predict normalizes each frame on its own), and its blocks are those of
:func:`stainfree.inference.blockplan.plan_blocks` (the grid predict_array runs on a frame). The working store,
records, resume and final rename are those of :mod:`stainfree.execute.blocks`; task ``i`` is block
``i % n_blocks`` of time point ``i // n_blocks``, and chunks never span two time points or two blocks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.blocks import (
    BlockRun,
    _finalize,
    _read_plan,
    _run,
    _statistics,
    block_job,
    open_store,
    working_path,
    zarr_output,
)
from stainfree.execute.pyramid import build_pyramid, level_factors
from stainfree.execute.records import RUN_DIR, fingerprint
from stainfree.inference.windows import DEFAULT_OVERLAP

__all__ = ["frames_as_blocks", "predict_frame_blocks"]


def _frame_meta(meta: Any) -> Any:
    """The metadata of one time point of a time-lapse."""
    shape = tuple(s for a, s in zip(meta.axes, meta.shape, strict=True) if a != "T")
    return replace(meta, axes=meta.axes.replace("T", ""), shape=shape)


def frames_as_blocks(cfg: Any, meta: Any, block_voxels: int | None) -> bool:
    """True when a time-lapse is predicted as (time point, block) tasks: the bundle can predict a frame block
    by block, and ``block_voxels`` is given or a frame is larger than one block of the predictor."""
    from stainfree.inference.predict import streamable
    from stainfree.inference.tiling import DEFAULT_BLOCK_VOXELS

    if "T" not in meta.axes or not streamable(cfg, _frame_meta(meta)):
        return False
    spatial = [s for a, s in zip(meta.axes, meta.shape, strict=True) if a in "ZYX"]
    return block_voxels is not None or int(np.prod(spatial)) > DEFAULT_BLOCK_VOXELS


def predict_frame_blocks(
    client: Any,
    bundle: str | os.PathLike,
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    roi_size: Any = None,
    overlap: float = DEFAULT_OVERLAP,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    tta: bool = False,
    uncertainty: bool = False,
    max_block_voxels: int | None = None,
    max_blocks: int | None = None,
    progress: bool = False,
    pyramid_levels: int | None = None,
) -> BlockRun:
    """Predict a time-lapse with one bundle as (time point, block) tasks into an OME-Zarr (NGFF 0.5, T axis).

    Parameters are those of :func:`stainfree.execute.blocks.predict_blocks`; ``max_blocks`` counts tasks
    (blocks of all time points). Equal to single-process predict of the time-lapse (each frame normalized on
    its own; percentile statistics on a subsample of at most ~16 Mi voxels per frame, as predict_file).

    Returns
    -------
    BlockRun
        The output once complete; ``total``, ``computed`` and ``skipped`` count (time point, block) tasks.
    """

    from stainfree.execute.cluster import cached_bundle
    from stainfree.io.readers import read_image

    out = zarr_output(output, input_path, "the block engine writes OME-Zarr")
    cfg = cached_bundle(bundle).config
    image, meta = read_image(input_path, lazy=True, intensities=True)
    if not frames_as_blocks(cfg, meta, 0):
        raise InputError(input_path, "not a time-lapse whose frames can be predicted as blocks")
    frame_axes = meta.axes.replace("T", "")
    n_t = int(image.shape[meta.axes.index("T")])
    index = tuple(slice(None) if a in frame_axes else None for a in "CZYX")
    czyx_shape = tuple(int(s) for s in image[0][index].shape)
    channels, plan, names, description = block_job(
        cfg,
        meta,
        czyx_shape,
        input_path,
        bundle,
        roi_size=roi_size,
        overlap=overlap,
        max_block_voxels=max_block_voxels,
        runner={"sw_batch_size": sw_batch_size, "bf16": bf16, "device": device},
        tta=tta,
        uncertainty=uncertainty,
    )
    description["frames"] = n_t
    keep_z = "Z" in meta.axes
    src = str(Path(input_path).resolve())
    out_axes = "TC" + ("Z" if keep_z else "") + "YX"
    out_shape = (n_t, len(names), *(czyx_shape[1:] if keep_z else czyx_shape[2:]))
    chunks = (1, len(names), *(plan.block_shape if keep_z else plan.block_shape[1:]))
    factors = level_factors(out_axes, meta.voxel_size_um, out_shape, pyramid_levels)
    if factors:
        description["pyramid"] = factors
    work = working_path(out)
    stats_key = fingerprint([description["input"], description["bundle"], channels, "frames"])
    stats = _stored(work, stats_key) or _stored(out, stats_key)
    if stats is None:
        stats = [
            _statistics(client, cfg, src, channels, czyx_shape[1], czyx_shape[2:], t) for t in range(n_t)
        ]
    description["stats"] = stats
    key = fingerprint(description)
    total = n_t * len(plan.cores)
    if (out / RUN_DIR / "complete.json").is_file() and _read_plan(out) == key:
        return BlockRun(out, total, 0, total)
    record = {"fingerprint": key, "stats_key": stats_key, "stats": stats, "description": description}
    done = open_store(work, record, out_shape, chunks, out_axes)
    todo = [i for i in range(total) if i not in done][:max_blocks]
    job = {
        "bundle": str(Path(bundle).resolve()),
        "input": src,
        "store": str(work),
        "plan": asdict(plan),
        "channels": channels,
        "stats": stats,
        "runner": description["settings"],
        "keep_z": keep_z,
        "time_points": True,
    }
    _run(client, job, todo, progress, what="predicting frame blocks")
    if len(done) + len(todo) < total:
        return BlockRun(None, total, len(todo), len(done))
    if factors:
        build_pyramid(client, work, [""], factors)
    _finalize(work, out, out_axes, meta.voxel_size_um, names, total, factors=factors)
    return BlockRun(out, total, len(todo), len(done))


def _stored(store: Path, stats_key: str) -> list[list[dict[str, Any]]] | None:
    """Per-frame statistics recorded in a run store's plan for the same input, bundle and channels."""
    try:
        plan = json.loads((store / RUN_DIR / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    return list(plan["stats"]) if isinstance(plan, dict) and plan.get("stats_key") == stats_key else None
