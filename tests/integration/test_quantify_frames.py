"""One mask time-lapse quantified with its time points as tasks on a 2-process LocalCluster: every table equal
to single-process api.quantify; an interrupted run resumes; the CLI runs a time-lapse on --cluster local:2."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

VOX = (0.4, 0.1, 0.1)


def _ball(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def make_timelapse(n_t: int = 4, shape=(8, 64, 64)) -> np.ndarray:
    """(T, 15, Z, Y, X) uint8 compartment masks: one cell with its nucleus, a mitochondrion that moves with a
    lipid droplet touching it (contacts and contact events), one that splits at t=2, two that fuse at t=3,
    ER speckle and peroxisome specks that appear and vanish."""
    from stainfree.types import COMPARTMENTS

    rng = np.random.default_rng(3)
    m = {c: np.zeros((n_t, *shape), dtype=bool) for c in COMPARTMENTS}
    cell = _ball(shape, (4, 32, 32), (6, 28, 28))
    for t in range(n_t):
        nuc = _ball(shape, (4, 32, 30 + t), (3, 7, 7))
        m["nucleus"][t] = nuc
        m["nuclear_membrane"][t] = nuc & ~_ball(shape, (4, 32, 30 + t), (2, 5.5, 5.5))
        mito = m["mitochondria"][t]
        mito[2:5, 12:20, 14 + 2 * t : 17 + 2 * t] = True  # moves
        if t < 2:  # splits
            mito[2:5, 40:52, 42:45] = True
        else:
            mito[2:5, 40:45, 42:45] = True
            mito[2:5, 47:52, 42:45] = True
        if t < 3:  # fuse
            mito[3:6, 20:24, 40:48] = True
            mito[3:6, 26:30, 40:48] = True
        else:
            mito[3:6, 20:30, 40:48] = True
        m["lipid_droplet"][t] = _ball(shape, (3, 22, 15 + 2 * t), (1.5, 2.5, 2.5)) & ~mito
        for _ in range(3):
            z, y, x = rng.integers(1, 7), rng.integers(10, 50), rng.integers(10, 50)
            m["peroxisome"][t, z : z + 2, y : y + 3, x : x + 3] = True
        m["er"][t] = cell & (rng.random(shape) < 0.04)
        others = nuc | mito | m["lipid_droplet"][t] | m["peroxisome"][t] | m["er"][t]
        m["cytosol"][t] = cell & ~others
        m["extracellular"][t] = ~cell
    return np.stack([m[c] for c in COMPARTMENTS], axis=1).astype(np.uint8)


@pytest.fixture()
def timelapse_tif(tmp_path):
    from stainfree.io.writers import write_ome_tiff
    from stainfree.types import COMPARTMENTS

    return write_ome_tiff(tmp_path / "tl_masks.ome.tif", make_timelapse(), "TCZYX", VOX, COMPARTMENTS)


def assert_tables_equal(frames: dict, one: dict) -> None:
    """Every table identical: same rows, columns, dtypes and values (floats bit for bit)."""
    assert set(frames) == set(one)
    for key in one:
        pd.testing.assert_frame_equal(frames[key], one[key], check_exact=True, obj=key)


def test_quantify_frames_equals_one_process(timelapse_tif, tmp_path, dask_address):
    from distributed import Client

    from stainfree import api
    from stainfree.execute.quantify_frames import quantify_frames

    one = api.quantify(timelapse_tif, tmp_path / "one")
    assert set(one["track_events"]["kind"]) == {"fission", "fusion"}
    assert len(one["links"]) > 0 and len(one["contact_events"]) > 0 and one["cells"]["frame"].nunique() == 4
    with Client(dask_address) as client:
        result = quantify_frames(client, timelapse_tif, tmp_path / "frames")
    assert result["frames"].computed == 4 + 4 + 3  # values, frames, frame pairs
    assert_tables_equal(result["tables"], one)
    written = sorted(p.name for p in (tmp_path / "frames").iterdir() if not p.name.startswith("."))
    assert written == sorted(p.name for p in (tmp_path / "one").iterdir() if not p.name.startswith("."))


def test_quantify_frames_resumes(timelapse_tif, tmp_path, dask_address):
    """A run stopped after a few tasks (as if killed) resumes: recorded frames are skipped, tables equal."""
    from distributed import Client

    from stainfree import api
    from stainfree.execute.quantify_frames import quantify_frames

    out = tmp_path / "resumed"
    with Client(dask_address) as client:
        first = quantify_frames(client, timelapse_tif, out, max_tasks=6)
        assert first["output"] is None and first["frames"].computed == 6
        assert not (out / "objects.csv").exists()
        second = quantify_frames(client, timelapse_tif, out)
        assert second["frames"].skipped == 6 and second["frames"].computed == 5
        third = quantify_frames(client, timelapse_tif, out)
        assert third["frames"].computed == 0 and third["frames"].total == 11
    assert_tables_equal(second["tables"], api.quantify(timelapse_tif))


@pytest.mark.parametrize("link", ["centroid", "laptrack"])
def test_quantify_frames_label_map_other_links(link, tmp_path, dask_address):
    """A label-map time-lapse (no values stage), other linking, no derived cells: identical tables."""
    from distributed import Client

    from stainfree import api
    from stainfree.config import QuantifyConfig
    from stainfree.execute.quantify_frames import quantify_frames
    from stainfree.io.writers import write_ome_tiff

    if link == "laptrack":
        pytest.importorskip("laptrack")
    masks = make_timelapse().astype(bool)
    labels = np.zeros((masks.shape[0], *masks.shape[2:]), dtype=np.uint8)
    for c in range(masks.shape[1]):  # later channels win where masks overlap
        labels[masks[:, c]] = c + 1
    path = write_ome_tiff(tmp_path / "labels.ome.tif", labels, "TZYX", VOX)
    cfg = QuantifyConfig(link_method=link, derive_cells=False, figures=False, min_size_voxels=4)
    with Client(dask_address) as client:
        result = quantify_frames(client, path, tmp_path / "frames", config=cfg)
    assert result["frames"].computed == 4
    assert_tables_equal(result["tables"], api.quantify(path, config=cfg))


def test_cli_quantify_timelapse_cluster(timelapse_tif, tmp_path):
    """``stainfree quantify TIMELAPSE --cluster local:2`` runs the time points as tasks and writes the
    per-position files."""
    from typer.testing import CliRunner

    from stainfree import api
    from stainfree.cli import app

    out = tmp_path / "cli"
    start = time.perf_counter()
    result = CliRunner().invoke(
        app, ["quantify", str(timelapse_tif), "--out", str(out), "--cluster", "local:2", "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    assert "frames: 11 computed" in result.output, result.output
    assert time.perf_counter() - start < 300
    objects = pd.read_parquet(out / "tl_masks" / "objects.parquet")
    one = api.quantify(timelapse_tif)["objects"]
    pd.testing.assert_frame_equal(objects.reset_index(drop=True), one.reset_index(drop=True))
