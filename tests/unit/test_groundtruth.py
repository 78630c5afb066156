"""Ground truth from colocalization images: bleed-through, LD zeroing, threshold masks, make_masks files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stainfree.data.groundtruth import (
    lipid_droplet_mask,
    make_masks,
    split_colocalization,
    subtract_bleedthrough,
    threshold_mask,
    zero_inside,
)
from stainfree.errors import InputError


def test_bleedthrough_subtraction_numbers():
    g = np.array([10.0, 10.0, 1.0, 0.0])
    y = np.array([0.0, 100.0, 100.0, 50.0])
    np.testing.assert_allclose(subtract_bleedthrough(g, y), [10.0, 5.0, 0.0, 0.0])
    np.testing.assert_allclose(subtract_bleedthrough(g, y, r=0.1), [10.0, 0.0, 0.0, 0.0])
    assert subtract_bleedthrough(g, y).min() >= 0


def test_bleedthrough_rejects_bad_input():
    with pytest.raises(InputError):
        subtract_bleedthrough(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError):
        subtract_bleedthrough(np.zeros(3), np.zeros(3), r=-1)


def test_zero_inside_ld_mask_leaves_input_untouched():
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    mask = np.array([[1, 0, 0], [0, 0, 1]])
    out = zero_inside(img, mask)
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 0]])
    assert img[0, 0] == 0 and img[1, 2] == 5  # the input is a copy


def _spots(shape=(96, 96), seed=0):
    rng = np.random.default_rng(seed)
    centres = [(15, 15), (30, 70), (60, 25), (80, 80), (50, 50)]
    img = np.zeros(shape, np.float32)
    for y, x in centres:
        img[y, x] = 1
    img = ndimage.gaussian_filter(img, 2.0)
    img = img / img.max() * 100 + rng.normal(10, 1.0, shape).astype(np.float32)
    truth = np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for y, x in centres:
        truth |= (yy - y) ** 2 + (xx - x) ** 2 <= 9
    return img, truth, centres


@pytest.mark.parametrize("method", ["local", "otsu"])
def test_threshold_mask_finds_each_spot(method):
    img, truth, centres = _spots()
    mask = threshold_mask(img, method=method)
    labels, n = ndimage.label(mask)
    assert n == len(centres)
    assert all(mask[y, x] == 1 for y, x in centres)
    f1 = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert f1 > 0.7
    assert mask.dtype == np.uint8


def test_threshold_mask_3d_and_flat_image():
    img, _, centres = _spots()
    stack = np.stack([img, img, img])
    mask = threshold_mask(stack)
    assert mask.shape == stack.shape and ndimage.label(mask)[1] == len(centres)
    assert threshold_mask(np.full((16, 16), 3.0)).sum() == 0


def test_split_colocalization_by_name_and_count():
    a = np.arange(3 * 2 * 2 * 2).reshape(3, 2, 2, 2)
    g, y = split_colocalization(a, ("red", "gfp", "yellow"))
    np.testing.assert_array_equal(g, a[1])
    np.testing.assert_array_equal(y, a[2])
    g, y = split_colocalization(a, ("ch0", "ch1", "ch2"))
    np.testing.assert_array_equal(g, a[2])
    g, y = split_colocalization(a[:1], ("ch0",))
    assert y is None


def test_make_masks_writes_one_mask_per_image_with_ld_zeroing(tmp_path):
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    img, truth, centres = _spots()
    yellow = np.full(img.shape, 40.0, np.float32)
    yellow[80, 80] = 4000.0  # a bright droplet leaking into GFP at one spot
    gfp = img + 0.05 * yellow
    stack = np.stack([yellow, yellow, gfp])[:, None]  # (C, Z=1, Y, X)
    inp = tmp_path / "in"
    write_ome_tiff(inp / "cell1.ome.tif", stack, "CZYX", channel_names=["yellow", "red", "gfp"])
    ld = np.zeros(img.shape, np.uint8)
    ld[70:90, 70:90] = 1
    write_ome_tiff(tmp_path / "ld.ome.tif", ld, "YX")
    paths = make_masks(inp, tmp_path / "out", ld_mask=tmp_path / "ld.ome.tif")
    assert [p.name for p in paths] == ["cell1_mask.ome.tif"]
    mask, meta = read_image(paths[0])
    assert mask.dtype == np.uint8
    assert mask[70:90, 70:90].sum() == 0  # zeroed inside the LD mask
    assert ndimage.label(mask)[1] == len(centres) - 1
    with pytest.raises(InputError, match="fgnet"):
        make_masks(inp, tmp_path / "out2", method="fgnet")
    # The data layer takes a predictor, not a bundle path (the workflow loads the bundle).
    with pytest.raises(TypeError, match="fgnet_predictor"):
        make_masks(inp, tmp_path / "out3", method="fgnet", fgnet=tmp_path / "bundle")


def test_lipid_droplet_mask_from_a_mask_a_probability_map_or_a_segment_output():
    ld = np.zeros((1, 2, 8, 8), np.uint8)
    ld[0, :, 2:4, 2:4] = 1
    assert lipid_droplet_mask(ld).sum() == 8
    prob = np.full((1, 2, 8, 8), 0.2, np.float32)  # predict output of an LD net: no voxel is exactly 0
    prob[0, :, 2:4, 2:4] = 0.9
    got = lipid_droplet_mask(prob)
    assert got.sum() == 8 and got[:, 2:4, 2:4].all()  # not every non-zero voxel
    assert lipid_droplet_mask(prob, threshold=0.1).all()
    from stainfree.types import COMPARTMENTS

    seg = np.zeros((len(COMPARTMENTS), 2, 8, 8), np.uint8)
    seg[COMPARTMENTS.index("nucleus")] = 1  # a segment output: the nucleus is not a droplet
    seg[COMPARTMENTS.index("lipid_droplet"), :, 5:7, 5:7] = 1
    got = lipid_droplet_mask(seg, COMPARTMENTS)
    assert got.sum() == 8 and got[:, 5:7, 5:7].all()
    with pytest.raises(InputError, match="none is named lipid_droplet"):
        lipid_droplet_mask(seg, [f"c{i}" for i in range(len(COMPARTMENTS))], source="seg.ome.tif")
