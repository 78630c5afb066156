"""A time-lapse (T axis) as one task per time point on a Dask cluster, every frame written into one OME-Zarr.

Single-process predict and segment treat a time-lapse frame by frame (each frame normalized, predicted or
segmented on its own), so the frames are independent: here each one is a task, run by whichever worker is
free, which writes its time point into the shared store (chunks never span two time points, so no two workers
write the same chunk). As the block engine (:mod:`stainfree.execute.blocks`), a run fills hidden working
stores beside its outputs (``.<name>.stainfree-resume``) holding ``.stainfree-run/plan.json`` (the fingerprint
of input, bundles and settings) and one record per finished frame; a rerun with the same fingerprint computes
only the frames without a record, and the stores are renamed into place once every frame is in.

:func:`predict_frames` (one bundle) equals :func:`stainfree.inference.predict.predict_file`;
:func:`segment_frames` equals :func:`stainfree.workflows.timelapse.segment_series_files` (masks, label map,
intensity, OME-TIFFs streamed from the stores, overlay of frame 0, per-frame alignment JSON).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.execute.blocks import BlockRun, _finalize, _read_plan, _run, working_path, zarr_output
from stainfree.execute.pyramid import build_pyramid, level_factors
from stainfree.execute.records import RUN_DIR, file_stamp, fingerprint, local_dask
from stainfree.inference.predict import read_array

__all__ = ["is_time_lapse", "predict_frames", "segment_frames"]

# ----- on the workers ---------------------------------------------------------------------------------

_SERIES: dict[str, Any] = {}
_SERIES_LOCK = threading.Lock()


def _series(path: str) -> tuple[Any, Any]:
    """The lazy image and metadata of a time-lapse, opened once per worker process."""
    from stainfree.io.readers import read_image

    with _SERIES_LOCK:
        if path not in _SERIES:
            _SERIES[path] = read_image(path, lazy=True, intensities=True)
        return _SERIES[path]


def _record(store: Path, t: int, values: np.ndarray, **extra: Any) -> None:
    """Frame ``t``'s record in a working store: per channel (axis 0) min and max, and ``extra``."""
    from stainfree.atomic import write_text

    axes = tuple(range(1, values.ndim))
    record = {
        "min": [float(v) for v in values.min(axis=axes)],
        "max": [float(v) for v in values.max(axis=axes)],
    }
    write_text(store / RUN_DIR / "done" / f"{t}.json", json.dumps({**record, **extra}))


@local_dask
def predict_one_frame(job: dict[str, Any], t: int) -> int:
    """Predict time point ``t`` of ``job`` as predict_file does, write it into the working store; record."""
    import zarr

    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.predict import predict_with_bundle

    image, meta = _series(job["input"])
    frame = read_array(image[t : t + 1])  # the series' own axes, one time point: the single-process path
    pred, _ = predict_with_bundle(cached_bundle(job["bundle"]), frame, meta, **job["options"])
    store = Path(job["store"])
    zarr.open_array(str(store / "0"), mode="r+")[t] = pred[0]
    _record(store, t, pred[0])
    return t


@local_dask
def segment_one_frame(job: dict[str, Any], t: int) -> int:
    """Segment time point ``t`` as segment_series_files does; write masks, labels and intensity; record it."""
    import zarr

    from stainfree.data.align import align_for_ratio
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.segment_series import segment_frame

    image, meta = _series(job["input"])
    n_c, spatial = int(job["n_c"]), tuple(job["spatial"])
    frame = np.asarray(read_array(image[t]), dtype=np.float32).reshape(n_c, *spatial)
    if not np.isfinite(frame).all():
        raise InputError(job["source"], f"time point {t}: NaN or infinite values")
    frame_meta = replace(meta, channel_names=tuple(job["names"]), axes="CZYX", shape=(n_c, *spatial))
    bundles = [cached_bundle(b) for b in job["bundles"]]
    masks, labels = segment_frame(
        bundles,
        frame,
        frame_meta,
        catalog=job["catalog"],
        threshold=job["threshold"],
        tta=job["tta"],
        quiet=t > 0,
    )
    iy, ir = job["yellow_red"]
    alignment = job["alignment"] if isinstance(job["alignment"], str) else tuple(job["alignment"])
    red, shift = align_for_ratio(frame[iy], frame[ir], alignment)
    intensity = np.asarray((frame[iy] + red) / 2, dtype=np.float32).reshape(spatial)
    image_store, masks_store = Path(job["image_store"]), Path(job["masks_store"])
    zarr.open_array(str(image_store / "0"), mode="r+")[t] = intensity
    zarr.open_array(str(image_store / "labels" / "compartments" / "0"), mode="r+")[t] = labels
    _record(image_store, t, intensity[None])
    zarr.open_array(str(masks_store / "0"), mode="r+")[t] = masks
    _record(masks_store, t, masks, shift=[float(v) for v in shift])  # last: the frame's commit point
    return t


# ----- on the client ------------------------------------------------------------------------------------


def is_time_lapse(path: str | os.PathLike) -> bool:
    """True when an image has a time axis (``T`` in its axes): a job runs it one task per time point."""
    from stainfree.io.readers import read_image

    _, meta = read_image(path, lazy=True)
    return "T" in meta.axes


def _new_store(work: Path, key: str, arrays: dict[str, tuple[tuple[int, ...], Any, str]], plan: dict) -> None:
    """A fresh working store with empty ``arrays`` (path -> shape, dtype, axes; chunks: one time point)."""
    import zarr

    shutil.rmtree(work, ignore_errors=True)
    group = zarr.open_group(str(work), mode="w", zarr_format=3)
    for path, (shape, dtype, axes) in arrays.items():
        parent = group
        *parents, name = path.split("/")
        for p in parents:
            parent = parent.require_group(p)
        limits = {"T": 1, "Z": 32, "Y": 256, "X": 256}  # a chunk never spans two time points
        chunks = tuple(min(int(n), limits.get(a, int(n))) for n, a in zip(shape, axes, strict=True))
        parent.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            dimension_names=[a.lower() for a in axes],
            fill_value=0,
        )
    (work / RUN_DIR / "done").mkdir(parents=True)
    (work / RUN_DIR / "plan.json").write_text(json.dumps({"fingerprint": key, **plan}, default=str))


def _done(work: Path) -> set[int]:
    return {int(p.stem) for p in (work / RUN_DIR / "done").glob("*.json")}


def predict_frames(
    client: Any,
    bundle: str | os.PathLike,
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    options: dict[str, Any],
    max_frames: int | None = None,
    progress: bool = False,
    pyramid_levels: int | None = None,
) -> BlockRun:
    """Predict a time-lapse with one bundle, one task per time point, into an OME-Zarr (NGFF 0.5, T axis).

    Parameters
    ----------
    client : distributed.Client
        Where the frames run.
    bundle, input_path, output : path
        Model bundle, time-lapse (read lazily, one frame per task), output ``.ome.zarr``.
    options : dict
        Keyword arguments of :func:`stainfree.inference.predict.predict_with_bundle` (``roi_size``,
        ``overlap``, ``sw_batch_size``, ``bf16``, ``device``, ``tta``, ``uncertainty``).
    max_frames : int, optional
        Compute at most this many unfinished frames, then stop with the run resumable.
    progress : bool
        Show a progress bar over frames.
    pyramid_levels : int, optional
        Multiscale levels (:mod:`stainfree.execute.pyramid`); None: until the smaller of Y and X is at most
        512; 0: none.

    Returns
    -------
    BlockRun
        ``total``, ``computed`` and ``skipped`` count frames; ``path`` is None until every frame is in.
    """
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.predict import output_channel_names
    from stainfree.io.readers import read_image

    out = zarr_output(output, input_path, "frames are written into an OME-Zarr")
    cfg = cached_bundle(bundle).config
    image, meta = read_image(input_path, lazy=True, intensities=True)
    if "T" not in meta.axes:
        raise InputError(input_path, "not a time-lapse (no T axis)")
    shape = dict(zip(meta.axes, (int(s) for s in image.shape), strict=True))
    keep_z = "Z" in meta.axes and cfg.input_mode != "zstack_to_2d"
    names = output_channel_names(
        cfg, uncertainty=bool(options.get("uncertainty")) and bool(options.get("tta"))
    )
    out_axes = "TC" + ("Z" if keep_z else "") + "YX"
    out_shape = (shape["T"], len(names), *([shape["Z"]] if keep_z else []), shape["Y"], shape["X"])
    opts = {k: v for k, v in options.items() if k != "progress"}
    description: dict[str, Any] = {
        "input": file_stamp(input_path),
        "bundle": file_stamp(bundle),
        "options": opts,
    }
    factors = level_factors(out_axes, meta.voxel_size_um, out_shape, pyramid_levels)
    if factors:
        description["pyramid"] = factors
    key = fingerprint(description)
    total = shape["T"]
    if (out / RUN_DIR / "complete.json").is_file() and _read_plan(out) == key:
        return BlockRun(out, total, 0, total)
    work = working_path(out)
    if _read_plan(work) != key:
        _new_store(work, key, {"0": (out_shape, np.float32, out_axes)}, {"description": description})
    done = _done(work)
    todo = [t for t in range(total) if t not in done][:max_frames]
    job = {
        "bundle": str(Path(bundle).resolve()),
        "input": str(Path(input_path).resolve()),
        "store": str(work),
        "options": {**opts, "progress": False},
    }
    _run(client, job, todo, progress, predict_one_frame, "predicting frames")
    if len(done) + len(todo) < total:
        return BlockRun(None, total, len(todo), len(done))
    if factors:
        build_pyramid(client, work, [""], factors)
    _finalize(work, out, out_axes, meta.voxel_size_um, names, total, factors=factors)
    return BlockRun(out, total, len(todo), len(done))


def segment_frames(
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
    max_frames: int | None = None,
    progress: bool = False,
    pyramid_levels: int | None = None,
) -> dict[str, Any]:
    """Segment a Nile Red time-lapse with the catalog bundles, one task per time point.

    Writes what :func:`stainfree.workflows.timelapse.segment_series_files` writes, with equal masks, label
    map, intensity and per-frame shifts: ``<name>_masks.ome.zarr`` (TCZYX uint8, NGFF 0.5),
    ``<name>.ome.zarr`` (TZYX Nile Red intensity, the label map as NGFF labels ``labels/compartments``),
    ``<name>_masks.ome.tif`` and ``<name>_labels.ome.tif`` (streamed from the stores), ``<name>_overlay.png``
    (frame 0) and ``<name>_alignment.json``.

    Parameters
    ----------
    client : distributed.Client
    bundles : list of str
        Bundle folders.
    input_path, out_dir : path
        The time-lapse (T, C, [Z,] Y, X) with the yellow and red channels; the output folder.
    name, catalog, threshold, tta, alignment
        As :func:`stainfree.workflows.organelles.segment`.
    max_frames, progress, pyramid_levels
        As :func:`predict_frames` (levels of masks and labels: every second voxel; of the intensity: mean).

    Returns
    -------
    dict
        Paths of ``masks``, ``labels``, ``masks_zarr``, ``ngff``, ``overlay`` and ``alignment`` (``masks``
        None until every frame is in), and ``frames`` (:class:`BlockRun` counting frames).
    """
    from stainfree.catalog import DEFAULT_CATALOG, load_catalog
    from stainfree.data.preprocess import channel_indices
    from stainfree.inference.segment import COMPARTMENT_COLORS, nilered_channel_names
    from stainfree.io.readers import read_image
    from stainfree.types import COMPARTMENTS, compartment_id

    image, meta = read_image(input_path, lazy=True, intensities=True)
    if meta.axes[0] != "T" or "C" not in meta.axes:
        raise InputError(input_path, f"expected a time-lapse with channels (T, C, ...), got axes {meta.axes}")
    n_t, n_c = int(image.shape[0]), int(image.shape[1])
    if n_c < 2:
        raise InputError(input_path, "needs two channels (yellow and red Nile Red emission)")
    spatial = tuple(int(s) for s in image.shape[2:])
    spatial = (1, *spatial) if len(spatial) == 2 else spatial
    names = nilered_channel_names(meta.channel_names, n_c)
    iy, ir = channel_indices(["yellow", "red"], names, n_c, str(input_path))
    stem = name or Path(input_path).name.split(".")[0]
    out = Path(out_dir)
    paths = {
        "masks_zarr": out / f"{stem}_masks.ome.zarr",
        "ngff": out / f"{stem}.ome.zarr",
        "masks": out / f"{stem}_masks.ome.tif",
        "labels": out / f"{stem}_labels.ome.tif",
        "overlay": out / f"{stem}_overlay.png",
        "alignment": out / f"{stem}_alignment.json",
    }
    align = alignment if isinstance(alignment, str) else [float(v) for v in alignment]
    settings = {
        "catalog": str(catalog) if catalog else None,
        "threshold": threshold,
        "tta": tta,
        "alignment": align,
    }
    description = {
        "input": file_stamp(input_path),
        "bundles": [file_stamp(b) for b in bundles],
        "settings": settings,
        "name": stem,
    }
    factors = level_factors("TZYX", meta.voxel_size_um, (n_t, *spatial), pyramid_levels)
    if factors:
        description["pyramid"] = factors
    key = fingerprint(description)
    total = n_t
    if _read_plan(paths["masks_zarr"]) == key and all(p.exists() for p in paths.values()):
        return {**paths, "frames": BlockRun(paths["masks_zarr"], total, 0, total)}
    work_masks, work_image = working_path(paths["masks_zarr"]), working_path(paths["ngff"])
    if _read_plan(work_masks) != key or not work_image.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        _new_store(
            work_image,
            key,
            {
                "0": ((n_t, *spatial), np.float32, "TZYX"),
                "labels/compartments/0": ((n_t, *spatial), np.uint8, "TZYX"),
            },
            {},
        )
        _new_store(
            work_masks,
            key,
            {"0": ((n_t, len(COMPARTMENTS), *spatial), np.uint8, "TCZYX")},
            {"description": description},
        )
    done = _done(work_masks)
    todo = [t for t in range(total) if t not in done][:max_frames]
    job = {
        "input": str(Path(input_path).resolve()),
        "source": str(input_path),
        "bundles": [str(Path(b).resolve()) for b in bundles],
        "n_c": n_c,
        "spatial": list(spatial),
        "names": list(names),
        "yellow_red": [iy, ir],
        "image_store": str(work_image),
        "masks_store": str(work_masks),
        **settings,
    }
    _run(client, job, todo, progress, segment_one_frame, "segmenting frames")
    if len(done) + len(todo) < total:
        return {**paths, "masks": None, "frames": BlockRun(None, total, len(todo), len(done))}
    shifts = [
        json.loads((work_masks / RUN_DIR / "done" / f"{t}.json").read_text())["shift"] for t in range(total)
    ]
    _write_series_files(
        work_masks, work_image, paths, meta.voxel_size_um, spatial, str(input_path), shifts, align
    )
    priority = load_catalog(catalog or DEFAULT_CATALOG).label_priority
    _overlay(work_masks, work_image, paths["overlay"], priority)
    labels = {
        "name": "compartments",
        "colors": {compartment_id(c): (*COMPARTMENT_COLORS[c], 255) for c in COMPARTMENTS},
        "properties": {compartment_id(c): c for c in COMPARTMENTS},
    }
    vox = meta.voxel_size_um
    if factors:
        build_pyramid(client, work_image, ["", "labels/compartments"], factors)
        build_pyramid(client, work_masks, [""], factors)
    intensity = ["nile_red_intensity"]
    _finalize(work_image, paths["ngff"], "TZYX", vox, intensity, total, labels=labels, factors=factors)
    _finalize(work_masks, paths["masks_zarr"], "TCZYX", vox, list(COMPARTMENTS), total, factors=factors)
    return {**paths, "frames": BlockRun(paths["masks_zarr"], total, len(todo), len(done))}


def _write_series_files(
    work_masks: Path,
    work_image: Path,
    paths: dict[str, Path],
    vox: Any,
    spatial: tuple[int, ...],
    source: str,
    shifts: list[list[float]],
    alignment: Any,
) -> None:
    """The OME-TIFFs (streamed frame by frame from the working stores) and the alignment JSON."""
    import zarr

    from stainfree.io.series import write_ome_tiff_frames
    from stainfree.io.writers import write_json
    from stainfree.types import COMPARTMENTS

    m = zarr.open_array(str(work_masks / "0"), mode="r")
    lab = zarr.open_array(str(work_image / "labels" / "compartments" / "0"), mode="r")
    n_t = int(m.shape[0])
    write_ome_tiff_frames(
        paths["masks"],
        lambda t: np.asarray(m[t]),
        n_t,
        m.shape[1:],
        np.uint8,
        "TCZYX",
        vox,
        list(COMPARTMENTS),
    )
    write_ome_tiff_frames(paths["labels"], lambda t: np.asarray(lab[t]), n_t, spatial, np.uint8, "TZYX", vox)
    record = {
        "source": source,
        "frames": n_t,
        "red_onto_yellow_shift_px": shifts,
        "red_onto_yellow_shift_um": [
            [None if v is None else s * v for s, v in zip(shift, vox, strict=True)] for shift in shifts
        ],
        "alignment": alignment,
    }
    write_json(paths["alignment"], record)


def _overlay(work_masks: Path, work_image: Path, path: Path, priority: Any) -> None:
    import zarr

    from stainfree.inference.segment import write_overlay

    masks = np.asarray(zarr.open_array(str(work_masks / "0"), mode="r")[0])
    labels = np.asarray(zarr.open_array(str(work_image / "labels" / "compartments" / "0"), mode="r")[0])
    intensity = np.asarray(zarr.open_array(str(work_image / "0"), mode="r")[0])
    write_overlay(path, masks, labels, intensity, priority)
