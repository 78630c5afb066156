"""Mitotic phases in the simulator: each phase's changes, the truth in field.json, interphase unchanged."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from stainfree.config import SimulationConfig
from stainfree.simulate import simulate_field
from stainfree.types import compartment_id

SHAPE = (16, 128, 128)


def _field(phases, **kw):
    cfg = SimulationConfig(seed=4, shape=SHAPE, cells_per_field=(1, 1), phases=phases, targets=["dna"], **kw)
    return simulate_field(cfg, 0)


@pytest.fixture(scope="module")
def fields():
    return {p: _field([p]) for p in ("interphase", "prophase", "metaphase", "anaphase", "telophase")}


def _count(f, cls):
    return sum(1 for o in f.metadata["objects"] if o["class"] == cls)


def test_without_phases_the_mitosis_module_never_runs(monkeypatch):
    import stainfree.simulate.mitosis as mitosis

    def boom(*a, **k):
        raise AssertionError("apply_phases called without phases")

    monkeypatch.setattr(mitosis, "apply_phases", boom)
    f = _field(None, n_frames=2)
    assert "mitosis" not in f.metadata and "phases" not in f.metadata["parameters"]
    assert all("phase" not in c for c in f.metadata["cells"])


def test_all_interphase_gives_the_same_arrays_as_no_phases(fields):
    plain = _field(None)
    inter = fields["interphase"]
    for name in ("brightfield", "fluorescence", "nilered", "labels", "instances", "cells"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(inter, name))
    assert [c["phase"] for c in inter.metadata["cells"]] == ["interphase"]
    assert inter.metadata["mitosis"]["random_stream"].endswith("(field, 5))")


def test_phase_changes(fields):
    inter, pro, meta, ana, telo = (
        fields[p] for p in ("interphase", "prophase", "metaphase", "anaphase", "telophase")
    )
    nuc, pm = compartment_id("nucleus"), compartment_id("plasma_membrane")
    # prophase: nucleus kept, more nuclear reticulum, Golgi and mitochondria broken up
    assert (pro.labels == nuc).sum() > 0.8 * (inter.labels == nuc).sum()
    assert _count(pro, "nuclear_reticulum") > _count(inter, "nuclear_reticulum")
    assert _count(pro, "mitochondria") > _count(inter, "mitochondria")
    # metaphase / anaphase: no nucleus, chromosomes in the DNA stain, thicker membrane, no filopodia
    for f in (meta, ana):
        assert not np.isin(f.labels, [nuc, compartment_id("nuclear_membrane")]).any()
        assert f.fluorescence_clean[0].max() > 0.8 * inter.fluorescence_clean[0].max()
        assert (f.labels == pm).sum() > 1.6 * (inter.labels == pm).sum()
        assert (f.labels == compartment_id("filopodia")).sum() == 0
        assert _count(f, "golgi") >= 2 * _count(inter, "golgi")
        assert _count(f, "mitochondria") > 1.3 * _count(inter, "mitochondria")
        golgi = [o["volume_um3"] for o in f.metadata["objects"] if o["class"] == "golgi"]
        golgi0 = [o["volume_um3"] for o in inter.metadata["objects"] if o["class"] == "golgi"]
        assert np.mean(golgi) < np.mean(golgi0)
    # anaphase: two chromosome sets
    from scipy import ndimage

    dna = ana.fluorescence_clean[0].max(axis=0)
    assert ndimage.label(dna > 0.5 * dna.max())[1] == 2
    # telophase: two daughters with their own nuclei and the mother recorded
    cells = telo.metadata["cells"]
    assert len(cells) == 2 and {c["phase"] for c in cells} == {"telophase"}
    assert [c.get("mother") for c in cells] == [1, 1]
    assert set(np.unique(telo.cells)) == {0, 1, 2}
    owners = Counter(o["cell"] for o in telo.metadata["objects"] if o["class"] == "nucleus")
    assert owners == {1: 1, 2: 1}
