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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.pyramid import build_pyramid, level_factors, multiscale_datasets
from stainfree.execute.records import RUN_DIR, file_stamp, fingerprint, local_dask
from stainfree.inference.predict import NormalizedView
from stainfree.inference.predict import read_array as _read
from stainfree.inference.windows import DEFAULT_OVERLAP

if TYPE_CHECKING:
    from stainfree.inference.blockplan import BlockPlan

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


def _input_czyx(path: str, frame: int | None = None) -> Any:
    """The lazy (C, Z, Y, X) view of an input image (of its time point ``frame``: a time-lapse), opened once
    per worker process."""
    from stainfree.io.readers import read_image

    with _INPUT_LOCK:
        key = path if frame is None else f"{path}\0{frame}"
        if key not in _INPUTS:
            image, meta = read_image(path, lazy=True, intensities=True)
            axes = meta.axes
            if frame is not None:
                image, axes = image[frame], axes.replace("T", "")
            index = tuple(slice(None) if a in axes else None for a in "CZYX")
            _INPUTS[key] = image[index]
        return _INPUTS[key]


@local_dask
def slab_sums(
    path: str, channels: list[int], z0: int, z1: int, frame: int | None = None
) -> list[tuple[float, float, int]]:
    """Per channel: sum, sum of squares and count of planes ``z0:z1`` (float64): z-score statistics."""
    x = _input_czyx(path, frame)
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
def sample_stats(
    path: str, channels: list[int], low: float, high: float, frame: int | None = None
) -> list[dict[str, Any]]:
    """Percentile statistics per channel on a regular subsample of at most ~16 Mi voxels (as predict_file)."""
    from stainfree.data.preprocess import normalize

    x = _input_czyx(path, frame)
    out = []
    for c in channels:
        step = max(1, int(np.ceil((np.prod(x.shape[1:]) / (1 << 24)) ** (1 / 3))))
        sample = _read(x[c, ::step, ::step, ::step]).astype(np.float32)
        out.append(normalize(sample, "percentile", low=low, high=high)[1])
    return out


@local_dask
def predict_one_block(job: dict[str, Any], index: int) -> int:
    """Predict block ``index`` of ``job``, write its region into the working store, then record it.

    With ``job["time_points"]`` the input is a time-lapse: task ``index`` is block ``index % blocks`` of time
    point ``index // blocks``, normalized with that time point's statistics and written into its T slice."""
    import zarr

    from stainfree.atomic import write_text
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.blockplan import BlockPlan, predict_block, window_runner
    from stainfree.inference.predict import apply_activation

    plan = BlockPlan(**{k: _tuples(v) for k, v in job["plan"].items()})
    t, b = divmod(index, len(plan.cores)) if job.get("time_points") else (None, index)
    bundle = cached_bundle(job["bundle"])
    stats = job["stats"] if t is None else job["stats"][t]
    x = NormalizedView(_input_czyx(job["input"], t), job["channels"], stats)
    runner = window_runner(bundle.model, plan, **job["runner"])
    core = plan.cores[b]
    pred = predict_block(runner, x, plan, core)
    n_act = int(bundle.config.model.out_channels)
    pred = np.concatenate([apply_activation(pred[:n_act], bundle.config.task), pred[n_act:]])
    region: tuple[slice, ...] = tuple(slice(a, e) for a, e in core)
    if not job["keep_z"]:
        pred, region = pred[:, 0], region[1:]
    store = Path(job["store"])
    array = zarr.open_array(str(store / "0"), mode="r+")
    array[(*(() if t is None else (t,)), slice(None), *region)] = pred
    record = {"min": [float(v) for v in pred.min(axis=tuple(range(1, pred.ndim)))]}
    record["max"] = [float(v) for v in pred.max(axis=tuple(range(1, pred.ndim)))]
    write_text(store / RUN_DIR / "done" / f"{index}.json", json.dumps(record))
    return index


def _tuples(v: Any) -> Any:
    return tuple(_tuples(i) for i in v) if isinstance(v, list) else v


# ----- on the client ------------------------------------------------------------------------------------


def _statistics(
    client: Any,
    cfg: Any,
    path: str,
    channels: list[int],
    n_z: int,
    shape_yx: tuple[int, ...],
    frame: int | None = None,
) -> list[dict[str, Any]]:
    """Normalization statistics of the whole input (of its time point ``frame``), computed chunk-wise on the
    workers."""
    if cfg.normalization_scope == "dataset" and cfg.normalization_stats:
        return [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in cfg.normalization_stats]
    if cfg.normalization == "zscore":
        step = max(1, (1 << 24) // max(1, int(np.prod(shape_yx))))  # planes per task: ~16 Mi voxels
        futures = [
            client.submit(slab_sums, path, channels, z, min(z + step, n_z), frame)
            for z in range(0, n_z, step)
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
        return list(client.submit(sample_stats, path, channels, float(low), float(high), frame).result())
    return [{"method": "none"} for _ in channels]


def _read_plan(store: Path) -> str | None:
    try:
        return str(json.loads((store / RUN_DIR / "plan.json").read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_store(
    work: Path, record: dict[str, Any], shape: tuple[int, ...], chunks: tuple[int, ...], axes: str
) -> set[int]:
    """The working store of a block run: kept when its plan has ``record["fingerprint"]`` (a resumed run),
    else made afresh (an empty float32 array ``0`` of ``shape`` and ``chunks``, the plan ``record``). Returns
    the indices of the blocks already done."""
    import zarr

    if _read_plan(work) != record["fingerprint"]:
        shutil.rmtree(work, ignore_errors=True)
        group = zarr.open_group(str(work), mode="w", zarr_format=3)
        group.create_array(
            "0",
            shape=shape,
            dtype=np.float32,
            chunks=chunks,
            dimension_names=[a.lower() for a in axes],
            fill_value=0.0,
        )
        (work / RUN_DIR / "done").mkdir(parents=True)
        (work / RUN_DIR / "plan.json").write_text(json.dumps(record, default=str))
    return {int(p.stem) for p in (work / RUN_DIR / "done").glob("*.json")}


def zarr_output(output: str | os.PathLike, input_path: str | os.PathLike, what: str) -> Path:
    """The output path of an engine run, checked: an OME-Zarr (``what`` says why) that is not the input."""
    out = Path(output)
    if not out.name.lower().endswith(".zarr"):
        raise InputError(out, f"{what}: name the output <name>.ome.zarr")
    if out.resolve() == Path(input_path).resolve():
        raise InputError(out, "the output would overwrite the input image; choose another path")
    return out


def block_job(
    cfg: Any,
    meta: Any,
    czyx_shape: tuple[int, ...],
    input_path: str | os.PathLike,
    bundle: str | os.PathLike,
    *,
    roi_size: int | Sequence[int] | None,
    overlap: float,
    max_block_voxels: int | None,
    runner: dict[str, Any],
    tta: bool,
    uncertainty: bool,
) -> tuple[list[int], BlockPlan, list[str], dict[str, Any]]:
    """What a block prediction of one (C, Z, Y, X) image (or frame) needs and is fingerprinted by: the input
    channels, the block plan, the output channel names and the run's description (input and bundle stamps,
    runner settings, plan, channels)."""
    from stainfree.inference.predict import default_bundle_roi, output_channel_names
    from stainfree.io.arrays import channel_indices

    channels = channel_indices(cfg.signal_channels, meta.channel_names, czyx_shape[0], str(input_path))
    dims = 2 if cfg.input_mode == "2d" else 3
    roi = roi_size or default_bundle_roi(cfg)
    if not isinstance(roi, int) and len(roi) > dims:
        roi = tuple(roi)[-dims:]
    plan = bundle_plan(cfg, czyx_shape, dims, roi, overlap, max_block_voxels)
    names = output_channel_names(cfg, uncertainty=uncertainty and tta)
    settings: dict[str, Any] = {"overlap": overlap, **runner}
    # only where asked for: the settings are part of the run's fingerprint, which an earlier run must match
    if tta:
        settings["tta"] = True
    if uncertainty and tta:
        settings["uncertainty"] = True
    description: dict[str, Any] = {
        "input": file_stamp(input_path),
        "bundle": file_stamp(bundle),
        "settings": settings,
        "plan": asdict(plan),
        "channels": channels,
    }
    return channels, plan, names, description


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
    pyramid_levels: int | None = None,
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
    pyramid_levels : int, optional
        Multiscale levels added after level 0 (:mod:`stainfree.execute.pyramid`, on the workers); None: until
        the smaller of Y and X is at most 512; 0: none.

    Returns
    -------
    BlockRun
        The output path once complete, and how many blocks were computed now and found done.
    """

    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.predict import streamable
    from stainfree.io.readers import read_image

    out = zarr_output(output, input_path, "the block engine writes OME-Zarr")
    b = cached_bundle(bundle)
    cfg = b.config
    image, meta = read_image(input_path, lazy=True, intensities=True)
    if not streamable(cfg, meta):
        raise InputError(
            input_path, "cannot be predicted as blocks (a time axis, resampling or an input transform)"
        )
    index = tuple(slice(None) if a in meta.axes else None for a in "CZYX")
    czyx_shape = tuple(int(s) for s in image[index].shape)
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
    keep_z = "Z" in meta.axes
    src = str(Path(input_path).resolve())
    out_axes = "C" + ("Z" if keep_z else "") + "YX"
    out_shape = (len(names), *(czyx_shape[1:] if keep_z else czyx_shape[2:]))
    chunks = (len(names), *(plan.block_shape if keep_z else plan.block_shape[1:]))
    factors = level_factors(out_axes, meta.voxel_size_um, out_shape, pyramid_levels)
    if factors:  # only where there are levels: older runs without them stay resumable
        description["pyramid"] = factors
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
    record = {"fingerprint": key, "stats_key": stats_key, "stats": stats, "description": description}
    done = open_store(work, record, out_shape, chunks, out_axes)
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
        "runner": description["settings"],
        "keep_z": keep_z,
    }
    _run(client, job, todo, progress)
    if len(done) + len(todo) < total:
        return BlockRun(None, total, len(todo), len(done))
    if factors:
        build_pyramid(client, work, [""], factors)
    _finalize(work, out, out_axes, meta.voxel_size_um, names, total, factors=factors)
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
    factors: list[dict[str, int]] | None = None,
) -> None:
    """Write the NGFF 0.5 metadata (display windows from the block records) and move the store into place;
    ``labels``: ``{"name", "colors", "properties"}`` of an NGFF label image at ``labels/<name>/0``;
    ``factors``: those of the levels :func:`stainfree.execute.pyramid.build_pyramid` added."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    from stainfree.io.writers import ngff_axes

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
    write_multiscales_metadata(
        group,
        multiscale_datasets(axes, voxel_size_um, factors),
        fmt=FormatV05(),
        axes=ngff_axes(axes, voxel_size_um),
        name=out.name.split(".")[0],
        metadata={"omero": omero},
    )
    if labels is not None:
        _label_metadata(group, axes.replace("C", ""), voxel_size_um, labels, factors)
    shutil.rmtree(work / RUN_DIR / "done")
    (work / RUN_DIR / "complete.json").write_text(json.dumps({"blocks": total}))
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(work, out)


def _label_metadata(
    group: Any,
    axes: str,
    voxel_size_um: Any,
    labels: dict[str, Any],
    factors: list[dict[str, int]] | None = None,
) -> None:
    """NGFF 0.5 metadata of the label image ``labels/<name>`` of ``group`` (its levels: ``factors``)."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    from stainfree.io.writers import ngff_axes

    name = labels["name"]
    parent = group.require_group("labels")
    datasets = multiscale_datasets(axes, voxel_size_um, factors)
    write_multiscales_metadata(
        parent[name], datasets, fmt=FormatV05(), axes=ngff_axes(axes, voxel_size_um), name=name
    )
    colors = [{"label-value": int(k), "rgba": list(v)} for k, v in (labels.get("colors") or {}).items()]
    properties = [{"label-value": int(k), "class": v} for k, v in (labels.get("properties") or {}).items()]
    write_label_metadata(parent, name, colors=colors or None, properties=properties or None, fmt=FormatV05())
    ome = parent.attrs.get("ome")  # ome-zarr leaves the version out of the labels group's ome block
    parent.attrs["ome"] = {**(ome if isinstance(ome, dict) else {}), "version": "0.5"}


def bundle_plan(
    cfg: Any,
    czyx_shape: tuple[int, ...],
    dims: int,
    roi: Any,
    overlap: float,
    max_block_voxels: int | None,
) -> Any:
    """The block plan of one bundle (its network's divisor) over an image of ``czyx_shape``."""
    from stainfree.inference.blockplan import DEFAULT_BLOCK_VOXELS, plan_blocks

    return plan_blocks(
        czyx_shape[1:],
        spatial_dims=dims,
        divisor=2 ** int(cfg.model.depth),
        roi_size=roi,
        overlap=overlap,
        max_block_voxels=max_block_voxels or DEFAULT_BLOCK_VOXELS,
    )
