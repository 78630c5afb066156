"""Renderers: C_max vs r(noisy, clean), bright-field through focus, PSFs, microscopes, chromatic shift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stainfree.config import SimulationConfig
from stainfree.simulate import simulate_field
from stainfree.simulate.optics import MICROSCOPES, blur, c_max, camera, pearson, psf_sigma_um
from stainfree.types import compartment_id

SMALL = {"shape": (16, 96, 96), "voxel_size_um": (0.35, 0.2, 0.2), "cells_per_field": (1, 1)}


@pytest.fixture(scope="module")
def sim():
    return simulate_field(SimulationConfig(seed=2, gfp_structure="mitochondria", **SMALL), 0)


def test_cmax_matches_pearson_of_noisy_and_clean(sim):
    meta = sim.metadata
    for i, name in enumerate(sim.target_names):
        r = pearson(sim.fluorescence[i], sim.fluorescence_clean[i])
        assert abs(r - meta["fluorescence"]["targets"][name]["c_max"]) < 0.01, name
    for i, name in enumerate(sim.nilered_names):
        r = pearson(sim.nilered[i], sim.nilered_clean[i])
        assert abs(r - meta["nilered"]["c_max"][name]) < 0.01, name
    r = pearson(sim.brightfield, sim.brightfield_clean)
    assert abs(r - meta["brightfield"]["c_max"]) < 0.01


def test_photon_level_sets_cmax():
    lo = simulate_field(SimulationConfig(seed=2, photons={"dna": 5.0}, targets=["dna"], **SMALL), 0)
    hi = simulate_field(SimulationConfig(seed=2, photons={"dna": 500.0}, targets=["dna"], **SMALL), 0)
    c_lo = lo.metadata["fluorescence"]["targets"]["dna"]["c_max"]
    c_hi = hi.metadata["fluorescence"]["targets"]["dna"]["c_max"]
    assert c_lo < 0.9 < c_hi
    assert np.array_equal(lo.labels, hi.labels), "noise settings leave the geometry alone"


def test_camera_statistics():
    rng = np.random.default_rng(0)
    photons = np.full(200_000, 50.0)
    noisy, clean = camera(photons, rng, read_noise=2.0, offset=100.0)
    assert noisy.dtype == np.uint16 and clean.dtype == np.float32
    assert abs(noisy.mean() - 150.0) < 0.1
    assert abs(noisy.var() - (50.0 + 4.0 + 1 / 12)) < 1.5
    assert c_max(noisy, clean) == 1.0 or c_max(noisy, clean) < 0.05  # constant clean: no signal


def test_brightfield_changes_through_focus_and_follows_structure(sim):
    bf = sim.brightfield_clean.astype(np.float64)
    bg = np.median(bf)
    contrast = np.abs(bf - bg) / bg
    cells2d = (sim.cells > 0).any(axis=0)
    inside = ndimage.binary_dilation(cells2d, iterations=2)
    far = ~ndimage.binary_dilation(cells2d, iterations=15)
    assert far.any()
    z_mid = int(np.median(np.nonzero(sim.labels == compartment_id("nucleus"))[0]))
    for z in (z_mid - 3, z_mid, z_mid + 3):
        assert contrast[z][inside].mean() > 5 * contrast[z][far].mean()
    # planes differ (contrast changes through focus)
    assert pearson(bf[z_mid - 4], bf[z_mid + 4]) < 0.9
    # the nucleus shows in the in-focus planes of the cell interior
    interior = ndimage.binary_erosion(cells2d, iterations=4)
    nuc_ids = (compartment_id("nucleus"), compartment_id("nuclear_membrane"))
    rs = [
        pearson(ndimage.gaussian_filter(bf[z], 1.0)[interior], np.isin(sim.labels[z], nuc_ids)[interior])
        for z in range(z_mid - 2, z_mid + 3)
    ]
    assert np.mean(np.abs(rs)) > 0.2


def test_psf_widths_and_microscopes_differ():
    sd, wf = MICROSCOPES["spinning_disk"], MICROSCOPES["widefield"]
    s_sd = psf_sigma_um(0.52, sd["na"], sd["immersion_index"], sd["confocal"])
    s_wf = psf_sigma_um(0.52, wf["na"], wf["immersion_index"], wf["confocal"])
    assert (s_wf > s_sd).all()
    assert sd["voxel_size_um"] != wf["voxel_size_um"]
    assert sd["nilered_ratio_scale"] != wf["nilered_ratio_scale"]
    # the blur really has the stated width
    vol = np.zeros((33, 65, 65), np.float32)
    vol[16, 32, 32] = 1.0
    out = blur(vol, s_sd, (0.1, 0.05, 0.05))
    prof = out[16, 32]
    x = (np.arange(65) - 32) * 0.05
    sigma = np.sqrt((prof * x**2).sum() / prof.sum())
    assert abs(sigma - s_sd[1]) / s_sd[1] < 0.05


def test_microscope_profiles_change_the_images():
    a = simulate_field(SimulationConfig(seed=4, shape=(16, 80, 80), microscope="spinning_disk"), 0)
    b = simulate_field(SimulationConfig(seed=4, shape=(16, 80, 80), microscope="widefield"), 0)
    assert a.voxel_size_um != b.voxel_size_um
    ra = a.metadata["nilered"]["classes"]["lipid_droplet"]["ratio_median"]
    rb = b.metadata["nilered"]["classes"]["lipid_droplet"]["ratio_median"]
    assert rb / ra == pytest.approx(MICROSCOPES["widefield"]["nilered_ratio_scale"])
    sa = a.metadata["fluorescence"]["targets"]["dna"]["psf_sigma_um"]
    sb = b.metadata["fluorescence"]["targets"]["dna"]["psf_sigma_um"]
    assert sb[1] > sa[1] and sb[0] > sa[0]


def test_chromatic_shift_is_measurable(sim):
    from skimage.registration import phase_cross_correlation

    yellow, red = sim.nilered_clean[0], sim.nilered_clean[1]
    shift, _, _ = phase_cross_correlation(yellow, red, upsample_factor=20, normalization=None)
    recorded = np.array(sim.metadata["nilered"]["chromatic_shift_voxels"])
    # skimage returns the shift that registers red onto yellow: minus the displacement
    assert np.allclose(-shift[1:], recorded[1:], atol=0.2)
    assert np.linalg.norm(recorded[1:]) > 0.2


def test_gfp_bleed_through_is_five_percent_of_yellow(sim):
    meta = sim.metadata["nilered"]
    assert meta["gfp"]["bleed_through"] == 0.05
    off, bg = sim.metadata["noise_model"]["offset_counts"], sim.metadata["noise_model"]["background_photons"]
    yellow = sim.nilered_clean[0].astype(np.float64) - off - bg
    gfp = sim.nilered_clean[2].astype(np.float64) - off - bg - sim.components["gfp_own"]
    assert np.allclose(gfp, 0.05 * yellow, atol=1e-3)
    assert pearson(sim.nilered_clean[2], sim.components["gfp_own"]) > 0.9


def test_the_ratio_pipeline_recovers_and_undoes_the_simulated_chromatic_shift(sim):
    from stainfree.config import DataConfig
    from stainfree.data.align import align_for_ratio
    from stainfree.data.preprocess import prepare_input_with_stats
    from stainfree.types import ImageMeta

    yellow, red = sim.nilered[0].astype(np.float32), sim.nilered[1].astype(np.float32)
    recorded = np.array(sim.metadata["nilered"]["chromatic_shift_voxels"])
    aligned, shift = align_for_ratio(yellow, red, "auto")
    assert np.allclose(-np.array(shift)[1:], recorded[1:], atol=0.25)  # from the noisy image
    assert pearson(yellow, aligned) > pearson(yellow, red)
    _, none = align_for_ratio(yellow, red, "none")
    assert none == (0.0, 0.0, 0.0)
    # the ratiometric input of a network: the same as aligning by hand, and not the unaligned one
    czyx = np.stack([yellow, red])
    meta = ImageMeta(axes="CZYX", shape=czyx.shape, dtype="float32", channel_names=("yellow", "red"))
    base = {"signal_channels": ["yellow", "red"], "input_transform": "ratiometric", "voxel_size_um": None}
    x_auto, _ = prepare_input_with_stats(czyx, DataConfig(channel_alignment="auto", **base), meta)
    x_by_hand, _ = prepare_input_with_stats(
        np.stack([yellow, aligned]), DataConfig(channel_alignment="none", **base), meta
    )
    x_none, _ = prepare_input_with_stats(czyx, DataConfig(**base), meta)
    assert np.allclose(x_auto, x_by_hand, atol=1e-5) and not np.allclose(x_auto[1], x_none[1], atol=1e-3)
    # a known shift (e.g. from beads) is applied as given
    _, given = align_for_ratio(yellow, red, (0.0, 0.5, -0.25))
    assert given == (0.0, 0.5, -0.25)
