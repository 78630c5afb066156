"""Components merged across blocks carry the whole-field numbering (pure numpy, no Dask)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from stainfree.quantify.blocklabels import (
    BlockGrid,
    boundary_pairs,
    clip_region,
    label_block,
    merge_components,
    node_offsets,
)
from stainfree.quantify.maps import label_components


def _blockwise(mask: np.ndarray, block: tuple[int, ...], connectivity: int, min_size: int) -> np.ndarray:
    """Global labels of ``mask`` as the block engine forms them (the tasks' plumbing, inline)."""
    grid = BlockGrid(mask.shape, block)
    structure = ndi.generate_binary_structure(mask.ndim, connectivity)
    local = np.zeros(mask.shape, dtype=np.int32)
    parts = {}
    for b in range(len(grid)):
        r = grid.region(b)
        lab, parts[b] = label_block(mask[r][None], r, mask.shape, structure)
        local[r] = lab[0]
    offsets = node_offsets(parts, len(grid), 1)
    nodes = np.where(local > 0, offsets[0][grid.block_ids(tuple(slice(0, n) for n in mask.shape))] + local, 0)
    pairs = []
    for axis, p, tile in grid.boundaries():
        others = [k for k in range(mask.ndim) if k != axis]
        grown = clip_region(tile, 1, tuple(mask.shape[k] for k in others))
        lo = np.take(nodes, p - 1, axis=axis)[tile]
        hi = np.take(nodes, p, axis=axis)[grown]
        pad = [(1 - (t.start - g.start), 1 - (g.stop - t.stop)) for t, g in zip(tile, grown, strict=True)]
        pairs.append(boundary_pairs(lo, np.pad(hi, pad), structure, axis))
    merged = merge_components(parts, pairs, 1, min_size)
    out = np.zeros(mask.shape, dtype=np.int32)
    for b in range(len(grid)):
        r = grid.region(b)
        out[r] = merged.luts[(0, b)][local[r]]
    return out


@pytest.mark.parametrize("connectivity", [1, 2, 3])
@pytest.mark.parametrize("block", [(3, 5, 7), (2, 4, 4), (9, 31, 30)])
def test_blockwise_labels_equal_whole_field(connectivity, block):
    rng = np.random.default_rng(connectivity * 10 + block[0])
    mask = ndi.gaussian_filter(rng.random((9, 31, 30)), 0.7) > 0.6
    mask |= rng.random(mask.shape) < 0.01  # specks: diagonal links and the size filter
    expected, _ = label_components(mask, connectivity=connectivity, min_size=3)
    assert expected.max() > 3
    np.testing.assert_array_equal(_blockwise(mask, block, connectivity, 3), expected)


def test_grid_plan_and_regions():
    grid = BlockGrid.plan((8, 96, 96), 8 * 40 * 40)
    assert grid.block == (8, 24, 48) and len(grid) == 8
    covered = np.zeros(grid.shape, dtype=int)
    for b in range(len(grid)):
        covered[grid.region(b)] += 1
        assert grid.blocks_in(grid.region(b)) == [b]
    assert (covered == 1).all()
    assert BlockGrid.plan((4, 10, 10), None, (2, 5, 5)).block == (2, 5, 5)
