"""One large image predicted as blocks on a Dask cluster, each written by its worker into one OME-Zarr.

The blocks are those of :func:`stainfree.inference.tiling.plan_blocks` (the grid predict_array itself runs, so
blending, and the result, are the same as in one process); the output's chunks are the block cores, so no two
workers ever write the same chunk. The store is filled under a hidden working name beside the output
(``.<name>.stainfree-resume``) and renamed into place when complete. Inside it ``.stainfree-run/`` holds the
plan fingerprint (input, bundle, settings, grid, statistics) and one record per block written after its region
is; a rerun with the same fingerprint computes only the blocks without a record, a changed setting starts
afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.records import RUN_DIR, file_stamp, fingerprint, local_dask
from stainfree.inference.predict import NormalizedView
from stainfree.inference.predict import read_array as _read
from stainfree.inference.windows import DEFAULT_OVERLAP

WORK_SUFFIX = ".stainfree-resume"  # not the atomic writers' suffix: output_lock must not sweep it


@dataclass(frozen=True)
class BlockRun:
    """What a block run did: the output (None until complete), blocks in all, computed now, found done."""

    path: Path | None
    total: int
    computed: int
    skipped: int

    @property
    def complete(self) -> bool:
        return self.path is not None


def working_path(output: str | os.PathLike) -> Path:
    """The hidden store a block run fills before it is renamed onto ``output``."""
    out = Path(output)
    return out.parent / f".{out.name}{WORK_SUFFIX}"


# ----- on the workers ---------------------------------------------------------------------------------

_INPUTS: dict[str, Any] = {}
_INPUT_LOCK = threading.Lock()


def _input_czyx(path: str) -> Any:
    """The lazy (C, Z, Y, X) view of an input image, opened once per worker process."""
    from stainfree.io.readers import read_image

    with _INPUT_LOCK:
        if path not in _INPUTS:
            image, meta = read_image(path, lazy=True, intensities=True)
            index = tuple(slice(None) if a in meta.axes else None for a in "CZYX")
            _INPUTS[path] = image[index]
        return _INPUTS[path]


@local_dask
def slab_sums(path: str, channels: list[int], z0: int, z1: int) -> list[tuple[float, float, int]]:
    """Per channel: sum, sum of squares and count of planes ``z0:z1`` (float64): z-score statistics."""
    x = _input_czyx(path)
    band = max(1, (1 << 22) // max(1, int(x.shape[-1])))  # rows read at once: ~4 Mi voxels, bounded memory
    out = []
    for c in channels:
        total, total_sq, n = 0.0, 0.0, 0
        for z in range(z0, z1):
            for y in range(0, int(x.shape[-2]), band):
                v = _read(x[c, z, y : y + band]).astype(np.float64)
                total += float(v.sum())
                total_sq += float(np.square(v).sum())
                n += v.size
        out.append((total, total_sq, n))
    return out


@local_dask
def sample_stats(path: str, channels: list[int], low: float, high: float) -> list[dict[str, Any]]:
    """Percentile statistics per channel on a regular subsample of at most ~16 Mi voxels (as predict_file)."""
    from stainfree.data.preprocess import normalize

    x = _input_czyx(path)
    out = []
    for c in channels:
        step = max(1, int(np.ceil((np.prod(x.shape[1:]) / (1 << 24)) ** (1 / 3))))
        sample = _read(x[c, ::step, ::step, ::step]).astype(np.float32)
        out.append(normalize(sample, "percentile", low=low, high=high)[1])
    return out


@local_dask
def predict_one_block(job: dict[str, Any], index: int) -> int:
    """Predict block ``index`` of ``job``, write its region into the working store, then record it."""
    import zarr

    from stainfree.atomic import write_text
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import BlockPlan, predict_block, window_runner
    from stainfree.inference.predict import apply_activation

    plan = BlockPlan(**{k: _tuples(v) for k, v in job["plan"].items()})
    bundle = cached_bundle(job["bundle"])
    x = NormalizedView(_input_czyx(job["input"]), job["channels"], job["stats"])
    runner = window_runner(bundle.model, plan, **job["runner"])
    core = plan.cores[index]
    pred = predict_block(runner, x, plan, core)
    n_act = int(bundle.config.model.out_channels)
    pred = np.concatenate([apply_activation(pred[:n_act], bundle.config.task), pred[n_act:]])
    region: tuple[slice, ...] = tuple(slice(a, b) for a, b in core)
    if not job["keep_z"]:
        pred, region = pred[:, 0], region[1:]
    store = Path(job["store"])
    array = zarr.open_array(str(store / "0"), mode="r+")
    array[(slice(None), *region)] = pred
    record = {"min": [float(v) for v in pred.min(axis=tuple(range(1, pred.ndim)))]}
    record["max"] = [float(v) for v in pred.max(axis=tuple(range(1, pred.ndim)))]
    write_text(store / RUN_DIR / "done" / f"{index}.json", json.dumps(record))
    return index


def _tuples(v: Any) -> Any:
    return tuple(_tuples(i) for i in v) if isinstance(v, list) else v


# ----- on the client ------------------------------------------------------------------------------------


def _statistics(
    client: Any, cfg: Any, path: str, channels: list[int], n_z: int, shape_yx: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Normalization statistics of the whole input, computed chunk-wise on the workers."""
    if cfg.normalization_scope == "dataset" and cfg.normalization_stats:
        return [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in cfg.normalization_stats]
    if cfg.normalization == "zscore":
        step = max(1, (1 << 24) // max(1, int(np.prod(shape_yx))))  # planes per task: ~16 Mi voxels
        futures = [
            client.submit(slab_sums, path, channels, z, min(z + step, n_z)) for z in range(0, n_z, step)
        ]
        parts = client.gather(futures)
        stats = []
        for c in range(len(channels)):
            total = sum(p[c][0] for p in parts)
            total_sq = sum(p[c][1] for p in parts)
            n = sum(p[c][2] for p in parts)
            mean = total / n
            stats.append(
                {"method": "zscore", "mean": mean, "std": float(np.sqrt(max(total_sq / n - mean**2, 0.0)))}
            )
        return stats
    if cfg.normalization == "percentile":
        low, high = cfg.percentile_range
        return list(client.submit(sample_stats, path, channels, float(low), float(high)).result())
    return [{"method": "none"} for _ in channels]


def _read_plan(store: Path) -> str | None:
    try:
        return str(json.loads((store / RUN_DIR / "plan.json").read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def predict_blocks(
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
    max_block_voxels: int | None = None,
    max_blocks: int | None = None,
    progress: bool = False,
    tta: bool = False,
    uncertainty: bool = False,
) -> BlockRun:
    """Predict one image with a bundle as blocks on ``client``'s workers into an OME-Zarr (NGFF 0.5).

    Parameters
    ----------
    client : distributed.Client
        Where the blocks run (:func:`stainfree.execute.cluster.open_client`).
    bundle, input_path, output : path
        Model bundle, input image (read lazily by each worker), output ``.ome.zarr``.
    roi_size, overlap, sw_batch_size, bf16, device, tta, uncertainty
        As for :func:`stainfree.inference.predict.predict_file` (``uncertainty``: with ``tta``, the spread
        of the views follows as extra channels).
    max_block_voxels : int, optional
        Largest block with its halo (default that of predict_array); the blocks are the output's chunks.
    max_blocks : int, optional
        Compute at most this many unfinished blocks, then stop with the run resumable (not finalized).
    progress : bool
        Show a progress bar over blocks.

    Returns
    -------
    BlockRun
        The output path once complete, and how many blocks were computed now and found done.
    """
    import zarr

    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import plan_blocks
    from stainfree.inference.predict import default_bundle_roi, output_channel_names, streamable
    from stainfree.inference.tiling import DEFAULT_BLOCK_VOXELS
    from stainfree.io.arrays import channel_indices
    from stainfree.io.readers import read_image

    out = Path(output)
    if not out.name.lower().endswith(".zarr"):
        raise InputError(out, "the block engine writes OME-Zarr: name the output <name>.ome.zarr")
    if out.resolve() == Path(input_path).resolve():
        raise InputError(out, "the output would overwrite the input image; choose another path")
    b = cached_bundle(bundle)
    cfg = b.config
    image, meta = read_image(input_path, lazy=True, intensities=True)
    if not streamable(cfg, meta):
        raise InputError(
            input_path, "cannot be predicted as blocks (a time axis, resampling or an input transform)"
        )
    index = tuple(slice(None) if a in meta.axes else None for a in "CZYX")
    czyx_shape = tuple(int(s) for s in image[index].shape)
    channels = channel_indices(cfg.signal_channels, meta.channel_names, czyx_shape[0], str(input_path))
    dims = 2 if cfg.input_mode == "2d" else 3
    roi = roi_size or default_bundle_roi(cfg)
    if not isinstance(roi, int) and len(roi) > dims:
        roi = tuple(roi)[-dims:]
    plan = plan_blocks(
        czyx_shape[1:],
        spatial_dims=dims,
        divisor=2 ** int(cfg.model.depth),
        roi_size=roi,
        overlap=overlap,
        max_block_voxels=max_block_voxels or DEFAULT_BLOCK_VOXELS,
    )
    keep_z = "Z" in meta.axes
    names = output_channel_names(cfg, uncertainty=uncertainty and tta)
    runner: dict[str, Any] = {
        "overlap": overlap,
        "sw_batch_size": sw_batch_size,
        "bf16": bf16,
        "device": device,
    }
    # only where asked for: the settings are part of the run's fingerprint, which an earlier run must match
    if tta:
        runner["tta"] = True
    if uncertainty and tta:
        runner["uncertainty"] = True
    src = str(Path(input_path).resolve())
    description = {
        "input": file_stamp(input_path),
        "bundle": file_stamp(bundle),
        "settings": runner,
        "plan": asdict(plan),
        "channels": channels,
    }
    out_axes = "C" + ("Z" if keep_z else "") + "YX"
    out_shape = (len(names), *(czyx_shape[1:] if keep_z else czyx_shape[2:]))
    chunks = (len(names), *(plan.block_shape if keep_z else plan.block_shape[1:]))
    done_before = _read_plan(out) if (out / RUN_DIR / "complete.json").is_file() else None
    work = working_path(out)
    # the statistics (a pass over the whole input) are kept with the plan and reused while input, bundle and
    # channels are the same, also when another setting changed
    stats_key = fingerprint([description["input"], description["bundle"], channels])
    stats = _stored_stats(work, stats_key) or _stored_stats(out, stats_key)
    if stats is None:
        stats = _statistics(client, cfg, src, channels, czyx_shape[1], czyx_shape[2:])
    description["stats"] = stats
    key = fingerprint(description)
    total = len(plan.cores)
    if done_before == key:
        return BlockRun(out, total, 0, total)
    if _read_plan(work) != key:
        shutil.rmtree(work, ignore_errors=True)
        group = zarr.open_group(str(work), mode="w", zarr_format=3)
        group.create_array(
            "0",
            shape=out_shape,
            dtype=np.float32,
            chunks=chunks,
            dimension_names=[a.lower() for a in out_axes],
            fill_value=0.0,
        )
        (work / RUN_DIR / "done").mkdir(parents=True)
        record = {"fingerprint": key, "stats_key": stats_key, "stats": stats, "description": description}
        (work / RUN_DIR / "plan.json").write_text(json.dumps(record, default=str))
    done = {int(p.stem) for p in (work / RUN_DIR / "done").glob("*.json")}
    todo = [i for i in range(total) if i not in done]
    if max_blocks is not None:
        todo = todo[:max_blocks]
    job = {
        "bundle": str(Path(bundle).resolve()),
        "input": src,
        "store": str(work),
        "plan": asdict(plan),
        "channels": channels,
        "stats": stats,
        "runner": runner,
        "keep_z": keep_z,
    }
    _run(client, job, todo, progress)
    if len(done) + len(todo) < total:
        return BlockRun(None, total, len(todo), len(done))
    _finalize(work, out, out_axes, meta.voxel_size_um, names, total)
    return BlockRun(out, total, len(todo), len(done))


def _stored_stats(store: Path, stats_key: str) -> list[dict[str, Any]] | None:
    """Statistics recorded in a run store's plan for the same input, bundle and channels, else None."""
    try:
        plan = json.loads((store / RUN_DIR / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    return list(plan["stats"]) if isinstance(plan, dict) and plan.get("stats_key") == stats_key else None


def _run(
    client: Any,
    job: dict[str, Any],
    todo: list[int],
    progress: bool,
    task: Any = None,
    what: str = "predicting blocks",
) -> None:
    from distributed import as_completed

    if not todo:
        return
    futures = [client.submit(task or predict_one_block, job, i, pure=False) for i in todo]
    if not progress:
        client.gather(futures)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        bar_task = bar.add_task(what, total=len(futures))
        for future in as_completed(futures):
            future.result()
            bar.advance(bar_task)


def _finalize(
    work: Path,
    out: Path,
    axes: str,
    voxel_size_um: Any,
    names: list[str],
    total: int,
    labels: dict[str, Any] | None = None,
) -> None:
    """Write the NGFF 0.5 metadata (display windows from the block records) and move the store into place;
    ``labels``: ``{"name", "colors", "properties"}`` of an NGFF label image at ``labels/<name>/0``."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    from stainfree.io.writers import ngff_axes, ngff_scale

    records = [json.loads((work / RUN_DIR / "done" / f"{i}.json").read_text()) for i in range(total)]
    channels = []
    for c, name in enumerate(names):
        lo, hi = min(r["min"][c] for r in records), max(r["max"][c] for r in records)
        channels.append(
            {
                "label": name,
                "color": "FFFFFF" if len(names) == 1 else ("FF0000", "00FF00", "0000FF")[c % 3],
                "active": True,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
        )
    omero = {"channels": channels, "rdefs": {"model": "greyscale" if len(names) == 1 else "color"}}
    group = zarr.open_group(str(work), mode="r+", zarr_format=3)
    datasets = [
        {
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": ngff_scale(axes, voxel_size_um, 0)}],
        }
    ]
    write_multiscales_metadata(
        group,
        datasets,
        fmt=FormatV05(),
        axes=ngff_axes(axes, voxel_size_um),
        name=out.name.split(".")[0],
        metadata={"omero": omero},
    )
    if labels is not None:
        _label_metadata(group, axes.replace("C", ""), voxel_size_um, labels)
    shutil.rmtree(work / RUN_DIR / "done")
    (work / RUN_DIR / "complete.json").write_text(json.dumps({"blocks": total}))
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(work, out)


def _label_metadata(group: Any, axes: str, voxel_size_um: Any, labels: dict[str, Any]) -> None:
    """NGFF 0.5 metadata of the one-level label image ``labels/<name>`` of ``group``."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    from stainfree.io.writers import ngff_axes, ngff_scale

    name = labels["name"]
    parent = group.require_group("labels")
    datasets = [
        {
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": ngff_scale(axes, voxel_size_um, 0)}],
        }
    ]
    write_multiscales_metadata(
        parent[name], datasets, fmt=FormatV05(), axes=ngff_axes(axes, voxel_size_um), name=name
    )
    colors = [{"label-value": int(k), "rgba": list(v)} for k, v in (labels.get("colors") or {}).items()]
    properties = [{"label-value": int(k), "class": v} for k, v in (labels.get("properties") or {}).items()]
    write_label_metadata(parent, name, colors=colors or None, properties=properties or None, fmt=FormatV05())


# ----- segmentation: every catalog bundle on one image, block by block --------------------------------------

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
    nets = []
    for net in job["nets"]:
        bundle = cached_bundle(net["bundle"])
        view: Any
        if net["pre"] is not None:
            pre = RatioPreconditions.from_dict(net["pre"])
            view = RatiometricView(source, net["channels"][0], net["channels"][1], net["shift"], pre)
        else:
            view = NormalizedView(source, net["channels"], net["stats"])
        runner = window_runner(bundle.model, plan, **job["runner"])
        nets.append((bundle.config, view, plan, runner))
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
        Bundle folders; their plans must cut the image into the same blocks (same tile and depth).
    input_path, out_dir : path
        The Nile Red image (yellow and red channels), the output folder.
    name, catalog, threshold, tta, alignment
        As :func:`stainfree.workflows.organelles.segment`.
    max_block_voxels, max_blocks, progress
        As :func:`predict_blocks`.

    Returns
    -------
    dict
        ``masks`` (None until complete), ``alignment`` path and ``blocks`` (:class:`BlockRun`).
    """
    import zarr

    from stainfree.atomic import write_text
    from stainfree.catalog import DEFAULT_CATALOG, load_catalog
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import plan_blocks
    from stainfree.inference.predict import default_bundle_roi
    from stainfree.inference.segblocks import segmentable_as_blocks
    from stainfree.inference.segment import COMPARTMENT_COLORS, nilered_channel_names
    from stainfree.inference.tiling import DEFAULT_BLOCK_VOXELS
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
        plans.append(
            plan_blocks(
                czyx_shape[1:],
                spatial_dims=dims,
                divisor=2 ** int(cfg.model.depth),
                roi_size=roi,
                overlap=overlap,
                max_block_voxels=max_block_voxels or DEFAULT_BLOCK_VOXELS,
            )
        )
    if any(p != plans[0] for p in plans[1:]):
        raise InputError(
            "bundles",
            "the bundles cut the image into different blocks (tile or depth differ): segment per position",
        )
    plan = plans[0]
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
    _finalize(work, out, "CZYX", vox, list(COMPARTMENTS), total, labels=labels)
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
