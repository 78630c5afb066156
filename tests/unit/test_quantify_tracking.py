"""Tracking: frame-to-frame links, tracks and contact events of a moving sphere."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.quantify.contacts import measure_contacts
from stainfree.quantify.objects import build_object_map, measure_objects
from stainfree.quantify.tracking import assign_tracks, contact_events, frame_overlaps, link_frames

SHAPE = (12, 24, 48)


def frames(n=8):
    """A lysosome (sphere r=3) moving 3 voxels a frame in x; it touches a fixed box in frames 4, 5 and 6."""
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    box = np.zeros(SHAPE, bool)
    box[3:9, 6:18, 26:30] = True
    out = []
    for t in range(n):
        cx = 10 + 3 * t if t <= 5 else 25 - 3 * (t - 5)  # moves back after frame 5
        sphere = ((zz - 6) ** 2 + (yy - 12) ** 2 + (xx - cx) ** 2) <= 9
        sphere &= ~box
        out.append(build_object_map({"lysosome": sphere, "golgi": box}, min_size=1))
    return out


def run(method: str):
    maps = frames()
    objs = [measure_objects(m, (1, 1, 1), frame=t) for t, m in enumerate(maps)]
    links = []
    for t in range(1, len(maps)):
        ov = frame_overlaps(maps[t - 1], maps[t]) if method == "overlap" else None
        links.append(link_frames(objs[t - 1], objs[t], method=method, overlaps=ov, max_distance_um=7))
    import pandas as pd

    tracked = assign_tracks(pd.concat(objs, ignore_index=True), pd.concat(links, ignore_index=True))
    oc = pd.concat(
        [measure_contacts(m, (1, 1, 1), frame=t)[1] for t, m in enumerate(maps)], ignore_index=True
    )
    return tracked, oc


@pytest.mark.parametrize("method", ["overlap", "centroid"])
def test_moving_sphere_is_one_track_and_contact_event_has_right_span(method):
    tracked, oc = run(method)
    lyso = tracked[tracked["structure"] == "lysosome"]
    assert lyso["track_id"].nunique() == 1 and len(lyso) == 8
    assert tracked[tracked["structure"] == "golgi"]["track_id"].nunique() == 1
    ev = contact_events(oc, tracked, frame_interval_s=2.5, frames=range(8))
    assert len(ev) == 1
    e = ev.iloc[0]
    # sphere edge at cx + 3 touches the box (x >= 26) when cx >= 22: frames 4 (22), 5 (25), 6 (22)
    assert (e["start_frame"], e["end_frame"]) == (4, 6)
    assert e["duration_frames"] == 3
    assert e["duration_s"] == pytest.approx(2.5 * e["duration_frames"])
    assert e["start_s"] == pytest.approx(2.5 * e["start_frame"])
    assert not e["open_start"] and not e["open_end"]
    assert {e["structure_a"], e["structure_b"]} == {"lysosome", "golgi"}


def test_event_frames_are_known():
    _, oc = run("overlap")
    assert sorted(oc["frame"].unique()) == [4, 5, 6]


def test_gap_splits_events_and_open_flags():
    import pandas as pd

    tracked = pd.DataFrame(
        {
            "frame": [0, 0, 1, 1, 2, 2, 3, 3],
            "structure": ["a", "b"] * 4,
            "object_id": [1, 1] * 4,
            "track_id": [1, 2] * 4,
        }
    )
    oc = pd.DataFrame(
        {"frame": [0, 2, 3], "structure_a": "a", "object_a": 1, "structure_b": "b", "object_b": 1}
    )
    ev = contact_events(oc, tracked, frame_interval_s=1.0)
    assert list(zip(ev["start_frame"], ev["end_frame"], strict=True)) == [(0, 0), (2, 3)]
    assert list(ev["open_start"]) == [True, False] and list(ev["open_end"]) == [False, True]


def test_centroid_linking_respects_max_distance():
    maps = frames(2)
    a = measure_objects(maps[0], (1, 1, 1), frame=0)
    b = measure_objects(maps[1], (1, 1, 1), frame=1)
    links = link_frames(a, b, method="centroid", max_distance_um=1.0)
    assert set(links["structure"]) == {"golgi"}  # the lysosome moved 3 um


def test_id_linking_follows_persistent_instance_ids():
    import pandas as pd

    a = pd.DataFrame({"frame": [0, 0], "structure": ["lysosome"] * 2, "object_id": [3, 9]})
    b = pd.DataFrame({"frame": [1, 1], "structure": ["lysosome"] * 2, "object_id": [9, 4]})
    links = link_frames(a, b, method="id")
    assert list(zip(links["object_id"], links["next_object_id"], strict=True)) == [(9, 9)]
    with pytest.raises(ValueError, match="unknown link method"):
        link_frames(a, b, method="nearest")
