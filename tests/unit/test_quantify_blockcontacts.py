"""Distance contacts summed block by block (each block on its window grown by the contact halo) equal those
of the whole field, on random crowded fields with many equidistant (tied) nearest voxels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stainfree.quantify.blockcontacts import contact_halo, distance_partials
from stainfree.quantify.blocklabels import clip_region
from stainfree.quantify.maps import build_object_map


def _field(seed: int, shape=(6, 30, 34)):
    rng = np.random.default_rng(seed)
    masks = {}
    for name in ("mitochondria", "lipid_droplet", "peroxisome", "er"):
        m = np.zeros(shape, dtype=bool)
        for _ in range(10):
            z, y, x = (int(rng.integers(0, n)) for n in shape)
            m[
                z : z + int(rng.integers(1, 3)),
                y : y + int(rng.integers(1, 5)),
                x : x + int(rng.integers(1, 5)),
            ] = True
        masks[name] = m
    masks["er"] &= rng.random(shape) < 0.5  # speckle: equidistant neighbours everywhere
    masks["lipid_droplet"] |= masks["mitochondria"] & (rng.random(shape) < 0.1)  # overlaps: a second layer
    return build_object_map(masks, connectivity=1, min_size=1)


def _blocks(shape, block):
    edges = [range(0, n, b) for n, b in zip(shape, block, strict=True)]
    for starts in itertools.product(*edges):
        yield tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, block, shape, strict=True))


@pytest.mark.parametrize(
    ("spacing", "voxels"), [((0.2, 0.2, 0.2), 2), ((0.4, 0.1, 0.1), 3), ((0.3, 0.1, 0.2), 2.5)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_distance_partials_by_blocks_equal_the_whole_field(spacing, voxels, seed):
    omap = _field(seed)
    assert len(omap.layers) >= 2
    distance = voxels * min(spacing)
    struct_of = omap.structure_of.astype(np.int64)
    whole = distance_partials(
        omap.layers, tuple(slice(0, n) for n in omap.shape), struct_of, omap.names, spacing, distance
    )
    assert whole["faces"].sum() > 20 and whole["voxels"].sum() > 20
    faces, voxels_sum, pairs = np.zeros_like(whole["faces"]), np.zeros_like(whole["voxels"]), {}
    for core in _blocks(omap.shape, (3, 8, 11)):
        win = clip_region(core, contact_halo(distance, spacing), omap.shape)
        inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, win, strict=True))
        part = distance_partials(
            [la[win] for la in omap.layers], inner, struct_of, omap.names, spacing, distance
        )
        faces += part["faces"]
        voxels_sum += part["voxels"]
        for code, per in part["pairs"].items():
            pairs[code] = pairs.get(code, 0) + per
    np.testing.assert_array_equal(faces, whole["faces"])
    np.testing.assert_array_equal(voxels_sum, whole["voxels"])
    assert sorted(pairs) == sorted(whole["pairs"])
    for code, per in whole["pairs"].items():
        np.testing.assert_array_equal(pairs[code], per)
