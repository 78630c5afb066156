"""One block grid for bundles whose plans differ (tile, divisor, halo)."""

from __future__ import annotations

import numpy as np


def test_common_grid_covers_the_image_within_every_budget():
    from stainfree.inference.blockplan import common_grid, plan_blocks

    shape, budget = (32, 200, 200), 200_000
    a = plan_blocks(shape, spatial_dims=3, divisor=4, roi_size=(16, 32, 32), max_block_voxels=budget)
    b = plan_blocks(shape, spatial_dims=3, divisor=8, roi_size=(16, 64, 64), max_block_voxels=budget)
    assert a.cores != b.cores
    grid = common_grid([a, b], budget)
    assert grid.roi == a.roi and grid.halo == a.halo  # the first plan's windows, the common cores
    covered = np.zeros(shape, int)
    for core in grid.cores:
        covered[tuple(slice(s, e) for s, e in core)] += 1
    assert (covered == 1).all()
    # no core is larger than the larger of the two plans' own blocks (their halos fit the same budget)
    largest = [max(x, y) for x, y in zip(a.block_shape, b.block_shape, strict=True)]
    assert all(e - s <= n for core in grid.cores for (s, e), n in zip(core, largest, strict=True))
    assert common_grid([a, a], budget).cores == a.cores
