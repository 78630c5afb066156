"""Track events: fission / fusion from overlaps and from laptrack, flicker, contact-event gaps, rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.config import QuantifyConfig
from stainfree.quantify.events import drop_flicker, event_rates
from stainfree.quantify.inputs import load_masks
from stainfree.quantify.run import quantify_source
from stainfree.quantify.tracking import contact_events

VOX = (0.3, 0.1, 0.1)


def rod_series(pattern: str) -> np.ndarray:
    """A mask series (T, 1, Z, Y, X) of a rod: '1' whole, '2' cut in two pieces, per frame."""
    out = np.zeros((len(pattern), 1, 4, 20, 40), np.uint8)
    for t, p in enumerate(pattern):
        out[t, 0, 1:3, 8:12, 5:35] = 1
        if p == "2":
            out[t, 0, :, :, 18:22] = 0
    return out


def tables(pattern: str, method: str = "overlap", **kw):
    src = load_masks(rod_series(pattern), axes="TCZYX", names=["mitochondria"], kind="masks")
    cfg = QuantifyConfig(link_method=method, derive_cells=False, frame_interval_s=2.0, **kw)
    return quantify_source(src, VOX, config=cfg)


@pytest.mark.parametrize("method", ["overlap", "laptrack"])
def test_fission_then_fusion_are_found_with_tracks_and_position(method):
    t = tables("11122211", method)
    ev = t["track_events"]
    assert list(ev["kind"]) == ["fission", "fusion"]
    assert list(ev["frame"]) == [3, 6]
    fis, fus = ev.iloc[0], ev.iloc[1]
    assert fis["n_parents"] == 1 and fis["n_children"] == 2
    assert fus["n_parents"] == 2 and fus["n_children"] == 1
    # the fission is placed at the whole rod's centroid (x = 19.5 voxels = 1.95 um)
    assert fis["x_um"] == pytest.approx(1.95, abs=0.01) and fis["y_um"] == pytest.approx(0.95, abs=0.01)
    assert fis["time_s"] == pytest.approx(6.0)
    # the fusion's parents are the fission's tracks
    assert set(fus["parent_tracks"].split(";")) == set(fis["child_tracks"].split(";"))
    rates = t["event_rates"].set_index("kind")
    assert rates.loc["fission", "events"] == 1
    assert rates.loc["fission", "events_per_min"] == pytest.approx(1 / (8 * 2.0 / 60))


def test_fission_undone_within_two_frames_is_flicker():
    assert tables("1121111")["track_events"].empty  # split for one frame
    assert tables("1122111")["track_events"].empty  # split for two frames
    kept = tables("1122111", flicker_frames=1)["track_events"]
    assert list(kept["kind"]) == ["fission", "fusion"]
    assert list(tables("1122211")["track_events"]["kind"]) == ["fission", "fusion"]  # three frames: real


def test_drop_flicker_needs_shared_tracks():
    ev = pd.DataFrame(
        {
            "kind": ["fission", "fusion"],
            "structure": ["m", "m"],
            "frame": [3, 4],
            "parent_tracks": ["1", "7;8"],
            "child_tracks": ["1;2", "7"],
        }
    )
    assert len(drop_flicker(ev, 2)) == 2  # the fusion joins other tracks
    ev.loc[1, "parent_tracks"] = "1;2"
    assert drop_flicker(ev, 2).empty


def test_contact_events_bridge_gaps_and_drop_short_ones():
    tracked = pd.DataFrame(
        {
            "frame": np.repeat(np.arange(10), 2),
            "structure": ["a", "b"] * 10,
            "object_id": 1,
            "track_id": [1, 2] * 10,
        }
    )
    frames = [1, 2, 4, 5, 8]  # 1-2 and 4-5 with a one-frame gap, then 8 alone
    oc = pd.DataFrame({"frame": frames, "structure_a": "a", "object_a": 1, "structure_b": "b", "object_b": 1})
    plain = contact_events(oc, tracked)
    assert list(zip(plain["start_frame"], plain["end_frame"], strict=True)) == [(1, 2), (4, 5), (8, 8)]
    ev = contact_events(oc, tracked, max_gap_frames=1, min_frames=2)
    assert list(zip(ev["start_frame"], ev["end_frame"], strict=True)) == [(1, 5)]
    assert ev["duration_frames"].iloc[0] == 5


def test_event_rates_per_pair():
    ce = pd.DataFrame({"structure_a": ["a", "a"], "structure_b": ["b", "b"], "duration_s": [4.0, 8.0]})
    objects = pd.DataFrame({"structure": ["a"] * 20 + ["b"] * 10, "frame": list(range(10)) * 3})
    empty = pd.DataFrame(columns=["kind", "structure"])
    r = event_rates(empty, ce, objects, n_frames=10, frame_interval_s=6.0).set_index("kind")
    c = r.loc["contact"]
    assert c["events"] == 2 and c["mean_duration_s"] == pytest.approx(6.0)
    assert c["events_per_min"] == pytest.approx(2.0)  # 10 frames x 6 s = 1 min
    assert c["events_per_100_objects_per_min"] == pytest.approx(100.0)  # 2 'a' objects per frame
