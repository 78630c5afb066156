"""Track events: fission and fusion from frame-to-frame overlaps or from laptrack, flicker removal, rates.

Overlap events (the default, ``link_method: overlap``): between frames t and t+1, object ``a`` *feeds*
object ``b`` of the same structure when they share at least ``min_fraction`` of the smaller one's voxels.
A **fission** at frame t+1 is an object of frame t that feeds two or more objects, each of which it feeds
most; a **fusion** at frame t+1 is an object of frame t+1 fed by two or more objects of frame t, each of which
feeds it most. The one-to-one links (:func:`stainfree.quantify.tracking.link_frames`) carry the parent's track
into one child; the other children start tracks.

laptrack events (``link_method: laptrack``): :class:`laptrack.LapTrack` links centroids frame to frame with
gap closing, and its segment-connecting step finds splits (fission) and merges (fusion); split and merge costs
are set explicitly (laptrack's automatic estimate from the cost percentiles refused every split here).

A fission undone within ``flicker_frames`` frames (a fusion of two of its tracks) is segmentation flicker:
both events are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "RATE_COLUMNS",
    "TRACK_EVENT_COLUMNS",
    "drop_flicker",
    "event_rates",
    "laptrack_tracks",
    "overlap_events",
    "track_events",
]

#: Columns of the ``track_events`` table.
TRACK_EVENT_COLUMNS: tuple[str, ...] = (
    "kind",
    "structure",
    "frame",
    "time_s",
    "parent_tracks",
    "child_tracks",
    "n_parents",
    "n_children",
    "z_um",
    "y_um",
    "x_um",
)

#: Columns of the ``event_rates`` table.
RATE_COLUMNS: tuple[str, ...] = (
    "kind",
    "structure_a",
    "structure_b",
    "events",
    "mean_objects",
    "duration_min",
    "events_per_min",
    "events_per_100_objects_per_min",
    "mean_duration_s",
)

_CENTROID = ["centroid_z_um", "centroid_y_um", "centroid_x_um"]


def overlap_events(overlaps: pd.DataFrame, frame: int, *, min_fraction: float = 0.2) -> pd.DataFrame:
    """Fissions and fusions between two frames from their voxel overlaps.

    Parameters
    ----------
    overlaps : DataFrame
        :func:`stainfree.quantify.tracking.frame_overlaps` of frames ``frame - 1`` and ``frame`` (columns
        ``structure``, ``object_id``, ``next_object_id``, ``intersection``, ``voxels_a``, ``voxels_b``).
    frame : int
        The later frame (where the event is first seen).
    min_fraction : float
        Smallest shared fraction of the smaller object for ``a`` to feed ``b``.

    Returns
    -------
    DataFrame
        Columns ``kind`` (fission / fusion), ``structure``, ``frame``, ``parents`` and ``children`` (tuples of
        object ids in frames ``frame - 1`` and ``frame``).
    """
    rows: list[dict] = []
    if not overlaps.empty:
        ov = overlaps[
            overlaps["intersection"] >= min_fraction * np.minimum(overlaps["voxels_a"], overlaps["voxels_b"])
        ]
        for structure, g in ov.groupby("structure", sort=False):
            best_parent = g.loc[g.groupby("next_object_id")["intersection"].idxmax()]
            best_child = g.loc[g.groupby("object_id")["intersection"].idxmax()]
            main_parent = dict(zip(best_parent["next_object_id"], best_parent["object_id"], strict=True))
            main_child = dict(zip(best_child["object_id"], best_child["next_object_id"], strict=True))
            for a, kids in g.groupby("object_id")["next_object_id"]:
                mine = sorted(int(b) for b in kids if main_parent.get(b) == a)
                if len(mine) >= 2:
                    rows.append(_raw("fission", structure, frame, (int(a),), tuple(mine)))  # type: ignore[arg-type]
            for b, parents in g.groupby("next_object_id")["object_id"]:
                mine = sorted(int(a) for a in parents if main_child.get(a) == b)
                if len(mine) >= 2:
                    rows.append(_raw("fusion", structure, frame, tuple(mine), (int(b),)))  # type: ignore[arg-type]
    return pd.DataFrame(rows, columns=["kind", "structure", "frame", "parents", "children"])


def _raw(kind: str, structure: object, frame: int, parents: tuple, children: tuple) -> dict:
    return {"kind": kind, "structure": structure, "frame": frame, "parents": parents, "children": children}


def track_events(raw: pd.DataFrame, tracked: pd.DataFrame, frame_interval_s: float = 1.0) -> pd.DataFrame:
    """Events with track ids and position: the parent's centroid (fission) or the merged object's (fusion).

    Parameters
    ----------
    raw : DataFrame
        From :func:`overlap_events` (object ids).
    tracked : DataFrame
        Objects of all frames with ``track_id`` and centroids.
    frame_interval_s : float
        Seconds between frames.

    Returns
    -------
    DataFrame
        Columns :data:`TRACK_EVENT_COLUMNS`, sorted by frame.
    """
    if raw.empty:
        return _empty_events()
    idx = tracked.set_index(["frame", "structure", "object_id"])
    rows = []
    for kind, structure, frame, parents, children in raw[
        ["kind", "structure", "frame", "parents", "children"]
    ].itertuples(index=False):
        pt = [int(idx.loc[(frame - 1, structure, p), "track_id"]) for p in parents]
        ct = [int(idx.loc[(frame, structure, c), "track_id"]) for c in children]
        at = (frame - 1, structure, parents[0]) if kind == "fission" else (frame, structure, children[0])
        pos = idx.loc[at, _CENTROID].to_numpy(float)
        rows.append(_event_row(kind, structure, frame, frame_interval_s, pt, ct, pos))
    return _sorted(pd.DataFrame(rows, columns=list(TRACK_EVENT_COLUMNS)))


def _event_row(
    kind: str, structure: object, frame: int, dt: float, pt: Sequence[int], ct: Sequence[int], pos: np.ndarray
) -> dict:
    return {
        "kind": kind,
        "structure": structure,
        "frame": int(frame),
        "time_s": float(frame) * dt,
        "parent_tracks": ";".join(str(t) for t in sorted(pt)),
        "child_tracks": ";".join(str(t) for t in sorted(ct)),
        "n_parents": len(pt),
        "n_children": len(ct),
        "z_um": float(pos[0]),
        "y_um": float(pos[1]),
        "x_um": float(pos[2]),
    }


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["frame", "structure", "kind", "parent_tracks"], kind="stable").reset_index(
        drop=True
    )


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in TRACK_EVENT_COLUMNS}).astype(
        {
            "kind": object,
            "structure": object,
            "frame": "int64",
            "parent_tracks": object,
            "child_tracks": object,
            "n_parents": "int64",
            "n_children": "int64",
        }
    )


def drop_flicker(events: pd.DataFrame, flicker_frames: int = 2) -> pd.DataFrame:
    """Drop fissions undone within ``flicker_frames`` frames, with the fusions that undo them.

    A fission at frame f is undone by a fusion of the same structure at frame f < g <= f + flicker_frames
    whose parent tracks include two of the fission's tracks (parent and children).
    """
    if events.empty or flicker_frames <= 0:
        return events
    drop: set[int] = set()
    fis = events[events["kind"] == "fission"]
    fus = events[events["kind"] == "fusion"]
    for i, f in fis.iterrows():
        tracks = set(f["parent_tracks"].split(";")) | set(f["child_tracks"].split(";"))
        later = fus[
            (fus["structure"] == f["structure"])
            & (fus["frame"] > f["frame"])
            & (fus["frame"] <= f["frame"] + flicker_frames)
        ]
        for j, g in later.iterrows():
            if j not in drop and len(tracks & set(g["parent_tracks"].split(";"))) >= 2:
                drop |= {int(i), int(j)}  # type: ignore[call-overload]
                break
    return events.drop(index=sorted(drop)).reset_index(drop=True)


def laptrack_tracks(
    objects: pd.DataFrame,
    *,
    max_distance_um: float = 2.0,
    gap_frames: int = 2,
    split_merge: bool = True,
    frame_interval_s: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tracks, links and split / merge events of every structure with :class:`laptrack.LapTrack`.

    Parameters
    ----------
    objects : DataFrame
        Objects of all frames (``frame``, ``structure``, ``object_id``, centroids in um).
    max_distance_um : float
        Largest displacement linked between frames, across a gap, and between a parent and a child.
    gap_frames : int
        Frames a track may skip (gap closing).
    split_merge : bool
        Detect splits (fission) and merges (fusion).
    frame_interval_s : float
        Seconds between frames (event times).

    Returns
    -------
    tracked : DataFrame
        ``objects`` with ``track_id`` (1..n over all structures).
    links : DataFrame
        Columns ``frame``, ``structure``, ``object_id``, ``next_object_id``, ``score`` (distance, um); a
        gap-closing link joins frame ``frame`` to a later one.
    events : DataFrame
        Columns :data:`TRACK_EVENT_COLUMNS`.
    """
    from laptrack import LapTrack

    cut = float(max_distance_um) ** 2
    # explicit costs: a child starting its own track costs as much as a split over the largest distance,
    # so any split within the cutoff wins; laptrack's default (a percentile of all costs) refused every split
    lt = LapTrack(
        cutoff=cut,
        gap_closing_cutoff=cut if gap_frames > 0 else False,
        gap_closing_max_frame_count=max(1, gap_frames),
        splitting_cutoff=cut if split_merge else False,
        merging_cutoff=cut if split_merge else False,
        track_start_cost=cut,
        track_end_cost=cut,
        segment_start_cost=cut,
        segment_end_cost=cut,
        no_splitting_cost=cut,
        no_merging_cost=cut,
    )
    objects = objects.sort_values(["frame", "structure", "object_id"], kind="stable").reset_index(drop=True)
    tracked_parts, link_parts, event_rows = [], [], []
    offset = 0
    for structure, g in objects.groupby("structure", sort=False):
        g = g.reset_index(drop=True)
        if g["frame"].nunique() < 2:
            t = g.assign(track_id=np.arange(offset + 1, offset + len(g) + 1, dtype=np.int64))
            offset += len(g)
            tracked_parts.append(t)
            continue
        df = g[["frame", *_CENTROID]].copy()
        track_df, split_df, merge_df = lt.predict_dataframe(df, _CENTROID, only_coordinate_cols=False)
        track_df = track_df.reset_index()
        ids = track_df.sort_values("index")["track_id"].to_numpy().astype(np.int64)
        t = g.assign(track_id=ids + offset + 1)
        tracked_parts.append(t)
        # links: consecutive members of a track
        s = t.sort_values(["track_id", "frame"])
        same = s["track_id"].to_numpy()[1:] == s["track_id"].to_numpy()[:-1]
        a, b = s.iloc[:-1][same], s.iloc[1:][same]
        d = np.sqrt(((a[_CENTROID].to_numpy() - b[_CENTROID].to_numpy()) ** 2).sum(1))
        link_parts.append(
            pd.DataFrame(
                {
                    "frame": a["frame"].to_numpy(),
                    "structure": structure,
                    "object_id": a["object_id"].to_numpy(),
                    "next_object_id": b["object_id"].to_numpy(),
                    "score": d,
                }
            )
        )
        first = t.sort_values("frame").groupby("track_id").first()
        last = t.sort_values("frame").groupby("track_id").last()
        for kind, table, one, many in (
            ("fission", split_df, "parent_track_id", "child_track_id"),
            ("fusion", merge_df, "child_track_id", "parent_track_id"),
        ):
            if table is None or table.empty:
                continue
            for key, grp in table.groupby(one):
                single = int(key) + offset + 1  # type: ignore[arg-type]
                several = [int(v) + offset + 1 for v in grp[many]]
                if kind == "fission":
                    frame = int(first.loc[several, "frame"].min())
                    pos = last.loc[single, _CENTROID].to_numpy(float)
                    pt, ct = [single], several
                else:
                    frame = int(first.loc[single, "frame"])  # type: ignore[arg-type]
                    pos = first.loc[single, _CENTROID].to_numpy(float)
                    pt, ct = several, [single]
                event_rows.append(_event_row(kind, structure, frame, frame_interval_s, pt, ct, pos))
        offset = int(t["track_id"].max())
    tracked = pd.concat(tracked_parts, ignore_index=True) if tracked_parts else objects.assign(track_id=0)
    links = (
        pd.concat(link_parts, ignore_index=True)
        if link_parts
        else pd.DataFrame(columns=["frame", "structure", "object_id", "next_object_id", "score"])
    )
    events = (
        _sorted(pd.DataFrame(event_rows, columns=list(TRACK_EVENT_COLUMNS)))
        if event_rows
        else _empty_events()
    )
    return tracked, links, events


def event_rates(
    events: pd.DataFrame,
    contact_events: pd.DataFrame,
    objects: pd.DataFrame,
    n_frames: int,
    frame_interval_s: float = 1.0,
) -> pd.DataFrame:
    """Event counts and rates per structure (fission, fusion) and per structure pair (contact).

    Rates are per minute of recording (``n_frames * frame_interval_s``) and per 100 objects of the
    (first) structure present on average per frame.

    Returns
    -------
    DataFrame
        Columns :data:`RATE_COLUMNS`; ``structure_b`` is empty for fission and fusion.
    """
    minutes = n_frames * float(frame_interval_s) / 60.0
    per_frame = objects.groupby("structure").size() / max(n_frames, 1)
    rows = []
    for kind in ("fission", "fusion"):
        sub = events[events["kind"] == kind] if not events.empty else events
        for structure in sorted(per_frame.index):
            k = int((sub["structure"] == structure).sum()) if not sub.empty else 0
            rows.append(_rate(kind, structure, "", k, float(per_frame[structure]), minutes, float("nan")))
    if not contact_events.empty:
        for (sa, sb), g in contact_events.groupby(["structure_a", "structure_b"]):
            mean_obj = float(per_frame.get(sa, 0.0))
            duration = float(g["duration_s"].mean())
            rows.append(_rate("contact", str(sa), str(sb), len(g), mean_obj, minutes, duration))
    return pd.DataFrame(rows, columns=list(RATE_COLUMNS))


def _rate(kind: str, sa: str, sb: str, k: int, mean_obj: float, minutes: float, duration: float) -> dict:
    per_min = k / minutes if minutes > 0 else float("nan")
    return {
        "kind": kind,
        "structure_a": sa,
        "structure_b": sb,
        "events": k,
        "mean_objects": mean_obj,
        "duration_min": minutes,
        "events_per_min": per_min,
        "events_per_100_objects_per_min": 100 * per_min / mean_obj if mean_obj > 0 else float("nan"),
        "mean_duration_s": duration,
    }
