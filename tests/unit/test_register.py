"""Registration (stainfree.register) and the conjugate EM / IF simulator: numbers against known transforms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stainfree.register import (
    about_center,
    compose,
    has_content,
    match,
    mean_displacement_error,
    register,
    rescale,
    similarity,
    warp_into,
)
from stainfree.simulate.conjugate import em_tile, simulate_conjugate, training_pair


def _blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    return ((a > 0.02).astype(np.float32) + 0.3 * ndimage.gaussian_filter(rng.normal(size=shape), 1)).astype(
        np.float32
    )


def test_error_of_a_pure_shift_is_the_shift():
    assert mean_displacement_error(similarity(), similarity(translation=(3, 4)), (20, 30)) == pytest.approx(
        5.0
    )


def test_error_of_a_rotation_is_the_mean_radius():
    shape = (41, 41)
    t = about_center(shape, 1.0, 0.0, (20, 20))
    r = about_center(shape, 1.0, 180.0, (20, 20))  # every pixel moves by twice its distance from the centre
    ys, xs = np.mgrid[0:41, 0:41]
    expected = np.mean(2 * np.hypot(xs - 20, ys - 20))
    assert mean_displacement_error(t, r, shape) == pytest.approx(expected, rel=1e-9)


def test_rescale_keeps_pixel_centres():
    x = np.tile(np.arange(64, dtype=np.float32), (64, 1))  # value = column
    out, out_to_in = rescale(x, 0.5)
    assert out.shape == (32, 32)
    # output column j sits at input column 2 j + 0.5
    assert out_to_in(np.array([[5.0, 0.0]]))[0, 0] == pytest.approx(10.5)
    assert np.allclose(out[10, 3:29], 2 * np.arange(3, 29) + 0.5, atol=1e-3)


def test_match_finds_an_integer_shift():
    target = _blobs((300, 320))
    tile = target[111:191, 57:157]
    m = match(tile, target, angles=(0.0,))
    assert m.transform.translation == pytest.approx((57, 111), abs=0.05)
    assert m.score > 0.99


@pytest.mark.parametrize(("angle", "scale"), [(7.0, 1.03), (-9.0, 0.96)])
def test_register_recovers_a_similarity_within_half_a_pixel(angle, scale):
    target = _blobs((400, 420), seed=1)
    truth = about_center((120, 120), scale, angle, (230.4, 181.7))
    rng = np.random.default_rng(3)
    tile = warp_into(target, truth, (120, 120)) + rng.normal(0, 0.1, (120, 120)).astype(np.float32)
    r = register(tile, target)
    assert r.converged, r.reason
    assert mean_displacement_error(truth, r.transform, (120, 120)) < 0.5
    assert r.transform.scale == pytest.approx(scale, abs=0.01)


def test_unrelated_tile_does_not_converge():
    target = _blobs((300, 300), seed=1)
    other = _blobs((100, 100), seed=9)
    assert not register(other, target).converged


def test_content_filter():
    rng = np.random.default_rng(0)
    empty = rng.normal(0, 0.3, (100, 100))
    assert not has_content(empty, maximum=6.0)
    rings = empty.copy()
    rings[40:60, 40:60] = 5.0  # 4% of the pixels above half the maximum
    assert has_content(rings, maximum=6.0)
    assert not has_content(rings, maximum=6.0, fraction=0.05)


def test_conjugate_simulation_is_seeded_and_its_truth_is_exact():
    field = simulate_conjugate(3, size_um=12.8)
    again = simulate_conjugate(3, size_um=12.8)
    assert np.array_equal(field.fluorescence, again.fluorescence)
    assert field.fluorescence.shape == (128, 128) and field.classes.shape == (512, 512)
    tile, truth = em_tile(field, (6.4, 6.4), shape=(100, 100), rotation_deg=8.0, scale_change=0.04)
    assert truth.scale == pytest.approx(0.05 * 1.04 / 0.1)
    # the EM is dark where myelin (MBP) is: anti-correlated with the stain sampled through the truth, much
    # less so 3 IF pixels off
    smooth = ndimage.gaussian_filter(tile, 2).ravel()

    def r(t):
        return np.corrcoef(warp_into(field.mbp, t, tile.shape).ravel(), smooth)[0, 1]

    assert r(truth) < -0.3
    assert r(truth) < r(compose(similarity(translation=(3, 0)), truth)) - 0.1
    em, fl = training_pair(field)
    assert em.shape == fl.shape == (128, 128)
    assert np.corrcoef(ndimage.gaussian_filter(em, 1).ravel(), field.mbp.ravel())[0, 1] < -0.3


def _nucleus(size, seed, aspect=1.0):
    """A textured ellipse of bright chromatin spots on zero: one labelled nucleus."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    spots = ndimage.gaussian_filter(rng.random((size, size)) > 0.97, 1.5).astype(np.float32) * 8
    return np.where(np.hypot(yy * aspect, xx) < size / 2 - 2, spots + 0.1, 0).astype(np.float32)


def _sparse_field(shape, seed, where):
    """A dark field with a few labelled nuclei of different sizes and shapes at ``where`` (top-left row, col,
    size, aspect)."""
    out = np.zeros(shape, np.float32)
    for k, (r, c, size, aspect) in enumerate(where):
        out[r : r + size, c : c + size] += _nucleus(size, seed + k, aspect)
    return out


def test_ncc_refinement_registers_a_sparse_target_despite_a_hallucinated_nucleus():
    """Two labelled nuclei in the tile's footprint; the "prediction" also shows a third nucleus the target
    lacks and is blurred: the correlation-driven refinement places it within a pixel."""
    target = _sparse_field(
        (360, 420), 0, [(60, 80, 60, 1.0), (150, 190, 72, 1.5), (250, 300, 50, 1.2), (40, 330, 66, 0.8)]
    )
    truth = about_center((160, 160), 1.02, 6.0, (195.3, 160.6))
    tile = ndimage.gaussian_filter(warp_into(target, truth, (160, 160), cval=0.0), 1.0)
    tile[110:160, 5:55] += _nucleus(50, 77, 1.3)  # a nucleus the model made up
    r = register(tile, target, refine="ncc", target_content=0.01)
    assert r.converged, r.reason
    assert mean_displacement_error(truth, r.transform, (160, 160)) < 1.0


def test_ncc_refinement_refuses_an_ambiguous_placement():
    """The same nucleus twice in the target: a tile showing only it fits both places equally."""
    one = _nucleus(60, 5)
    target = np.zeros((300, 400), np.float32)
    target[40:100, 50:110] = one
    target[180:240, 260:320] = one
    tile = warp_into(target, about_center((100, 100), 1.0, 0.0, (79.5, 69.5)), (100, 100), cval=0.0)
    r = register(tile, target, refine="ncc")
    assert not r.converged
    assert r.reason.startswith("ambiguous")


def test_target_content_refuses_a_placement_on_empty_target():
    """A faint texture everywhere and one bright region elsewhere: a tile of the texture alone matches
    exactly, but nothing under it reaches half the target's maximum."""
    target = 0.5 * _blobs((300, 300), seed=1)
    target[10:60, 10:60] += 10.0
    truth = about_center((100, 100), 1.0, 0.0, (200.0, 200.0))
    tile = warp_into(target, truth, (100, 100))
    assert register(tile, target).converged
    r = register(tile, target, target_content=0.01)
    assert not r.converged
    assert "target content" in r.reason
