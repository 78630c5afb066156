"""One mask image quantified as blocks on a 2-process LocalCluster: every table equal to single-process
api.quantify; an interrupted run resumes; the CLI takes --block-voxels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

BLOCK_VOXELS = 8 * 40 * 40  # 8 x 96 x 96 -> blocks of 8 x 24 x 48: 8 blocks, faces and corners crossed


def _ball(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def make_masks(shape=(8, 96, 96)) -> tuple[np.ndarray, list[str]]:
    """15 compartment masks: two cells touching (one component, two nuclei: split by the watershed), a third
    cell alone, nuclear membranes overlapping their nuclei (a second layer), organelles crossing block faces
    and corners (diagonal links), touching organelles, specks below the size filter, extracellular around."""
    from stainfree.types import COMPARTMENTS

    rng = np.random.default_rng(7)
    m = {c: np.zeros(shape, dtype=bool) for c in COMPARTMENTS}
    cell_a = _ball(shape, (4, 30, 26), (6, 20, 18))
    cell_b = _ball(shape, (4, 30, 60), (6, 20, 18))
    cell_c = _ball(shape, (4, 76, 70), (5, 16, 18))
    cells = cell_a | cell_b | cell_c
    for centre in ((4, 28, 24), (4, 32, 62), (4, 74, 70)):
        nuc = _ball(shape, centre, (3, 8, 8))
        m["nucleus"] |= nuc
        m["nuclear_membrane"] |= nuc & ~_ball(shape, centre, (2, 6.5, 6.5))
    m["cytosol"] = cells & ~m["nucleus"]
    m["extracellular"] = ~cells
    # mitochondria: elongated pieces, some crossing the block faces at y=24, 48 and x=48
    for y0, x0 in ((20, 40), (44, 44), (45, 52), (70, 56), (80, 80), (30, 10)):
        m["mitochondria"][2:5, y0 : y0 + 8, x0 : x0 + 3] = True
    # a chain of voxels touching only diagonally across a block corner (y=48, x=48)
    for k in range(6):
        m["mitochondria"][3 + (k % 2), 44 + k, 44 + k] = True
    # lipid droplets touching mitochondria and each other, and specks below the size filter
    m["lipid_droplet"] |= _ball(shape, (3, 24, 47), (1.5, 3, 3)) & ~m["mitochondria"]
    m["lipid_droplet"] |= _ball(shape, (5, 72, 52), (1.5, 3, 3))
    for _ in range(12):
        z, y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1] - 2), rng.integers(0, shape[2] - 2)
        m["peroxisome"][z, y : y + 2, x : x + 2] = True
    m["er"] = cells & (rng.random(shape) < 0.05)
    for name in ("cytosol", "er", "mitochondria", "lipid_droplet", "peroxisome"):
        if name != "cytosol":
            m["cytosol"] &= ~m[name]
    return np.stack([m[c] for c in COMPARTMENTS]).astype(np.uint8), list(COMPARTMENTS)


@pytest.fixture()
def masks_zarr(tmp_path):
    from stainfree.io.writers import write_ome_zarr

    arr, names = make_masks()
    return write_ome_zarr(
        tmp_path / "field_masks.ome.zarr",
        arr,
        "CZYX",
        (0.4, 0.1, 0.1),
        names,
        chunks=(15, 8, 24, 48),
        ngff_version="0.5",
    )


def assert_tables_equal(blocks: dict, one: dict) -> None:
    """Every table identical: same rows, columns, dtypes and values (floats bit for bit)."""
    assert set(blocks) == set(one)
    for key in one:
        pd.testing.assert_frame_equal(blocks[key], one[key], check_exact=True, obj=key)


def test_quantify_blocks_equals_one_process(masks_zarr, tmp_path, dask_address):
    from distributed import Client

    from stainfree import api
    from stainfree.execute.quantify_blocks import quantify_blocks

    one = api.quantify(masks_zarr, tmp_path / "one")
    assert one["objects"]["structure"].nunique() >= 6
    assert one["cells"]["cell_id"].max() == 3  # two touching cells split between their nuclei
    with Client(dask_address) as client:
        result = quantify_blocks(client, masks_zarr, tmp_path / "blocks", max_block_voxels=BLOCK_VOXELS)
    assert result["blocks"].computed > 8
    assert_tables_equal(result["tables"], one)
    written = sorted(p.name for p in (tmp_path / "blocks").iterdir() if not p.name.startswith("."))
    assert written == sorted(p.name for p in (tmp_path / "one").iterdir() if not p.name.startswith("."))


def test_quantify_blocks_resumes(masks_zarr, tmp_path, dask_address):
    """A run stopped after a few tasks (as if killed) resumes: finished tasks are skipped, tables equal."""
    from distributed import Client

    from stainfree import api
    from stainfree.execute.quantify_blocks import quantify_blocks

    out = tmp_path / "resumed"
    with Client(dask_address) as client:
        first = quantify_blocks(client, masks_zarr, out, max_block_voxels=BLOCK_VOXELS, max_tasks=20)
        assert first["output"] is None and first["blocks"].computed == 20
        assert not (out / "objects.csv").exists()
        second = quantify_blocks(client, masks_zarr, out, max_block_voxels=BLOCK_VOXELS)
        assert second["blocks"].skipped == 20 and second["blocks"].computed > 0
        third = quantify_blocks(client, masks_zarr, out, max_block_voxels=BLOCK_VOXELS)
        assert third["blocks"].computed == 0 and third["blocks"].total == second["blocks"].total
    assert not any(p.name.endswith(".stainfree-resume") for p in tmp_path.iterdir())
    one = api.quantify(masks_zarr)
    assert_tables_equal(second["tables"], one)


def test_cli_quantify_block_voxels(masks_zarr, tmp_path, dask_address):
    """``stainfree quantify MASKS --block-voxels N --scheduler ADDR`` writes the per-position files."""
    from typer.testing import CliRunner

    from stainfree import api
    from stainfree.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["quantify", str(masks_zarr), "--out", str(out), "--block-voxels", str(BLOCK_VOXELS)]
        + ["--scheduler", dask_address, "--no-figures"],
    )
    assert result.exit_code == 0, result.output
    assert "computed" in result.output
    objects = pd.read_parquet(out / "field_masks" / "objects.parquet")
    one = api.quantify(masks_zarr)["objects"]
    pd.testing.assert_frame_equal(
        objects.reset_index(drop=True), one.reset_index(drop=True), check_exact=False, rtol=1e-9
    )


def test_quantify_blocks_label_map_other_settings(tmp_path, dask_address):
    """A label map (one channel), face-and-edge connectivity, no derived cells, a subset of structures, tiny
    blocks: identical tables too."""
    from distributed import Client

    from stainfree import api
    from stainfree.config import QuantifyConfig
    from stainfree.execute.quantify_blocks import quantify_blocks
    from stainfree.io.writers import write_ome_zarr

    arr, _ = make_masks()
    labels = np.zeros(arr.shape[1:], np.uint8)
    for i in range(arr.shape[0]):
        labels[arr[i] > 0] = i + 1
    path = write_ome_zarr(tmp_path / "labels.ome.zarr", labels, "ZYX", (0.3, 0.1, 0.1), ngff_version="0.5")
    structures = ["nucleus", "cytosol", "mitochondria", "lipid_droplet", "peroxisome"]
    cfg = QuantifyConfig(connectivity=2, derive_cells=False, min_size_voxels=3, structures=structures)
    one = api.quantify(path, config=cfg)
    with Client(dask_address) as client:
        result = quantify_blocks(client, path, tmp_path / "blocks", config=cfg, max_block_voxels=3000)
    assert_tables_equal(result["tables"], one)


def test_quantify_blocks_refuses_instance_stacks(tmp_path, dask_address):
    """Several ids in one channel make an instance stack for load_masks: not read as masks here."""
    from distributed import Client

    from stainfree.errors import InputError
    from stainfree.execute.quantify_blocks import quantify_blocks
    from stainfree.io.writers import write_ome_zarr

    arr, names = make_masks()
    arr[names.index("mitochondria"), 2:5, 20:28, 40:43] = 2
    path = write_ome_zarr(tmp_path / "inst.ome.zarr", arr, "CZYX", (0.4, 0.1, 0.1), names, ngff_version="0.5")
    with Client(dask_address) as client, pytest.raises(InputError, match="instance"):
        quantify_blocks(client, path, tmp_path / "out", max_block_voxels=BLOCK_VOXELS)


def test_quantify_blocks_large_objects_by_parts(masks_zarr, tmp_path, dask_address, monkeypatch):
    """Objects larger than ``large_voxels`` measured block by block (bounded memory): every value identical
    but the mesh's (surface, sphericity: float32 vertex coordinates, ~1e-7) and the mean signed nucleus
    distance (a float sum in another order); the cell of objects above the subsample size too."""
    from distributed import Client

    import stainfree.execute.quantify_blocks as qb
    from stainfree import api
    from stainfree.quantify import measure

    monkeypatch.setattr(measure, "CELL_SAMPLE", 5000)  # the extracellular object's cell from a subsample
    monkeypatch.setattr(qb, "CELL_SAMPLE", 5000)
    one = api.quantify(masks_zarr)
    with Client(dask_address) as client:
        result = qb.quantify_blocks(
            client, masks_zarr, tmp_path / "parts", max_block_voxels=BLOCK_VOXELS, large_voxels=2000
        )
    tables = result["tables"]
    mesh = ["surface_um2", "sphericity", "nucleus_distance_signed_um"]
    assert (one["objects"]["n_voxels"] > 5000).sum() >= 2
    pd.testing.assert_frame_equal(tables["objects"].drop(columns=mesh), one["objects"].drop(columns=mesh))
    for key in one:
        pd.testing.assert_frame_equal(tables[key], one[key], check_exact=False, rtol=1e-6, obj=key)
