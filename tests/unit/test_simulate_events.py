"""Simulated time-lapse events: own random stream, known frames, truth found again from the true masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.config import QuantifyConfig, SimulationConfig
from stainfree.evaluate.events import match_events
from stainfree.quantify.inputs import load_masks
from stainfree.quantify.run import quantify_source
from stainfree.simulate import simulate_field
from stainfree.simulate.events import dump_config
from stainfree.types import COMPARTMENTS


def config(**kw) -> SimulationConfig:
    base = dict(
        seed=3,
        shape=(16, 112, 112),
        cells_per_field=(1, 1),
        n_frames=7,
        targets=["dna"],
        diffusion_um2_s=0.005,
    )
    return SimulationConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def field():
    return simulate_field(config(events=(2, 2, 2)), 0)


def test_no_events_leaves_the_field_unchanged():
    plain = simulate_field(config(n_frames=6), 0)
    zero = simulate_field(config(n_frames=6, events=(0, 0, 0)), 0)
    assert np.array_equal(plain.instances, zero.instances)
    assert np.array_equal(plain.nilered, zero.nilered)
    assert "events" not in plain.metadata and "events" not in plain.metadata["parameters"]
    assert "events" not in dump_config(config())


def test_events_are_played_at_their_frames(field):
    ev = pd.DataFrame(field.metadata["events"])
    assert set(ev["kind"]) == {"fission", "fusion", "contact"}
    mito = COMPARTMENTS.index("mitochondria")
    for e in ev[ev["kind"] == "fission"].itertuples():
        new = field.instances[:, mito] == e.instance_b
        seen = new.reshape(len(new), -1).any(axis=1)
        assert not seen[: e.frame].any() and seen[e.frame :].all()  # the second piece appears at the frame
    for e in ev[ev["kind"] == "fusion"].itertuples():
        gone = field.instances[:, mito] == e.instance_b
        seen = gone.reshape(len(gone), -1).any(axis=1)
        assert seen[: e.frame].all() and not seen[e.frame :].any()  # the second piece is absorbed
    assert "4 time-lapse events" in field.metadata["random_streams"]


def test_true_masks_give_the_events_back(field):
    names = ["mitochondria", "lipid_droplet", "lysosome"]
    keep = [COMPARTMENTS.index(c) for c in names]
    src = load_masks(field.instances[:, keep], axes="TCZYX", names=names, kind="instances")
    cfg = QuantifyConfig(derive_cells=False, contact_min_frames=2, frame_interval_s=2.0)
    t = quantify_source(src, field.voxel_size_um, config=cfg)
    truth = pd.DataFrame(field.metadata["events"])
    for kind in ("fission", "fusion"):
        det = t["track_events"][t["track_events"]["kind"] == kind]
        m, nt, nd = match_events(truth[truth["kind"] == kind], det)
        assert m == nt == nd, kind
    ce = t["contact_events"]
    ce = ce[~ce["open_start"] & ~ce["open_end"] & (ce["structure_a"] == "mitochondria")]
    found = {(r.structure_b, r.start_frame, r.end_frame) for r in ce.itertuples()}
    for e in truth[truth["kind"] == "contact"].itertuples():
        assert (e.structure_a, e.frame, e.end_frame) in found
