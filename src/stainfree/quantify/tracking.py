"""Time-lapse: link objects between frames, build tracks, and turn per-frame object contacts into contact
events.

Linking is done per structure between consecutive frames, one-to-one, with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`):

* ``"overlap"``: maximise the intersection over union of the two objects' voxels (pairs with IoU below
  ``min_iou`` are not linked);
* ``"centroid"``: minimise the distance between centroids (um); pairs farther than ``max_distance_um`` are not
  linked;
* ``"id"``: objects with the same instance id are the same object (instance maps with persistent ids, such as
  the simulator's ground truth).

An object not linked to the previous frame starts a new track. A contact event is a maximal run of consecutive
frames in which two tracks are in contact; its duration in seconds is ``duration_frames * frame_interval_s``
(each frame stands for one interval). ``open_start`` / ``open_end`` flag events cut by the start or the end
of the recording (their true duration is longer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stainfree.quantify.maps import ObjectMap

__all__ = [
    "EVENT_COLUMNS",
    "LINK_COLUMNS",
    "assign_tracks",
    "contact_events",
    "frame_overlaps",
    "link_frames",
]

LINK_COLUMNS: tuple[str, ...] = ("frame", "structure", "object_id", "next_object_id", "score")

EVENT_COLUMNS: tuple[str, ...] = (
    "structure_a",
    "track_a",
    "structure_b",
    "track_b",
    "start_frame",
    "end_frame",
    "duration_frames",
    "start_s",
    "end_s",
    "duration_s",
    "open_start",
    "open_end",
)


def frame_overlaps(before: ObjectMap, after: ObjectMap) -> pd.DataFrame:
    """Voxel overlaps between objects of the same structure in two frames.

    Returns
    -------
    DataFrame
        Columns ``structure``, ``object_id`` (in ``before``), ``next_object_id`` (in ``after``),
        ``intersection``, ``iou``, ``voxels_a``, ``voxels_b`` (the two objects' sizes); one row per
        overlapping pair.
    """
    if before.shape != after.shape:
        raise ValueError(f"frames differ in shape: {before.shape} vs {after.shape}")
    if tuple(before.names) != tuple(after.names):
        raise ValueError("frames differ in structure names")
    n1 = after.n_objects + 1
    codes, inter = [], []
    for la in before.layers:
        for lb in after.layers:
            m = (la > 0) & (lb > 0)
            if m.any():
                c, k = np.unique(la[m].astype(np.int64) * n1 + lb[m], return_counts=True)
                codes.append(c)
                inter.append(k)
    cols = ["structure", "object_id", "next_object_id", "intersection", "iou", "voxels_a", "voxels_b"]
    if not codes:
        ints = ("object_id", "next_object_id", "intersection", "voxels_a", "voxels_b")
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols}).astype(
            {"structure": object, **dict.fromkeys(ints, "int64")}
        )
    code = np.concatenate(codes)
    k = np.concatenate(inter)
    ga, gb = code // n1, code % n1
    same = before.structure_of[ga] == after.structure_of[gb]
    ga, gb, k = ga[same], gb[same], k[same]
    ca = sum(
        (np.bincount(layer.ravel(), minlength=before.n_objects + 1) for layer in before.layers),
        np.zeros(before.n_objects + 1, dtype=np.intp),
    )
    cb = sum(
        (np.bincount(layer.ravel(), minlength=after.n_objects + 1) for layer in after.layers),
        np.zeros(after.n_objects + 1, dtype=np.intp),
    )
    iou = k / (ca[ga] + cb[gb] - k)
    return pd.DataFrame(
        {
            "structure": np.array(before.names, dtype=object)[before.structure_of[ga].astype(np.int64)],
            "object_id": before.local_id[ga].astype(np.int64),
            "next_object_id": after.local_id[gb].astype(np.int64),
            "intersection": k.astype(np.int64),
            "iou": iou,
            "voxels_a": ca[ga].astype(np.int64),
            "voxels_b": cb[gb].astype(np.int64),
        }
    )


def link_frames(
    before: pd.DataFrame,
    after: pd.DataFrame,
    *,
    method: str = "overlap",
    overlaps: pd.DataFrame | None = None,
    max_distance_um: float = 2.0,
    min_iou: float = 0.05,
) -> pd.DataFrame:
    """One-to-one links between the objects of two consecutive frames, per structure.

    Parameters
    ----------
    before, after : DataFrame
        Object tables (columns ``frame``, ``structure``, ``object_id``, ``centroid_*_um``) of frames t and
        t+1.
    method : {"overlap", "centroid", "id"}
        Maximum IoU (needs ``overlaps`` from :func:`frame_overlaps`), nearest centroid, or equal instance ids
        (for instance maps whose ids persist over time, like the simulator's ground truth).
    overlaps : DataFrame, optional
        Output of :func:`frame_overlaps` for the two frames (required for ``"overlap"``).
    max_distance_um : float
        Largest centroid distance linked (``"centroid"``).
    min_iou : float
        Smallest IoU linked (``"overlap"``).

    Returns
    -------
    DataFrame
        Columns :data:`LINK_COLUMNS`: ``frame`` is the frame of ``before``; ``score`` is the IoU or the
        distance.
    """
    from scipy.optimize import linear_sum_assignment

    if method not in ("overlap", "centroid", "id"):
        raise ValueError(f"unknown link method {method!r}; use 'overlap', 'centroid' or 'id'")
    frame = int(before["frame"].iloc[0]) if len(before) else 0
    out = []
    for structure, a in before.groupby("structure", sort=False):
        b = after[after["structure"] == structure]
        if b.empty:
            continue
        ia = {oid: i for i, oid in enumerate(a["object_id"].to_numpy())}
        ib = {oid: i for i, oid in enumerate(b["object_id"].to_numpy())}
        if method == "id":
            common = np.intersect1d(a["object_id"].to_numpy(), b["object_id"].to_numpy())
            out.append(
                pd.DataFrame(
                    {
                        "frame": frame,
                        "structure": structure,
                        "object_id": common,
                        "next_object_id": common,
                        "score": 1.0,
                    }
                )
            )
            continue
        if method == "overlap":
            if overlaps is None:
                raise ValueError("method 'overlap' needs the overlaps of the two frames")
            ov = overlaps[(overlaps["structure"] == structure) & (overlaps["iou"] >= min_iou)]
            if ov.empty:
                continue
            score = np.zeros((len(ia), len(ib)))
            rows = ov["object_id"].map(ia).to_numpy()
            cols = ov["next_object_id"].map(ib).to_numpy()
            ok = ~(pd.isna(rows) | pd.isna(cols))
            score[rows[ok].astype(int), cols[ok].astype(int)] = ov["iou"].to_numpy()[ok]
            r, c = linear_sum_assignment(-score)
            good = score[r, c] >= min_iou
        else:
            pa = a[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy()
            pb = b[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy()
            score = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
            cost = np.where(score <= max_distance_um, score, 1e12)
            r, c = linear_sum_assignment(cost)
            good = score[r, c] <= max_distance_um
        r, c = r[good], c[good]
        out.append(
            pd.DataFrame(
                {
                    "frame": frame,
                    "structure": structure,
                    "object_id": a["object_id"].to_numpy()[r],
                    "next_object_id": b["object_id"].to_numpy()[c],
                    "score": score[r, c],
                }
            )
        )
    if not out:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in LINK_COLUMNS}).astype(
            {"frame": "int64", "structure": object, "object_id": "int64", "next_object_id": "int64"}
        )
    return pd.concat(out, ignore_index=True)[list(LINK_COLUMNS)]


def assign_tracks(objects: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Add a ``track_id`` column (1..n over all structures) to an object table of all frames.

    An object linked from the previous frame continues that track; any other object starts a new one.
    """
    objects = objects.sort_values(["frame", "structure", "object_id"], kind="stable").reset_index(drop=True)
    track: dict[tuple[int, str, int], int] = {}
    nxt = {
        (int(f), s, int(o)): int(n)
        for f, s, o, n in links[["frame", "structure", "object_id", "next_object_id"]].itertuples(index=False)
    }
    prev_of = {(f + 1, s, n): (f, s, o) for (f, s, o), n in nxt.items()}
    new_id = 0
    ids = np.zeros(len(objects), dtype=np.int64)
    for i, (f, s, o) in enumerate(objects[["frame", "structure", "object_id"]].itertuples(index=False)):
        key = (int(f), s, int(o))
        parent = prev_of.get(key)
        if parent is not None and parent in track:
            track[key] = track[parent]
        else:
            new_id += 1
            track[key] = new_id
        ids[i] = track[key]
    objects["track_id"] = ids
    return objects


def contact_events(
    object_contacts: pd.DataFrame,
    tracked: pd.DataFrame,
    *,
    frame_interval_s: float = 1.0,
    frames: Sequence[int] | None = None,
    max_gap_frames: int = 0,
    min_frames: int = 1,
) -> pd.DataFrame:
    """Contact events between tracks: maximal runs of consecutive frames in contact.

    Runs separated by at most ``max_gap_frames`` frames without contact are one event (the gap counts in
    its duration); events shorter than ``min_frames`` frames are dropped.

    Parameters
    ----------
    object_contacts : DataFrame
        Object-pair contacts of all frames (columns ``frame``, ``structure_a``, ``object_a``, ``structure_b``,
        ``object_b``), as from :func:`stainfree.quantify.contacts.measure_contacts`.
    tracked : DataFrame
        Objects of all frames with ``track_id`` (from :func:`assign_tracks`).
    frame_interval_s : float
        Time between frames in seconds.
    frames : sequence of int, optional
        All frames of the recording (default: those in ``tracked``), for the open-start / open-end flags.
    max_gap_frames : int
        Longest gap bridged.
    min_frames : int
        Shortest event kept (frames from start to end).

    Returns
    -------
    DataFrame
        Columns :data:`EVENT_COLUMNS`, sorted by start frame.
    """
    empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in EVENT_COLUMNS}).astype(
        {
            "structure_a": object,
            "structure_b": object,
            "start_s": "float64",
            "end_s": "float64",
            "duration_s": "float64",
            "open_start": bool,
            "open_end": bool,
        }
    )
    if object_contacts.empty or tracked.empty:
        return empty
    all_frames = sorted(set(frames) if frames is not None else set(tracked["frame"].tolist()))
    first, last = all_frames[0], all_frames[-1]
    key = tracked.set_index(["frame", "structure", "object_id"])["track_id"]
    oc = object_contacts
    ta = key.reindex(pd.MultiIndex.from_arrays([oc["frame"], oc["structure_a"], oc["object_a"]])).to_numpy()
    tb = key.reindex(pd.MultiIndex.from_arrays([oc["frame"], oc["structure_b"], oc["object_b"]])).to_numpy()
    df = pd.DataFrame(
        {
            "structure_a": oc["structure_a"].to_numpy(),
            "track_a": ta,
            "structure_b": oc["structure_b"].to_numpy(),
            "track_b": tb,
            "frame": oc["frame"].to_numpy(),
        }
    ).dropna()
    if df.empty:
        return empty
    df = df.astype({"track_a": "int64", "track_b": "int64"}).drop_duplicates()
    df = df.sort_values(["structure_a", "track_a", "structure_b", "track_b", "frame"])
    pair_change = (
        (df["track_a"] != df["track_a"].shift())
        | (df["track_b"] != df["track_b"].shift())
        | (df["structure_a"] != df["structure_a"].shift())
        | (df["structure_b"] != df["structure_b"].shift())
    )
    gap = df["frame"] - df["frame"].shift() > 1 + max(0, int(max_gap_frames))
    df["event"] = (pair_change | gap).cumsum()
    g = df.groupby("event", sort=False)
    ev = g.agg(
        structure_a=("structure_a", "first"),
        track_a=("track_a", "first"),
        structure_b=("structure_b", "first"),
        track_b=("track_b", "first"),
        start_frame=("frame", "min"),
        end_frame=("frame", "max"),
    ).reset_index(drop=True)
    ev["duration_frames"] = ev["end_frame"] - ev["start_frame"] + 1
    ev = ev[ev["duration_frames"] >= min_frames]
    if ev.empty:
        return empty
    ev["start_s"] = ev["start_frame"] * float(frame_interval_s)
    ev["end_s"] = (ev["end_frame"] + 1) * float(frame_interval_s)
    ev["duration_s"] = ev["duration_frames"] * float(frame_interval_s)
    ev["open_start"] = ev["start_frame"] == first
    ev["open_end"] = ev["end_frame"] == last
    ev = ev.sort_values(["start_frame", "structure_a", "track_a", "track_b"], kind="stable").reset_index(
        drop=True
    )
    return ev[list(EVENT_COLUMNS)]
