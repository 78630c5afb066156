"""Nile Red: class-specific brightness and emission ratio, in the object list and in the images."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.config import SimulationConfig
from stainfree.simulate import simulate_field
from stainfree.simulate.spectra import NILE_RED, draw_spectra, nilered_density
from stainfree.types import COMPARTMENTS, compartment_id

VESICLES = ("peroxisome", "early_endosome", "late_endosome", "lysosome")


def test_class_table_order():
    ratio = {c: NILE_RED[c][2] for c in COMPARTMENTS}
    bright = {c: NILE_RED[c][0] for c in COMPARTMENTS}
    assert min(ratio, key=ratio.get) == "lipid_droplet"
    assert max(bright, key=bright.get) == "lipid_droplet"
    assert [ratio[c] for c in VESICLES] == sorted(ratio[c] for c in VESICLES)
    assert bright["nucleus"] < 0.02 and bright["mitochondria"] < bright["er"]


def test_drawn_ratios_follow_classes():
    tables = draw_spectra(np.random.default_rng(0), {c: 400 for c in COMPARTMENTS}, ratio_scale=1.0)
    med = {c: np.median(tables[c][1][1:]) for c in ("lipid_droplet", *VESICLES)}
    order = [med[c] for c in ("lipid_droplet", "peroxisome", "early_endosome", "late_endosome", "lysosome")]
    assert order == sorted(order)
    # overlapping brightness between the vesicle classes, distinct ratios
    b = {c: tables[c][0][1:] for c in VESICLES}
    assert abs(np.median(b["early_endosome"]) - np.median(b["lysosome"])) < 0.1
    assert np.median(tables["lipid_droplet"][0][1:]) > 1.5 * max(np.median(v) for v in b.values())
    labels = np.full((1, 2, 2), compartment_id("lipid_droplet"), np.uint8)
    inst = np.array([[[1, 2], [3, 4]]], np.uint32)
    y, r = nilered_density(labels, inst, tables)
    bright, ratio = tables["lipid_droplet"]
    assert np.allclose(y + r, bright[inst], rtol=1e-5)
    assert np.allclose(r / y, ratio[inst], rtol=1e-5)


@pytest.fixture(scope="module")
def sim():
    return simulate_field(SimulationConfig(seed=11, shape=(24, 192, 192), cells_per_field=(2, 2)), 0)


def test_object_list_carries_ratios(sim):
    objs = sim.metadata["objects"]
    classes = ("lipid_droplet", *VESICLES)
    med = {c: np.median([o["nilered_ratio"] for o in objs if o["class"] == c]) for c in classes}
    assert med["lipid_droplet"] == min(med.values())
    assert med["peroxisome"] < med["lysosome"]


def test_image_ratio_and_brightness_per_class(sim):
    off = sim.metadata["noise_model"]["offset_counts"] + sim.metadata["noise_model"]["background_photons"]
    y = sim.nilered_clean[0] - off
    r = sim.nilered_clean[1] - off
    stats = {}
    for cls in ("lipid_droplet", "lysosome", "early_endosome", "cytosol"):
        m = sim.labels == compartment_id(cls)
        stats[cls] = (float(r[m].sum() / y[m].sum()), float((y + r)[m].mean()))
    assert stats["lipid_droplet"][0] < stats["early_endosome"][0] < stats["lysosome"][0]
    assert stats["lipid_droplet"][1] > stats["lysosome"][1] > stats["cytosol"][1]
    nuc = sim.labels == compartment_id("nucleus")
    assert (y + r)[nuc].mean() < 0.3 * (y + r)[sim.labels == compartment_id("er")].mean()


def test_versioned_constants_and_ratio_factor_and_sdsim():
    from stainfree.config import SimulationConfig
    from stainfree.simulate.field import simulate_field
    from stainfree.simulate.optics import MICROSCOPES, psf_sigma_um
    from stainfree.simulate.spectra import NILE_RED, nilered_table

    v2 = nilered_table("v2")
    assert nilered_table("v1") is NILE_RED
    assert v2["mitochondria"][0] > v2["er"][0] and NILE_RED["mitochondria"][0] < NILE_RED["er"][0]
    assert all(v2[c][2:] == NILE_RED[c][2:] for c in NILE_RED)  # v2 changes brightness only
    # sdsim: half the widefield lateral limit (FWHM ~0.12-0.13 um over yellow and red)
    sd = MICROSCOPES["sdsim"]
    fwhm = [
        2.3548 * psf_sigma_um(w, sd["na"], sd["immersion_index"], True, sd["lateral_gain"])[1]
        for w in (0.58, 0.65)
    ]
    assert 0.11 < np.mean(fwhm) < 0.14
    wide = 2.3548 * psf_sigma_um(0.58, sd["na"], sd["immersion_index"], False)[1]
    assert fwhm[0] == pytest.approx(wide / 2)
    # every ratio x 1.3, same geometry; the default (v1, factor 1) stays as it was
    base = SimulationConfig(n_fields=1, shape=(8, 48, 48), cells_per_field=(1, 1), targets=["dna"], seed=3)
    a = simulate_field(base, 0)
    b = simulate_field(base.model_copy(update={"nilered_ratio_factor": 1.3}), 0)
    c = simulate_field(base.model_copy(update={"nilered_model": "v1", "nilered_ratio_factor": 1.0}), 0)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.nilered, c.nilered)
    ra = np.array([o["nilered_ratio"] for o in a.metadata["objects"]])
    rb = np.array([o["nilered_ratio"] for o in b.metadata["objects"]])
    np.testing.assert_allclose(rb, 1.3 * ra, rtol=1e-3, atol=1e-4)
