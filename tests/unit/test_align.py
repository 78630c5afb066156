"""Channel registration: a known subpixel shift is recovered and undone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stainfree.data.align import align_channels, apply_affine, apply_shift, estimate_affine, estimate_shift
from stainfree.errors import InputError


def _texture(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 2) * 100


def test_recovers_known_3d_shift_within_0_1_px():
    ref = _texture((4, 48, 48))
    true = (0.0, 1.5, -0.75)
    moving = ndimage.shift(ref, [-s for s in true], order=3, mode="nearest")
    s = estimate_shift(ref, moving, voxel_size_um=(0.3, 0.1, 0.1))
    np.testing.assert_allclose(s.shift_px, true, atol=0.1)
    np.testing.assert_allclose(s.shift_um, [0.0, 0.15, -0.075], atol=0.01)
    assert "px" in s.describe() and "um" in s.describe()


def test_align_channels_2d_undoes_the_shift_and_uses_beads():
    ref = _texture((64, 64), seed=1)
    moving = ndimage.shift(ref, (-1.5, 0.75), order=3, mode="nearest")
    aligned, s = align_channels(ref, moving)
    assert s.shift_px[0] == 0.0
    np.testing.assert_allclose(s.shift_px[1:], (1.5, -0.75), atol=0.1)
    inner = (slice(6, -6), slice(6, -6))
    assert np.abs(aligned[inner] - ref[inner]).max() < 0.05 * ref.max()
    # the same shift measured on a separate bead image
    beads = np.zeros((64, 64), np.float32)
    beads[tuple(np.random.default_rng(2).integers(8, 56, (2, 12)))] = 1
    beads = ndimage.gaussian_filter(beads, 1.5)
    beads_mov = ndimage.shift(beads, (-1.5, 0.75), order=3, mode="nearest")
    _, s2 = align_channels(ref, moving, beads=(beads, beads_mov))
    np.testing.assert_allclose(s2.shift_px[1:], (1.5, -0.75), atol=0.1)


def test_apply_shift_2d_ignores_z():
    img = _texture((32, 32))
    np.testing.assert_allclose(apply_shift(img, (5.0, 0.0, 0.0)), img, atol=1e-4)


def test_affine_from_beads():
    rng = np.random.default_rng(3)
    pts = rng.uniform(10, 90, (15, 2))
    ref = np.zeros((100, 100), np.float32)
    for y, x in pts:
        ref[int(y), int(x)] = 1
    ref = ndimage.gaussian_filter(ref, 1.5)
    m_true = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -2.0], [0, 0, 1]])
    moving = ndimage.affine_transform(ref, np.linalg.inv(m_true), order=3)
    m = estimate_affine(ref, moving)
    np.testing.assert_allclose(m[:2, 2], [1.0, -2.0], atol=0.3)
    back = apply_affine(moving, m)
    assert np.corrcoef(back[10:-10, 10:-10].ravel(), ref[10:-10, 10:-10].ravel())[0, 1] > 0.9


def test_shape_mismatch_is_input_error():
    with pytest.raises(InputError):
        estimate_shift(np.zeros((8, 8)), np.zeros((8, 9)))
