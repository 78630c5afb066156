"""One large Nile Red image segmented as blocks on a Dask cluster: every catalog bundle, block by block.

The block engine of :mod:`stainfree.execute.blocks` (plan, working store, per-block records, resume, final
rename) runs :func:`segment_one_block` on each block; the whole-image numbers of the ratiometric input
(chromatic shift, channel offsets, background threshold, ratio clip, normalization) are computed once up front
(:mod:`stainfree.data.ratioblocks`) and passed to every block, so the masks equal single-process ``segment``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.blocks import (
    BlockRun,
    _finalize,
    _input_czyx,
    _read_plan,
    _run,
    _statistics,
    _tuples,
    bundle_plan,
    working_path,
)
from stainfree.execute.pyramid import build_pyramid, level_factors
from stainfree.execute.records import RUN_DIR, file_stamp, fingerprint, local_dask
from stainfree.inference.predict import NormalizedView
from stainfree.inference.predict import read_array as _read

#: The ``auto`` chromatic shift of a block run is estimated on the central crop of at most these (z, y, x)
#: voxels: the whole image when it fits (then equal to single-process), else its middle (a shift of the
#: optics is the same everywhere); give a (z, y, x) shift to use a known one.
SHIFT_CROP = (32, 512, 512)


def _crop(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice((n - min(n, c)) // 2, (n - min(n, c)) // 2 + min(n, c))
        for n, c in zip(shape, SHIFT_CROP, strict=True)
    )


@local_dask
def estimate_ratio_shift(path: str, yellow: int, red: int, alignment: Any) -> list[float]:
    """The (z, y, x) shift :func:`stainfree.data.align.align_for_ratio` gives red (on :data:`SHIFT_CROP`)."""
    from stainfree.data.align import ratio_shift

    x = _input_czyx(path)
    crop = _crop(tuple(int(s) for s in x.shape[1:]))
    y, r = _read(x[(yellow, *crop)]), _read(x[(red, *crop)])
    return list(ratio_shift(y, r, alignment if isinstance(alignment, str) else tuple(alignment)))


@local_dask
def ratio_preconditions(
    path: str, yellow: int, red: int, shift: list[float], cfg: dict[str, Any]
) -> dict[str, Any]:
    """The whole-image numbers of a ratiometric input, read in Z slabs (bounded memory)."""
    from types import SimpleNamespace

    from stainfree.data.ratioblocks import stream_preconditions
    from stainfree.inference.segblocks import ratio_slabs

    slabs = ratio_slabs(_input_czyx(path), yellow, red, shift)
    return stream_preconditions(slabs, SimpleNamespace(**cfg)).to_dict()


#: The settings of a bundle that its ratiometric preconditions depend on.
_RATIO_FIELDS = (
    "input_transform",
    "ratio_offset",
    "ratio_background_threshold",
    "ratio_clip_percentile",
    "ratio_normalization",
    "ratio_max",
    "normalization",
    "percentile_range",
    "normalization_scope",
    "normalization_stats",
)


def _ratio_fields(cfg: Any) -> dict[str, Any]:
    out = {}
    for k in _RATIO_FIELDS:
        v = getattr(cfg, k, None)
        if k == "normalization_stats" and v:
            v = [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in v]
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


@local_dask
def segment_one_block(job: dict[str, Any], index: int) -> int:
    """Segment block ``index`` of ``job`` with every bundle, write masks and labels, then record it."""
    import zarr

    from stainfree.atomic import write_text
    from stainfree.data.ratioblocks import RatioPreconditions
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import BlockPlan, window_runner
    from stainfree.inference.segblocks import RatiometricView, segment_block

    source = _input_czyx(job["input"])
    plan = BlockPlan(**{k: _tuples(v) for k, v in job["plan"].items()})
    own = [BlockPlan(**{k: _tuples(v) for k, v in p.items()}) for p in job.get("net_plans") or []]
    nets = []
    for i, net in enumerate(job["nets"]):
        net_plan = own[i] if own else plan  # each bundle's own windows over the common cores
        bundle = cached_bundle(net["bundle"])
        view: Any
        if net["pre"] is not None:
            pre = RatioPreconditions.from_dict(net["pre"])
            view = RatiometricView(source, net["channels"][0], net["channels"][1], net["shift"], pre)
        else:
            view = NormalizedView(source, net["channels"], net["stats"])
        runner = window_runner(bundle.model, net_plan, **job["runner"])
        nets.append((bundle.config, view, net_plan, runner))
    core = plan.cores[index]
    masks, labels = segment_block(nets, core, threshold=job["threshold"], priority=job["priority"])
    region = tuple(slice(a, b) for a, b in core)
    store = Path(job["store"])
    zarr.open_array(str(store / "0"), mode="r+")[(slice(None), *region)] = masks
    zarr.open_array(str(store / "labels" / "compartments" / "0"), mode="r+")[region] = labels
    axes = tuple(range(1, masks.ndim))
    record = {"min": [int(v) for v in masks.min(axis=axes)], "max": [int(v) for v in masks.max(axis=axes)]}
    write_text(store / RUN_DIR / "done" / f"{index}.json", json.dumps(record))
    return index


def segment_blocks(
    client: Any,
    bundles: list[str],
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    catalog: str | os.PathLike | None = None,
    threshold: float | None = None,
    tta: bool = False,
    alignment: str | tuple[float, float, float] = "auto",
    max_block_voxels: int | None = None,
    max_blocks: int | None = None,
    progress: bool = False,
    pyramid_levels: int | None = None,
) -> dict[str, Any]:
    """Segment one Nile Red image with the catalog bundles as blocks on ``client``'s workers.

    Equal to :func:`stainfree.workflows.organelles.segment` on the same image (masks and label map): each
    block predicts every bundle on its core with the halo the blending needs (``overlap`` 0.25, each
    bundle's tile, as the catalog runner), with the whole-image numbers computed once up front, chunk-wise on
    the workers (the chromatic shift: on :data:`SHIFT_CROP`; ratio offsets, background threshold, clip value
    and normalization: exactly, :mod:`stainfree.data.ratioblocks`). Masks and labels are voxel-wise, so no
    second pass is needed.

    Writes ``<name>_masks.ome.zarr`` (NGFF 0.5, CZYX uint8, 15 channels named by compartment, chunks = block
    cores) with the label map as its NGFF label image ``labels/compartments``, and ``<name>_alignment.json``.
    The overlay PNG and the intensity image of the per-position path are not written (both need the whole
    image in memory). Resumable as :func:`predict_blocks` (records in the hidden working store).

    Parameters
    ----------
    client : distributed.Client
    bundles : list of str
        Bundle folders. Where their tiles or depths differ, the blocks are those of
        :func:`stainfree.inference.blockplan.common_grid` and each bundle predicts every block with its own
        windows and halo.
    input_path, out_dir : path
        The Nile Red image (yellow and red channels), the output folder.
    name, catalog, threshold, tta, alignment
        As :func:`stainfree.workflows.organelles.segment`.
    max_block_voxels, max_blocks, progress, pyramid_levels
        As :func:`predict_blocks` (levels of the masks and of the label map: every second voxel).

    Returns
    -------
    dict
        ``masks`` (None until complete), ``alignment`` path and ``blocks`` (:class:`BlockRun`).
    """
    import zarr

    from stainfree.atomic import write_text
    from stainfree.catalog import DEFAULT_CATALOG, load_catalog
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import DEFAULT_BLOCK_VOXELS, common_grid
    from stainfree.inference.predict import default_bundle_roi
    from stainfree.inference.segblocks import segmentable_as_blocks
    from stainfree.inference.segment import COMPARTMENT_COLORS, nilered_channel_names
    from stainfree.io.arrays import channel_indices
    from stainfree.io.readers import read_image
    from stainfree.types import COMPARTMENTS, compartment_id

    overlap = 0.25  # the catalog runner's (inference.segment.segment)
    image, meta = read_image(input_path, lazy=True, intensities=True)
    index = tuple(slice(None) if a in meta.axes else None for a in "CZYX")
    czyx_shape = tuple(int(s) for s in image[index].shape)
    if czyx_shape[0] < 2:
        raise InputError(input_path, "needs two channels (yellow and red Nile Red emission)")
    names = nilered_channel_names(meta.channel_names, czyx_shape[0])
    iy, ir = channel_indices(["yellow", "red"], names, czyx_shape[0], str(input_path))
    src = str(Path(input_path).resolve())
    configs = [cached_bundle(b).config for b in bundles]
    for b, cfg in zip(bundles, configs, strict=True):
        if not segmentable_as_blocks(cfg, meta):
            raise InputError(b, "cannot segment as blocks (a time axis, resampling or a z-stack input)")
    plans = []
    for cfg in configs:
        dims = int(cfg.spatial_dims)
        roi = default_bundle_roi(cfg)
        plans.append(bundle_plan(cfg, czyx_shape, dims, roi, overlap, max_block_voxels))
    plan = plans[0]
    own_plans: list[dict[str, Any]] | None = None
    if any(p != plan for p in plans[1:]):  # tiles or depths differ: one grid, each bundle its own windows
        plan = common_grid(plans, max_block_voxels or DEFAULT_BLOCK_VOXELS)
        own_plans = [asdict(p) for p in plans]
    stem = name or Path(input_path).name.split(".")[0]
    out = Path(out_dir) / f"{stem}_masks.ome.zarr"
    work = working_path(out)
    # up front, once: the shifts and the whole-image numbers every block needs (kept with the plan and reused
    # while the input, the alignment and the bundles' input settings are the same)
    inputs_key = fingerprint(
        [
            file_stamp(input_path),
            alignment if isinstance(alignment, str) else list(alignment),
            [
                [b, _ratio_fields(c), c.channel_alignment, c.signal_channels]
                for b, c in zip(bundles, configs, strict=True)
            ],
        ]
    )
    inputs = _stored_inputs(work, inputs_key) or _stored_inputs(out, inputs_key)
    if inputs is None:
        inputs = _segment_inputs(
            client, src, input_path, (iy, ir), names, czyx_shape, bundles, configs, alignment
        )
    nets, shifts = inputs["nets"], inputs["shifts"]
    runner: dict[str, Any] = {"overlap": overlap, "sw_batch_size": 1, "bf16": False, "device": "cpu"}
    if tta:
        runner["tta"] = True
    cat = load_catalog(catalog or DEFAULT_CATALOG)
    priority = list(cat.label_priority)
    description = {
        "input": file_stamp(input_path),
        "bundles": [file_stamp(b) for b in bundles],
        "settings": runner,
        "threshold": threshold,
        "priority": priority,
        "plan": asdict(plan),
        "nets": [{k: v for k, v in n.items() if k != "bundle"} for n in nets],
    }
    if own_plans is not None:
        description["net_plans"] = own_plans
    factors = level_factors("CZYX", meta.voxel_size_um, czyx_shape, pyramid_levels)
    if factors:  # only where there are levels: older runs without them stay resumable
        description["pyramid"] = factors
    key = fingerprint(description)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    vox = meta.voxel_size_um
    shift = shifts["written"]
    record = {
        "source": str(input_path),
        "red_onto_yellow_shift_px": list(shift),
        "red_onto_yellow_shift_um": [None if v is None else s * v for s, v in zip(shift, vox, strict=True)],
        "alignment": alignment if isinstance(alignment, str) else list(alignment),
        "shift_estimated_on": [[c.start, c.stop] for c in _crop(czyx_shape[1:])],
    }
    alignment_path = Path(out_dir) / f"{stem}_alignment.json"
    write_text(alignment_path, json.dumps(record, indent=2))
    total = len(plan.cores)
    done_before = _read_plan(out) if (out / RUN_DIR / "complete.json").is_file() else None
    if done_before == key:
        return {"masks": out, "alignment": alignment_path, "blocks": BlockRun(out, total, 0, total)}
    if _read_plan(work) != key:
        shutil.rmtree(work, ignore_errors=True)
        group = zarr.open_group(str(work), mode="w", zarr_format=3)
        group.create_array(
            "0",
            shape=(len(COMPARTMENTS), *czyx_shape[1:]),
            dtype=np.uint8,
            chunks=(len(COMPARTMENTS), *plan.block_shape),
            dimension_names=["c", "z", "y", "x"],
            fill_value=0,
        )
        group.require_group("labels").require_group("compartments").create_array(
            "0",
            shape=czyx_shape[1:],
            dtype=np.uint8,
            chunks=plan.block_shape,
            dimension_names=["z", "y", "x"],
            fill_value=0,
        )
        (work / RUN_DIR / "done").mkdir(parents=True)
        (work / RUN_DIR / "plan.json").write_text(
            json.dumps(
                {"fingerprint": key, "description": description, "inputs_key": inputs_key, "inputs": inputs},
                default=str,
            )
        )
    done = {int(p.stem) for p in (work / RUN_DIR / "done").glob("*.json")}
    todo = [i for i in range(total) if i not in done]
    if max_blocks is not None:
        todo = todo[:max_blocks]
    job = {
        "input": src,
        "store": str(work),
        "plan": asdict(plan),
        "net_plans": own_plans,
        "nets": nets,
        "runner": runner,
        "threshold": threshold,
        "priority": priority,
    }
    _run(client, job, todo, progress, segment_one_block, "segmenting blocks")
    if len(done) + len(todo) < total:
        return {
            "masks": None,
            "alignment": alignment_path,
            "blocks": BlockRun(None, total, len(todo), len(done)),
        }
    labels = {
        "name": "compartments",
        "colors": {compartment_id(c): (*COMPARTMENT_COLORS[c], 255) for c in COMPARTMENTS},
        "properties": {compartment_id(c): c for c in COMPARTMENTS},
    }
    if factors:
        build_pyramid(client, work, ["", "labels/compartments"], factors)
    _finalize(work, out, "CZYX", vox, list(COMPARTMENTS), total, labels=labels, factors=factors)
    return {"masks": out, "alignment": alignment_path, "blocks": BlockRun(out, total, len(todo), len(done))}


def _segment_inputs(
    client: Any,
    src: str,
    input_path: Any,
    yellow_red: tuple[int, int],
    names: list[str],
    czyx_shape: tuple[int, ...],
    bundles: list[str],
    configs: list[Any],
    alignment: Any,
) -> dict[str, Any]:
    """The shifts (``written``: the one recorded with the masks; one per ratiometric bundle) and each bundle's
    input (channels, shift, preconditions or statistics), computed on the workers."""
    from stainfree.inference.segblocks import RATIO_TRANSFORMS
    from stainfree.io.arrays import channel_indices

    iy, ir = yellow_red
    wanted = {"written": alignment if isinstance(alignment, str) else list(alignment)}
    for i, cfg in enumerate(configs):
        if cfg.input_transform in RATIO_TRANSFORMS:
            a = cfg.channel_alignment
            wanted[str(i)] = a if isinstance(a, str) else list(a)
    keys = {json.dumps(v) for v in wanted.values()}
    found = dict(
        zip(
            sorted(keys),
            client.gather(
                [client.submit(estimate_ratio_shift, src, iy, ir, json.loads(k)) for k in sorted(keys)]
            ),
            strict=True,
        )
    )
    shifts = {k: found[json.dumps(v)] for k, v in wanted.items()}
    nets: list[dict[str, Any]] = []
    pending: dict[str, Any] = {}
    for i, (b, cfg) in enumerate(zip(bundles, configs, strict=True)):
        if cfg.input_transform in RATIO_TRANSFORMS:
            fields = _ratio_fields(cfg)
            key = json.dumps([shifts[str(i)], fields], sort_keys=True, default=str)
            if key not in pending:
                pending[key] = client.submit(ratio_preconditions, src, iy, ir, shifts[str(i)], fields)
            nets.append(
                {"bundle": b, "channels": [iy, ir], "shift": shifts[str(i)], "pre": key, "stats": None}
            )
        else:
            channels = channel_indices(cfg.signal_channels, names, czyx_shape[0], str(input_path))
            stats = _statistics(client, cfg, src, channels, czyx_shape[1], czyx_shape[2:])
            nets.append({"bundle": b, "channels": channels, "shift": None, "pre": None, "stats": stats})
    computed = dict(zip(pending, client.gather(list(pending.values())), strict=True))
    for net in nets:
        if net["pre"] is not None:
            net["pre"] = computed[net["pre"]]
    return {"nets": nets, "shifts": shifts}


def _stored_inputs(store: Path, key: str) -> dict[str, Any] | None:
    """The block inputs recorded in a run store's plan for the same input and settings, else None."""
    try:
        plan = json.loads((store / RUN_DIR / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    return dict(plan["inputs"]) if isinstance(plan, dict) and plan.get("inputs_key") == key else None
