"""One field (one frame or a time-lapse) -> every quantification table. Arrays in, DataFrames out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from stainfree.errors import InputError
from stainfree.quantify.contacts import contact_matrix, measure_contacts
from stainfree.quantify.events import (
    drop_flicker,
    event_rates,
    laptrack_tracks,
    overlap_events,
    track_events,
)
from stainfree.quantify.inputs import MaskSource
from stainfree.quantify.maps import ObjectMap, derive_cells
from stainfree.quantify.measure import measure_objects
from stainfree.quantify.summaries import cell_structure_volumes, cell_summary, cell_volumes, structure_summary
from stainfree.quantify.tracking import (
    LINK_COLUMNS,
    assign_tracks,
    contact_events,
    frame_overlaps,
    link_frames,
)

__all__ = [
    "TABLES",
    "FrameParts",
    "assemble_frames",
    "assemble_tables",
    "link_pair",
    "measure_frame",
    "quantify_source",
]

#: The tables returned by :func:`quantify_source`, with what they hold.
TABLES: dict[str, str] = {
    "objects": "one row per object and frame: volume, surface, sphericity, centroid, intensity, ratio, ...",
    "structures": "per frame and structure: count, volumes, mean sphericity and ratio, volume fraction",
    "cells": "per frame, cell and structure: count, volumes, volume fraction of the cell",
    "contacts": "per frame and ordered structure pair: contact voxels, volume, area and their shares",
    "contact_matrix": "contact_area_fraction as a matrix: rows (frame, structure_a), columns structure_b",
    "object_contacts": "per frame, every pair of objects in contact with their shared area",
    "timeseries": "structures table with time_s and the total contact area of each structure",
    "links": "frame-to-frame object links (time-lapse only)",
    "contact_events": "contact events between tracks: start, end, duration in frames and seconds",
    "track_events": "fission and fusion events: frame, structure, parent and child tracks, position",
    "event_rates": "fission / fusion per structure and contact events per structure pair: counts, rates",
}


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        yield bar


def _frame(array: np.ndarray | None, t: int, n_frames: int, spatial: tuple[int, ...], name: str) -> Any:
    """Frame t of an auxiliary image given as (spatial), (T, spatial) or (1, spatial)."""
    if array is None:
        return None
    a = np.asarray(array)
    if a.shape == spatial:
        return a
    if a.ndim == len(spatial) + 1 and a.shape[1:] == spatial and a.shape[0] in (1, n_frames):
        return a[t if a.shape[0] > 1 else 0]
    raise InputError(
        name, f"shape {a.shape} does not match the masks' {spatial} (or {n_frames} frames of it)"
    )


def quantify_source(
    source: MaskSource,
    voxel_size_um: Sequence[float],
    *,
    config: Any = None,
    intensity: np.ndarray | None = None,
    ratio: np.ndarray | None = None,
    cells: np.ndarray | None = None,
    progress: bool = False,
    frame_hook: Callable[[int, ObjectMap, np.ndarray | None], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Objects, summaries, contacts and (for several frames) tracks and contact events of one field.

    Parameters
    ----------
    source : MaskSource
        The masks of every frame (:func:`stainfree.quantify.inputs.load_masks`).
    voxel_size_um : sequence of 3 floats
        (z, y, x) voxel size in um.
    config : QuantifyConfig, optional
        Settings (defaults when None).
    intensity, ratio, cells : ndarray, optional
        Per-voxel intensity, emission ratio and cell-id map, shaped like one frame or ``(T, ...)``.
    progress : bool
        Show a rich progress bar.
    frame_hook : callable, optional
        Called as ``frame_hook(t, object_map, cells_t)`` for every frame (e.g. voxel-wise distributions).

    Returns
    -------
    dict of str -> DataFrame
        The tables of :data:`TABLES`.
    """
    from stainfree.config import QuantifyConfig

    cfg = config if config is not None else QuantifyConfig()
    vox = tuple(float(v) for v in voxel_size_um)
    spatial = source.spatial_shape
    n_t = source.n_frames
    structures = cfg.structures
    names = tuple(structures) if structures else source.names

    parts: list[FrameParts] = []
    links, raw_events = [], []
    prev_map = None
    with _progress_bar(progress, 3 * n_t) as bar:
        task = bar.add_task("quantify", total=3 * n_t) if bar is not None else None
        obj_task = bar.add_task("objects", total=None) if bar is not None else None

        def step(desc: str) -> None:
            if bar is not None:
                bar.update(task, advance=1, description=desc)

        def objects_done(n_done: int, total: int) -> None:
            if bar is not None:
                bar.update(obj_task, completed=n_done, total=total)

        for t in range(n_t):
            omap = source.object_map(
                t, connectivity=cfg.connectivity, min_size=cfg.min_size_voxels, structures=structures
            )
            cells_t = _frame(cells, t, n_t, spatial, "cell map")
            if cells_t is None and cfg.derive_cells:
                cells_t = derive_cells(omap)
            step(f"frame {t + 1}/{n_t}: objects")
            if frame_hook is not None:
                frame_hook(t, omap, cells_t)
            parts.append(
                measure_frame(
                    omap,
                    t,
                    vox,
                    cfg,
                    intensity=_frame(intensity, t, n_t, spatial, "intensity image"),
                    ratio=_frame(ratio, t, n_t, spatial, "ratio image"),
                    cells=cells_t,
                    progress=partial(objects_done, total=omap.n_objects) if bar is not None else None,
                    measured=partial(step, f"frame {t + 1}/{n_t}: contacts"),
                )
            )
            if prev_map is not None and cfg.link_method != "laptrack":
                overlaps = frame_overlaps(prev_map, omap) if cfg.link_method == "overlap" else None
                link, raw = link_pair(parts[-2].objects, parts[-1].objects, overlaps, t, cfg)
                links.append(link)
                if raw is not None:
                    raw_events.append(raw)
            prev_map = omap
            step(f"frame {t + 1}/{n_t}: done")

    return assemble_frames(cfg, names, parts, links, raw_events)


@dataclass
class FrameParts:
    """What one frame contributes to the tables (:func:`measure_frame`): small, picklable."""

    objects: pd.DataFrame
    contacts: pd.DataFrame
    object_contacts: pd.DataFrame
    cell_rows: pd.DataFrame | None = None
    cells_volume: float | None = None
    in_cells: pd.Series | None = None


def measure_frame(
    omap: ObjectMap,
    t: int,
    voxel_size_um: Sequence[float],
    cfg: Any,
    *,
    intensity: np.ndarray | None = None,
    ratio: np.ndarray | None = None,
    cells: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    measured: Callable[[], None] | None = None,
) -> FrameParts:
    """Objects, cell rows and contacts of frame ``t`` (the per-frame work of :func:`quantify_source`).

    Parameters
    ----------
    omap : ObjectMap
        The frame's objects.
    t : int
        Frame index (the ``frame`` column).
    voxel_size_um : sequence of 3 floats
        (z, y, x) voxel size in um.
    cfg : QuantifyConfig
        Settings.
    intensity, ratio, cells : ndarray, optional
        The frame's intensity, ratio and cell-id map.
    progress : callable, optional
        Called with the number of objects measured so far.
    measured : callable, optional
        Called once the objects are measured (before cells and contacts).

    Returns
    -------
    FrameParts
    """
    vox = tuple(float(v) for v in voxel_size_um)
    obj = measure_objects(
        omap,
        vox,
        intensity=intensity,
        ratio=ratio,
        cells=cells,
        smoothing_sigma=cfg.surface_smoothing_voxels,
        frame=t,
        progress=progress,
    )
    if measured is not None:
        measured()
    parts = FrameParts(obj, *measure_contacts(omap, vox, distance_um=cfg.contact_distance_um(vox), frame=t))
    if cells is not None:
        cv = cell_volumes(cells, vox)
        sv = cell_structure_volumes(omap, cells, vox)
        parts.cell_rows = cell_summary(obj, cv, structure_volumes=sv, frame=t)
        parts.cells_volume = float(cv.sum())
        parts.in_cells = pd.concat({t: sv.groupby(level="structure").sum()}, names=["frame"])
    return parts


def link_pair(
    before: pd.DataFrame, after: pd.DataFrame, overlaps: pd.DataFrame | None, t: int, cfg: Any
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Links from frame ``t - 1`` to frame ``t`` and (with ``overlaps``) the raw overlap events.

    Parameters
    ----------
    before, after : DataFrame
        Objects of frames ``t - 1`` and ``t``.
    overlaps : DataFrame or None
        :func:`frame_overlaps` of the two frames (``link_method="overlap"``), else None.
    t : int
        The later frame.
    cfg : QuantifyConfig
        Settings.

    Returns
    -------
    links : DataFrame
    raw_events : DataFrame or None
    """
    raw = overlap_events(overlaps, t, min_fraction=cfg.event_min_fraction) if overlaps is not None else None
    link = link_frames(
        before,
        after,
        method=cfg.link_method,
        overlaps=overlaps,
        max_distance_um=cfg.link_max_distance_um,
        min_iou=cfg.link_min_iou,
    )
    return link, raw


def assemble_frames(
    cfg: Any,
    names: Sequence[str],
    parts: Sequence[FrameParts],
    links: list[pd.DataFrame],
    raw_events: list[pd.DataFrame],
) -> dict[str, pd.DataFrame]:
    """:func:`assemble_tables` from every frame's :class:`FrameParts` (in frame order) and the links."""
    cells_volume: dict[int, float] = {}
    for t, p in enumerate(parts):
        if p.cells_volume is not None:
            cells_volume[t] = p.cells_volume
    return assemble_tables(
        cfg,
        names,
        len(parts),
        objects=[p.objects for p in parts],
        cell_rows=[p.cell_rows for p in parts if p.cell_rows is not None],
        cells_volume=cells_volume,
        in_cells=[p.in_cells for p in parts if p.in_cells is not None],
        contacts=[p.contacts for p in parts],
        obj_contacts=[p.object_contacts for p in parts],
        links=links,
        raw_events=raw_events,
    )


def assemble_tables(
    cfg: Any,
    names: Sequence[str],
    n_t: int,
    *,
    objects: list[pd.DataFrame],
    cell_rows: list[pd.DataFrame],
    cells_volume: dict[int, float],
    in_cells: list[pd.Series],
    contacts: list[pd.DataFrame],
    obj_contacts: list[pd.DataFrame],
    links: list[pd.DataFrame],
    raw_events: list[pd.DataFrame],
) -> dict[str, pd.DataFrame]:
    """Every table of :data:`TABLES` from the per-frame parts (objects, cell rows, contacts...): summaries,
    tracks, events and rates. Shared by :func:`quantify_source` and the block engine.

    Parameters
    ----------
    cfg : QuantifyConfig
        Settings.
    names : sequence of str
        Structures quantified.
    n_t : int
        Number of frames.
    objects, cell_rows, contacts, obj_contacts, links, raw_events : list of DataFrame
        Per frame: :func:`measure_objects`, :func:`cell_summary`, :func:`measure_contacts` (both tables),
        frame links and overlap events.
    cells_volume, in_cells
        Per frame: volume of all cells, and volume of each structure inside cells.

    Returns
    -------
    dict of str -> DataFrame
    """
    objects_df = pd.concat(objects, ignore_index=True)
    structures_df = structure_summary(
        objects_df,
        names,
        cells_volume_um3=cells_volume,
        volume_in_cells=pd.concat(in_cells) if in_cells else None,
        frames=range(n_t),
    )
    contacts_df = pd.concat(contacts, ignore_index=True)
    obj_contacts_df = pd.concat(obj_contacts, ignore_index=True)
    cells_df = (
        pd.concat(cell_rows, ignore_index=True)
        if cell_rows
        else cell_summary(objects_df.iloc[:0], pd.Series())
    )
    links_df = (
        pd.concat(links, ignore_index=True)
        if links
        else pd.DataFrame({c: pd.Series(dtype="float64") for c in LINK_COLUMNS}).astype(
            {"frame": "int64", "structure": object, "object_id": "int64", "next_object_id": "int64"}
        )
    )
    if n_t > 1 and cfg.link_method == "laptrack":
        objects_df, laptrack_links, tev = laptrack_tracks(
            objects_df,
            max_distance_um=cfg.link_max_distance_um,
            gap_frames=cfg.link_gap_frames,
            frame_interval_s=cfg.frame_interval_s,
        )
        links_df = laptrack_links.astype(links_df.dtypes.to_dict()) if len(laptrack_links) else links_df
    elif n_t > 1:
        objects_df = assign_tracks(objects_df, links_df)
        raw = pd.concat(raw_events, ignore_index=True) if raw_events else pd.DataFrame()
        tev = track_events(raw, objects_df, cfg.frame_interval_s)
    else:
        objects_df = objects_df.reset_index(drop=True)
        objects_df["track_id"] = np.arange(1, len(objects_df) + 1, dtype=np.int64)
        tev = track_events(pd.DataFrame(), objects_df)
    tev = drop_flicker(tev, cfg.flicker_frames)
    events = contact_events(
        obj_contacts_df if n_t > 1 else obj_contacts_df.iloc[:0],
        objects_df,
        frame_interval_s=cfg.frame_interval_s,
        frames=range(n_t),
        max_gap_frames=cfg.contact_max_gap_frames,
        min_frames=cfg.contact_min_frames,
    )
    rates = event_rates(tev, events, objects_df, n_t, cfg.frame_interval_s)

    other = contacts_df[contacts_df["structure_a"] != contacts_df["structure_b"]]
    contact_total = other.groupby(["frame", "structure_a"])["contact_area_um2"].sum()
    ts = structures_df.copy()
    ts.insert(1, "time_s", ts["frame"] * cfg.frame_interval_s)
    ts["contact_area_um2"] = (
        contact_total.reindex(pd.MultiIndex.from_arrays([ts["frame"], ts["structure"]]))
        .fillna(0.0)
        .to_numpy()
    )
    return {
        "objects": objects_df,
        "structures": structures_df,
        "cells": cells_df,
        "contacts": contacts_df,
        "contact_matrix": contact_matrix(contacts_df),
        "object_contacts": obj_contacts_df,
        "timeseries": ts,
        "links": links_df,
        "contact_events": events,
        "track_events": tev,
        "event_rates": rates,
    }
