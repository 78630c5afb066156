"""Time-lapse workflows: segment a Nile Red time-lapse frame by frame, then track it (objects, fission and
fusion events, contact events, rates, figures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from stainfree.config import QuantifyConfig

__all__ = ["segment_series_files", "timelapse"]


def segment_series_files(
    nilered_image: str | Path,
    bundles: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    catalog: str | Path | None = None,
    threshold: float | None = None,
    name: str | None = None,
    progress: bool = False,
    tta: bool = False,
    alignment: str | tuple[float, float, float] = "auto",
) -> dict[str, Path]:
    """Segment a Nile Red time-lapse (T, C, Z, Y, X) one frame at a time; memory: one frame.

    Frames are read lazily from the file, segmented (:func:`stainfree.inference.segment_series.segment_frame`)
    and written before the next is read: ``<name>_masks.ome.zarr`` (TCZYX uint8, 15 named channels) and
    ``<name>.ome.zarr`` (TZYX Nile Red intensity, label map as NGFF labels ``labels/compartments``) are filled
    frame by frame, then ``<name>_masks.ome.tif`` (TCZYX) and ``<name>_labels.ome.tif`` (TZYX) are streamed
    from them; ``<name>_overlay.png`` shows frame 0; ``<name>_alignment.json`` lists every frame's red onto
    yellow shift. Called by :func:`stainfree.workflows.organelles.segment` for time-lapses (under its lock).

    Returns
    -------
    dict
        Paths of ``masks``, ``labels``, ``masks_zarr``, ``ngff``, ``overlay`` and ``alignment``.
    """
    from dataclasses import replace

    import numpy as np

    from stainfree.catalog import load_catalog
    from stainfree.data.align import align_for_ratio
    from stainfree.data.preprocess import channel_indices
    from stainfree.errors import InputError
    from stainfree.inference.segment import (
        COMPARTMENT_COLORS,
        find_bundles,
        nilered_channel_names,
        write_overlay,
    )
    from stainfree.inference.segment_series import segment_series
    from stainfree.io.readers import read_image
    from stainfree.io.series import SegmentationSeriesWriter
    from stainfree.io.writers import write_json
    from stainfree.types import COMPARTMENTS, compartment_id

    arr, meta = read_image(nilered_image, intensities=True, lazy=True)
    if meta.axes[0] != "T" or "C" not in meta.axes:
        raise InputError(
            nilered_image, f"expected a time-lapse with channels (T, C, ...), got axes {meta.axes}"
        )
    n_t, n_c = int(arr.shape[0]), int(arr.shape[1])
    if n_c < 2:
        raise InputError(nilered_image, "needs two channels (yellow and red Nile Red emission)")
    spatial = tuple(int(s) for s in arr.shape[2:])
    if len(spatial) == 2:
        spatial = (1, *spatial)
    names = nilered_channel_names(meta.channel_names, n_c)
    frame_meta = replace(meta, channel_names=tuple(names), axes="CZYX", shape=(n_c, *spatial))
    iy, ir = channel_indices(["yellow", "red"], names, n_c, str(nilered_image))
    loaded = find_bundles(bundles if isinstance(bundles, str | Path) else list(bundles))
    priority = load_catalog(catalog or "organelles_v1").label_priority
    stem = name or Path(nilered_image).name.split(".")[0]
    out = Path(out_dir)
    writer = SegmentationSeriesWriter(
        out,
        stem,
        n_t,
        spatial,
        COMPARTMENTS,
        meta.voxel_size_um,
        colors={compartment_id(c): (*COMPARTMENT_COLORS[c], 255) for c in COMPARTMENTS},
        properties={compartment_id(c): c for c in COMPARTMENTS},
    )
    shifts: list[list[float]] = []
    first: dict[str, Any] = {}

    def read(t: int) -> np.ndarray:
        return np.asarray(arr[t], dtype=np.float32).reshape(n_c, *spatial)

    def write(t: int, frame: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> None:
        red, shift = align_for_ratio(frame[iy], frame[ir], alignment)
        intensity = (frame[iy] + red) / 2
        shifts.append([float(v) for v in shift])
        writer.write(t, masks, labels, intensity)
        if t == 0:
            first.update(masks=masks, labels=labels, intensity=intensity)

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        task = bar.add_task("segmenting frames", total=n_t)
    try:
        segment_series(
            loaded,
            read,
            n_t,
            frame_meta,
            write,
            catalog=catalog,
            threshold=threshold,
            tta=tta,
            source=str(nilered_image),
            progress=(lambda done, total: bar.update(task, completed=done)) if bar is not None else None,
        )
        paths = writer.finalize()
    except BaseException as exc:
        writer.abort(exc)
        raise
    finally:
        if bar is not None:
            bar.stop()
    vox = meta.voxel_size_um
    record = {
        "source": str(nilered_image),
        "frames": n_t,
        "red_onto_yellow_shift_px": shifts,
        "red_onto_yellow_shift_um": [
            [None if v is None else s * v for s, v in zip(shift, vox, strict=True)] for shift in shifts
        ],
        "alignment": alignment if isinstance(alignment, str) else list(alignment),
    }
    paths["alignment"] = write_json(out / f"{stem}_alignment.json", record)
    paths["overlay"] = write_overlay(
        out / f"{stem}_overlay.png", first["masks"], first["labels"], first["intensity"], priority
    )
    return paths


def timelapse(
    nilered_image: str | Path,
    bundles: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    config: QuantifyConfig | str | Path | None = None,
    catalog: str | Path | None = None,
    threshold: float | None = None,
    name: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Segment a Nile Red time-lapse and track it: tracks, fission / fusion, contact events, rates, figures.

    Parameters
    ----------
    nilered_image : path
        Time-lapse (T, C, Z, Y, X) with the yellow and red channels.
    bundles : path or list of paths
        The catalog's bundles (a folder or paths).
    out_dir : path
        ``segmentation/`` (the outputs of :func:`segment_series_files`) and ``tracks/`` (the tables of
        :func:`stainfree.workflows.quantify.quantify` with ``track_events``, ``event_rates``,
        ``contact_events``, and the figures ``contacts_over_time.png``, ``contact_events_over_time.png``,
        ``event_rates.png``).
    config : QuantifyConfig or YAML path, optional
        Quantification settings; default: the image's Nile Red intensity and ratio, contact events that bridge
        one-frame gaps and last at least 2 frames.
    catalog, threshold, name, progress : as :func:`stainfree.workflows.organelles.segment`.

    Returns
    -------
    dict
        ``segmentation`` (paths), ``tables`` (name -> DataFrame), ``figures`` (name -> path).
    """
    from stainfree.config import QuantifyConfig, resolve
    from stainfree.workflows.organelles import segment
    from stainfree.workflows.quantify import quantify

    out = Path(out_dir)
    seg = segment(
        nilered_image,
        bundles,
        out / "segmentation",
        catalog=catalog,
        threshold=threshold,
        name=name,
        progress=progress,
    )
    cfg = resolve(QuantifyConfig, config) if config is not None else QuantifyConfig(contact_min_frames=2)
    tables: dict[str, pd.DataFrame] = quantify(
        seg["masks"], out / "tracks", nilered=nilered_image, config=cfg, progress=progress
    )
    figures = {p.name: p for p in sorted((out / "tracks").glob("*.png"))}
    return {"segmentation": seg, "tables": tables, "figures": figures}
