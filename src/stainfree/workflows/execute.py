"""Jobs: predict, segment and quantify many images (a plate, a folder, a glob) or one huge image on Dask.

Each job runs on a ``dask.distributed`` client (``scheduler`` address, ``cluster="local:N"``, or in-process),
mirrors the input layout in its output, writes ``summary.csv`` (every position: done / skipped / failed and
why) and resumes: a rerun skips what an earlier run finished (see :mod:`stainfree.execute`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stainfree.execute.positions import Position, find_positions, input_layout
from stainfree.execute.records import local_dask, parse_cluster

__all__ = ["input_layout", "predict_job", "quantify_job", "segment_job"]


# ----- position tasks (module level: the workers import them by name) -----------------------------------


@local_dask
def _predict_position(source: str, output: str, *, bundles: list[str], plate: bool, options: dict) -> str:
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.collection import predict_collection_file
    from stainfree.inference.predict import predict_file, predict_with_bundle

    if plate:
        import numpy as np

        from stainfree.io.readers import read_image
        from stainfree.io.writers import write_ome_zarr

        image, meta = read_image(source, intensities=True)
        opts = {k: v for k, v in options.items() if k != "progress"}
        pred, m = predict_with_bundle(cached_bundle(bundles[0]), np.asarray(image), meta, **opts)
        write_ome_zarr(output, pred, m.axes, m.voxel_size_um, list(m.channel_names), ngff_version="0.5")
    elif len(bundles) == 1:
        predict_file(cached_bundle(bundles[0]), source, output, **options)
    else:
        predict_collection_file([cached_bundle(b) for b in bundles], source, output, **options)
    return output


@local_dask
def _segment_position(source: str, output: str, *, bundles: list[str], plate: bool, options: dict) -> str:
    from stainfree.execute.cluster import cached_bundle
    from stainfree.workflows.organelles import segment

    # a plate's fields are all called 0, 1, ...: their files are named after row, column and field
    name = "_".join(Path(output).parts[-3:]) if plate else None
    segment(source, [cached_bundle(b) for b in bundles], output, name=name, **options)
    return output


@local_dask
def _quantify_position(source: str, output: str, *, config: Any) -> str:
    from stainfree.workflows.quantify import quantify

    quantify(source, output, config=config)
    return output


# ----- helpers ---------------------------------------------------------------------------------------------


def _bundle_paths(spec: str | Path | Sequence[str | Path]) -> list[str]:
    """Bundle folders from a bundle, a folder of bundles or a list of bundles (resolved paths)."""
    from stainfree.errors import InputError

    if not isinstance(spec, (str, os.PathLike)):
        return [p for s in spec for p in _bundle_paths(s)]
    p = Path(spec)
    if (p / "bundle.yaml").is_file():
        return [str(p.resolve())]
    found = (
        sorted(str(q.resolve()) for q in p.iterdir() if (q / "bundle.yaml").is_file()) if p.is_dir() else []
    )
    if not found:
        raise InputError(p, "no model bundles (folders with bundle.yaml) here")
    return found


def _stamps(paths: list[str]) -> list[Any]:
    from stainfree.execute.records import file_stamp

    return [file_stamp(p) for p in paths]


def _run_job(
    positions: list[Position],
    task: Any,
    out_dir: Path,
    outputs: dict[str, str],
    scheduler: str | None,
    cluster: str | None,
    settings: dict[str, Any],
    progress: bool,
    **kwargs: Any,
) -> dict[str, Any]:
    from stainfree.execute.cluster import open_client
    from stainfree.execute.positions import run_positions
    from stainfree.lock import output_lock

    with output_lock(out_dir), open_client(scheduler, cluster) as client:
        table = run_positions(
            client, positions, task, out_dir, outputs, settings=settings, progress=progress, **kwargs
        )
    return {"output": out_dir, "summary": out_dir / "summary.csv", "table": table}


def _make_plate(source: Path, out: Path, positions: list[Position]) -> None:
    """An empty NGFF 0.5 plate at ``out`` with the wells and fields of ``source``'s plate."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    from stainfree.execute.positions import _attrs

    plate = _attrs(source).get("plate", {})
    rows = [str(r["name"]) for r in plate.get("rows", [])]
    cols = [str(c["name"]) for c in plate.get("columns", [])]
    wells = sorted({p.key.rsplit("/", 1)[0] for p in positions})
    root = zarr.open_group(str(out), mode="a", zarr_format=3)
    write_plate_metadata(root, rows, cols, wells, fmt=FormatV05(), name=out.name.split(".")[0])
    for well in wells:
        fields = [p.key.rsplit("/", 1)[1] for p in positions if p.key.rsplit("/", 1)[0] == well]
        write_well_metadata(root.require_group(well), fields, fmt=FormatV05())


# ----- jobs -----------------------------------------------------------------------------------------------


def predict_job(
    bundles: str | Path | Sequence[str | Path],
    input: str | Path,
    output: str | Path,
    *,
    scheduler: str | None = None,
    cluster: str | None = None,
    tile: list[int] | None = None,
    overlap: float = 3 / 16,  # inference.windows.DEFAULT_OVERLAP (not imported: api stays light)
    sw_batch_size: int = 1,
    bf16: bool | None = None,
    device: str = "cpu",
    block_voxels: int | None = None,
    progress: bool = True,
    tta: bool = False,
    uncertainty: bool = False,
    pyramid_levels: int | None = None,
) -> dict[str, Any]:
    """Predict one huge image as blocks, or every image of a plate, folder or glob, on a Dask cluster.

    Parameters
    ----------
    bundles : path or list of paths
        Model bundle(s); several make a multi-structure image per position (not for plates or blocks).
    input : path or glob
        One image, an HCS OME-Zarr plate, a folder of images or a quoted glob pattern.
    output : path
        One image: ``.ome.zarr`` (predicted as resumable blocks when the bundle allows it; a time-lapse as
        one resumable task per time point, :mod:`stainfree.execute.frames`, or per block of a time point
        where frames are big or ``block_voxels`` is given, :mod:`stainfree.execute.frame_blocks`) or
        ``.ome.tif``.
        Many: a folder mirroring the input (``<stem>.ome.tif``, ``.ome.zarr`` for Zarr inputs), or for a
        plate an NGFF 0.5 plate ``.ome.zarr`` with the same wells and fields; ``summary.csv`` in it.
    scheduler, cluster : str, optional
        A scheduler address, or ``local:N`` worker processes of one thread each; default in-process.
    tile, overlap, sw_batch_size, bf16, device
        See :class:`stainfree.config.PredictConfig`.
    block_voxels : int, optional
        Largest block of the block engine, with its halo (default that of predict_array).
    progress : bool
        Show progress bars.
    tta, uncertainty : bool
        Test-time augmentation, and the spread of its views as extra channels (one bundle), as in
        :func:`stainfree.api.predict`: every window of every block or position is averaged over its flipped
        and turned views.
    pyramid_levels : int, optional
        Multiscale levels of an image predicted as blocks or frames (OME-Zarr), computed on the cluster
        after level 0 (:mod:`stainfree.execute.pyramid`); None: until the smaller of Y and X is at most 512;
        0: none.

    Returns
    -------
    dict
        ``{"image": path, "blocks": BlockRun}`` for one image (``"frames"`` for a time-lapse);
        ``{"output", "summary", "table"}`` for many.
    """
    from stainfree.errors import InputError
    from stainfree.inference.windows import native_bf16
    from stainfree.workflows.staining import predict_options

    parse_cluster(cluster)
    paths = _bundle_paths(bundles)
    cfg = predict_options(
        len(paths),
        tile=tile,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        bf16=bf16,
        device=device,
        tta=tta,
        uncertainty=uncertainty,
    )
    options: dict[str, Any] = {
        "roi_size": tuple(cfg.tile) if cfg.tile else None,
        "overlap": cfg.overlap,
        "sw_batch_size": cfg.sw_batch_size,
        "bf16": native_bf16(cfg.device) if cfg.bf16 is None else cfg.bf16,  # the same default as predict
        "device": cfg.device,
    }
    # only where asked for: the options are part of a run's settings, which a rerun must match to resume
    if cfg.tta:
        options["tta"] = True
    if cfg.uncertainty:
        options["uncertainty"] = True
    out = Path(output)
    layout, positions = find_positions(input)
    if layout == "file":
        return _predict_one(
            paths, Path(input), out, scheduler, cluster, options, block_voxels, progress, pyramid_levels
        )
    if layout == "plate":
        if len(paths) > 1:
            raise InputError(input, "a plate is predicted with one bundle at a time")
        outputs = {p.key: str(out / p.key) for p in positions}
    else:
        outputs = {
            p.key: str(out / f"{p.key}.ome.{'zarr' if p.source.rstrip('/').endswith('.zarr') else 'tif'}")
            for p in positions
        }
    from stainfree.lock import output_lock

    with output_lock(out):
        if layout == "plate":
            _make_plate(Path(input), out, positions)
    settings = {"bundles": _stamps(paths), "options": options}
    return _run_job(
        positions,
        _predict_position,
        out,
        outputs,
        scheduler,
        cluster,
        settings,
        progress,
        bundles=paths,
        plate=layout == "plate",
        options={**options, "progress": False},
    )


def _predict_one(
    paths: list[str],
    source: Path,
    out: Path,
    scheduler: str | None,
    cluster: str | None,
    options: dict[str, Any],
    block_voxels: int | None,
    progress: bool,
    pyramid_levels: int | None = None,
) -> dict[str, Any]:
    from stainfree.atomic import PARTIAL_SUFFIX
    from stainfree.execute.blocks import predict_blocks
    from stainfree.execute.cluster import cached_bundle, open_client
    from stainfree.inference.predict import streamable
    from stainfree.io.readers import read_image
    from stainfree.lock import output_lock

    blocks = frames = False
    if len(paths) == 1 and out.name.lower().endswith(".zarr"):
        _, meta = read_image(source, lazy=True)
        blocks = streamable(cached_bundle(paths[0]).config, meta)
        frames = "T" in meta.axes  # a time-lapse: one task per time point
    lock = output_lock(out.parent, name=f".{out.name}.stainfree.lock", stale=f".{out.name}.*{PARTIAL_SUFFIX}")
    with lock, open_client(scheduler, cluster) as client:
        if frames:
            from stainfree.execute.frame_blocks import frames_as_blocks, predict_frame_blocks
            from stainfree.execute.frames import predict_frames

            if frames_as_blocks(cached_bundle(paths[0]).config, meta, block_voxels):  # big frames
                run = predict_frame_blocks(
                    client,
                    paths[0],
                    source,
                    out,
                    max_block_voxels=block_voxels,
                    progress=progress,
                    pyramid_levels=pyramid_levels,
                    **options,
                )
                return {"image": run.path, "blocks": run}
            run = predict_frames(
                client,
                paths[0],
                source,
                out,
                options=options,
                progress=progress,
                pyramid_levels=pyramid_levels,
            )
            return {"image": run.path, "frames": run}
        if blocks:
            run = predict_blocks(
                client,
                paths[0],
                source,
                out,
                max_block_voxels=block_voxels,
                progress=progress,
                pyramid_levels=pyramid_levels,
                **options,
            )
            return {"image": run.path, "blocks": run}
        opts = {**options, "progress": False}
        client.submit(
            _predict_position, str(source), str(out), bundles=paths, plate=False, options=opts
        ).result()
    return {"image": out}


def segment_job(
    input: str | Path,
    bundles: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    cluster: str | None = None,
    catalog: str | Path | None = None,
    threshold: float | None = None,
    tta: bool = False,
    alignment: str | tuple[float, float, float] = "auto",
    block_voxels: int | None = None,
    progress: bool = True,
    pyramid_levels: int | None = None,
) -> dict[str, Any]:
    """Segment one huge Nile Red image as blocks, or every image of a plate, folder or glob, on Dask.

    Each position goes to ``<out_dir>/<stem>/`` (``<out_dir>/<row>/<column>/<field>/`` for a plate) with the
    files :func:`stainfree.api.segment` writes; ``summary.csv`` lists every position. One image is segmented
    as blocks (:func:`~stainfree.execute.segment_blocks.segment_blocks`:
    ``<stem>_masks.ome.zarr`` with the label map
    as its NGFF labels, and ``<stem>_alignment.json``, in ``<out_dir>/<stem>/``; masks equal to the
    per-position ones) when ``block_voxels`` is given or it is larger than one block of the predictor
    (``DEFAULT_BLOCK_VOXELS`` per channel), and every bundle allows it (one frame, no resampling); otherwise
    as one position. A time-lapse runs one task per time point
    (:func:`~stainfree.execute.frames.segment_frames`: the outputs of :func:`stainfree.api.segment`, resumable
    per frame). Other parameters as :func:`stainfree.api.segment` and :func:`predict_job` (``pyramid_levels``:
    of the masks and label map segmented as blocks).

    Returns
    -------
    dict
        ``output`` folder, ``summary`` CSV path and the summary ``table``; for one image as blocks
        ``{"output", "masks", "alignment", "blocks"}``; for a time-lapse the paths of
        :func:`stainfree.api.segment` and ``frames``.
    """
    parse_cluster(cluster)
    paths = _bundle_paths(bundles)
    layout, positions = find_positions(input)
    out = Path(out_dir)
    outputs = {p.key: str(out / p.key) for p in positions}
    options: dict[str, Any] = {"catalog": catalog, "tta": tta, "alignment": alignment}
    if threshold is not None:
        options["threshold"] = threshold
    if layout == "file" and _is_time_lapse(Path(input)):  # one task per time point
        from stainfree.execute.cluster import open_client
        from stainfree.execute.frames import segment_frames
        from stainfree.lock import output_lock

        key = positions[0].key
        with output_lock(out), open_client(scheduler, cluster) as client:
            frames = segment_frames(
                client, paths, input, out / key, progress=progress, pyramid_levels=pyramid_levels, **options
            )
        return {"output": out, **frames}
    if layout == "file" and _segment_as_blocks(paths, Path(input), block_voxels):
        from stainfree.execute.cluster import open_client
        from stainfree.execute.segment_blocks import segment_blocks
        from stainfree.lock import output_lock

        key = positions[0].key
        with output_lock(out), open_client(scheduler, cluster) as client:
            result = segment_blocks(
                client,
                paths,
                input,
                out / key,
                name=key,
                max_block_voxels=block_voxels,
                progress=progress,
                pyramid_levels=pyramid_levels,
                **options,
            )
        return {"output": out, **result}
    settings = {"bundles": _stamps(paths), "options": options}
    return _run_job(
        positions,
        _segment_position,
        out,
        outputs,
        scheduler,
        cluster,
        settings,
        progress,
        bundles=paths,
        plate=layout == "plate",
        options=options,
    )


def _is_time_lapse(source: Path) -> bool:
    from stainfree.execute.frames import is_time_lapse

    return is_time_lapse(source)


def _segment_as_blocks(paths: list[str], source: Path, block_voxels: int | None) -> bool:
    """One image is segmented as blocks when asked (``block_voxels``) or when larger than one block of the
    predictor, and every bundle allows it."""
    import numpy as np

    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.segblocks import segmentable_as_blocks
    from stainfree.inference.tiling import DEFAULT_BLOCK_VOXELS
    from stainfree.io.readers import read_image

    _, meta = read_image(source, lazy=True)
    spatial = [s for a, s in zip(meta.axes, meta.shape, strict=True) if a in "ZYX"]
    if block_voxels is None and int(np.prod(spatial)) <= DEFAULT_BLOCK_VOXELS:
        return False
    return all(segmentable_as_blocks(cached_bundle(p).config, meta) for p in paths)


def _masks_source(path: Path) -> Path:
    """A segment output folder stands for its ``*_masks`` image."""
    if path.is_dir() and not path.name.endswith(".zarr"):
        found = sorted(path.glob("*_masks.ome.tif")) + sorted(path.glob("*_masks.ome.zarr"))
        if found:
            return found[0]
    return path


def quantify_job(
    input: str | Path,
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    cluster: str | None = None,
    config: Any = None,
    block_voxels: int | None = None,
    large_object_voxels: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Quantify one huge mask image as blocks, or every mask image of a folder or glob (or every position of a
    :func:`segment_job` output) on a
    Dask cluster: tables and figures of each go to ``<out_dir>/<stem>/``; ``summary.csv`` lists every one.

    Parameters
    ----------
    input : path or glob
        A folder of mask images (``stainfree segment`` outputs, label maps...), a segment job's output folder
        (one subfolder per position), or a quoted glob.
    out_dir : path
        The job's output folder.
    scheduler, cluster : str, optional
        As :func:`predict_job`.
    config : QuantifyConfig or path, optional
        Settings (:func:`stainfree.api.quantify`).
    block_voxels : int, optional
        The largest block. One mask image (a file, or a folder with one position) is quantified as blocks
        (:func:`~stainfree.execute.quantify_blocks.quantify_blocks`: the same tables and figures in
        ``<out_dir>/<stem>/``, resumable) when this is given or it is larger than ``DEFAULT_BLOCK_VOXELS``,
        and the image allows it (one 3D frame; contacts within a distance too).
    large_object_voxels : int, optional
        As blocks: objects whose bounding box holds more voxels are measured block by block in bounded
        memory (surface and sphericity then agree to ~1e-7; see
        :func:`~stainfree.execute.quantify_blocks.quantify_blocks`); default every object on its box.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``output`` folder, ``summary`` CSV path and the summary ``table``; for one image as blocks
        ``{"output", "tables", "blocks"}``; for one time-lapse (its time points as tasks,
        :func:`~stainfree.execute.quantify_frames.quantify_frames`) ``{"output", "tables", "frames"}``.
    """
    from stainfree.config import QuantifyConfig, resolve
    from stainfree.execute.positions import IMAGE_SUFFIXES

    parse_cluster(cluster)
    cfg = resolve(QuantifyConfig, config)

    def accept(p: Path) -> bool:
        if p.name.startswith(".") or p.name == "summary.csv":
            return False
        return _masks_source(p) != p or p.name.lower().endswith(IMAGE_SUFFIXES)

    _, found = find_positions(input, accept=accept)
    positions = [Position(p.key, str(_masks_source(Path(p.source)))) for p in found]
    out = Path(out_dir)
    if len(positions) == 1 and _is_time_lapse(Path(positions[0].source)):  # one task per time point
        from stainfree.execute.quantify_frames import quantify_frames_job

        return quantify_frames_job(positions[0], out, scheduler, cluster, cfg, progress)
    if len(positions) == 1 and _quantify_as_blocks(Path(positions[0].source), cfg, block_voxels):
        return _quantify_blocks_job(
            positions[0], out, scheduler, cluster, cfg, (block_voxels, large_object_voxels), progress
        )
    outputs = {p.key: str(out / p.key) for p in positions}
    settings = {"config": cfg.model_dump(mode="json")}
    return _run_job(
        positions, _quantify_position, out, outputs, scheduler, cluster, settings, progress, config=cfg
    )


def _quantify_as_blocks(source: Path, cfg: Any, block_voxels: int | None) -> bool:
    """One mask image is quantified as blocks when asked (``block_voxels``) or when larger than one block, and
    the image and settings allow it (as :func:`_segment_as_blocks`)."""
    import numpy as np

    from stainfree.execute.quantify_blocks import quantifiable_as_blocks
    from stainfree.inference.tiling import DEFAULT_BLOCK_VOXELS
    from stainfree.io.readers import read_image

    _, meta = read_image(source, lazy=True)
    spatial = [s for a, s in zip(meta.axes, meta.shape, strict=True) if a in "ZYX"]
    if block_voxels is None and int(np.prod(spatial)) <= DEFAULT_BLOCK_VOXELS:
        return False
    return quantifiable_as_blocks(source, cfg) is None


def _quantify_blocks_job(
    position: Position,
    out: Path,
    scheduler: str | None,
    cluster: str | None,
    cfg: Any,
    sizes: tuple[int | None, int | None],
    progress: bool,
) -> dict[str, Any]:
    from stainfree.execute.cluster import open_client
    from stainfree.execute.quantify_blocks import quantify_blocks
    from stainfree.lock import output_lock

    with output_lock(out), open_client(scheduler, cluster) as client:
        result = quantify_blocks(
            client,
            position.source,
            out / position.key,
            config=cfg,
            max_block_voxels=sizes[0],
            large_voxels=sizes[1],
            progress=progress,
        )
    return {**result, "output": out}
