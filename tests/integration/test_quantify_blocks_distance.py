"""Contacts within a distance quantified as blocks (a halo of the distance around each block) on a 2-process
LocalCluster: every table equal to single-process api.quantify, contacts crossing block faces and corners."""

from __future__ import annotations

import pytest
from test_quantify_blocks import BLOCK_VOXELS, assert_tables_equal, make_masks


@pytest.mark.parametrize(
    ("voxel_size", "setting"),
    [((0.4, 0.1, 0.1), {"contact_distance_voxels": 3}), ((0.2, 0.2, 0.2), {"contact_distance_nm": 450.0})],
)
def test_quantify_blocks_contact_distance(voxel_size, setting, tmp_path, dask_address):
    from distributed import Client

    from stainfree import api
    from stainfree.config import QuantifyConfig
    from stainfree.execute.quantify_blocks import quantify_blocks
    from stainfree.io.writers import write_ome_zarr

    arr, names = make_masks()
    path = write_ome_zarr(
        tmp_path / "field_masks.ome.zarr",
        arr,
        "CZYX",
        voxel_size,
        names,
        chunks=(15, 8, 24, 48),
        ngff_version="0.5",
    )
    cfg = QuantifyConfig(figures=False, **setting)
    one = api.quantify(path, config=cfg)
    c = one["contacts"]
    other = c[c["structure_a"] != c["structure_b"]]
    assert (other["contact_voxels"] > 0).sum() >= 10
    with Client(dask_address) as client:
        result = quantify_blocks(client, path, tmp_path / "blocks", config=cfg, max_block_voxels=BLOCK_VOXELS)
    assert_tables_equal(result["tables"], one)


def test_quantify_job_contact_distance_runs_as_blocks(tmp_path, dask_address):
    """A job with contacts within 2 voxels on one big image runs as blocks (no longer per position)."""
    import pandas as pd

    from stainfree import api
    from stainfree.config import QuantifyConfig
    from stainfree.io.writers import write_ome_zarr

    arr, names = make_masks()
    path = write_ome_zarr(
        tmp_path / "f_masks.ome.zarr", arr, "CZYX", (0.4, 0.1, 0.1), names, ngff_version="0.5"
    )
    cfg = QuantifyConfig(figures=False, contact_distance_voxels=2)
    job = api.quantify_job(
        path, tmp_path / "job", scheduler=dask_address, config=cfg, block_voxels=BLOCK_VOXELS, progress=False
    )
    assert job["blocks"].computed > 8
    written = pd.read_parquet(tmp_path / "job" / "f_masks" / "contacts.parquet")
    pd.testing.assert_frame_equal(written, api.quantify(path, config=cfg)["contacts"])
