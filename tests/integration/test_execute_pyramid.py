"""Multiscale levels of the block engine's OME-Zarr outputs: computed on the cluster after level 0 (mean for
intensities, every second voxel for masks and labels), valid NGFF 0.5, readable by ome_zarr."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")


def _level(path, level, inner=""):
    import zarr

    return np.asarray(zarr.open_array(str(path / inner / str(level)), mode="r")[...])


def _mean2(a, axes=(-2, -1)):
    """2x mean over ``axes`` (edge voxels repeated where a side is odd)."""
    pad = [(0, a.shape[i] % 2 if i - a.ndim in axes else 0) for i in range(a.ndim)]
    a = np.pad(a, pad, mode="edge")
    for ax in axes:
        n = a.shape[ax]
        a = np.moveaxis(a, ax, -1)
        a = a.reshape(*a.shape[:-1], n // 2, 2).mean(-1)
        a = np.moveaxis(a, -1, ax)
    return a


def test_levels_and_factors():
    from stainfree.execute.pyramid import default_levels, downsample, level_factors, level_scales

    assert (
        default_levels((64, 64)) == 0
        and default_levels((513, 4000)) == 1
        and default_levels((2048, 3000)) == 2
    )
    # thick sections keep their planes; near-isotropic voxels halve Z too until Z is the coarser axis
    assert level_factors("CZYX", (0.5, 0.2, 0.2), (1, 16, 64, 64), 2) == [{"z": 1, "y": 2, "x": 2}] * 2
    iso = level_factors("CZYX", (0.2, 0.2, 0.2), (1, 16, 64, 64), 2)
    assert iso == [{"z": 2, "y": 2, "x": 2}] * 2
    thick = level_factors("CZYX", (0.3, 0.2, 0.2), (1, 16, 64, 64), 2)  # Z halved once Y/X are coarser
    assert thick == [{"z": 1, "y": 2, "x": 2}, {"z": 2, "y": 2, "x": 2}]
    assert level_factors("CYX", (None, None, None), (1, 64, 64), 1) == [{"z": 1, "y": 2, "x": 2}]
    assert level_factors("CZYX", (0.5, 0.2, 0.2), (1, 16, 64, 64), 0) == []
    assert level_scales("CZYX", [1.0, 0.2, 0.2, 0.2], iso) == [
        [1.0, 0.2, 0.2, 0.2],
        [1.0, 0.4, 0.4, 0.4],
        [1.0, 0.8, 0.8, 0.8],
    ]
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    assert np.allclose(downsample(x, (1, 2, 2)), _mean2(x))
    m = (x % 3).astype(np.uint8)
    assert np.array_equal(downsample(m, (1, 2, 2)), m[:, ::2, ::2])


def test_predict_blocks_pyramid_is_valid_and_downsampled(tmp_path, dask_address):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05 import Image

    from fakes import random_bundle
    from stainfree import api
    from stainfree.io.writers import write_ome_zarr

    rng = np.random.default_rng(0)
    img = (rng.random((1, 16, 64, 72)) * 1000).astype(np.uint16)
    image = write_ome_zarr(tmp_path / "in.ome.zarr", img, "CZYX", (0.5, 0.2, 0.2))
    bundle = random_bundle(tmp_path)
    kw = {"scheduler": dask_address, "tile": [16, 32, 32], "block_voxels": 16000, "progress": False}
    out = api.predict_job(bundle, image, tmp_path / "p.ome.zarr", pyramid_levels=2, **kw)["image"]
    l0, l1, l2 = (_level(out, k) for k in range(3))
    assert l1.shape == (1, 16, 32, 36) and l2.shape == (1, 16, 16, 18)
    assert np.allclose(l1, _mean2(l0), atol=1e-6) and np.allclose(l2, _mean2(l1), atol=1e-6)
    Image.from_zarr(zarr.open_group(str(out), mode="r"))  # valid NGFF 0.5
    ms = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.0, 0.5, 0.2, 0.2], [1.0, 0.5, 0.4, 0.4], [1.0, 0.5, 0.8, 0.8]]
    node = next(iter(Reader(parse_url(str(out)))()))
    assert [tuple(d.shape) for d in node.data] == [l0.shape, l1.shape, l2.shape]
    # --no-pyramid / pyramid_levels=0: level 0 only (another run: every block again)
    flat = api.predict_job(bundle, image, tmp_path / "p.ome.zarr", pyramid_levels=0, **kw)
    assert flat["blocks"].computed == flat["blocks"].total
    assert not (out / "1").exists() and np.array_equal(_level(out, 0), l0)
    # the CLI: --no-pyramid
    from typer.testing import CliRunner

    from stainfree.cli import app

    args = ["predict", str(bundle), str(image), "--out", str(tmp_path / "cli.ome.zarr"), "-q", "--fp32"]
    args += [
        "--tile",
        "16",
        "32",
        "32",
        "--scheduler",
        dask_address,
        "--block-voxels",
        "16000",
        "--no-pyramid",
    ]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    assert not (tmp_path / "cli.ome.zarr" / "1").exists() and (tmp_path / "cli.ome.zarr" / "0").is_dir()


def test_segment_blocks_pyramid_takes_every_second_voxel(tmp_path, dask_address, constant_bundle):
    import zarr
    from ome_zarr_models.v05 import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    from stainfree import api
    from stainfree.io.writers import write_ome_zarr

    rng = np.random.default_rng(3)
    img = (rng.random((2, 4, 96, 96)) * 600 + 100).astype(np.float32)
    image = write_ome_zarr(tmp_path / "cell.ome.zarr", img, "CZYX", (0.5, 0.2, 0.2), ["yellow", "red"])
    d = tmp_path / "bundles"
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [0.0], (32, 32), seed=1)
    result = api.segment_job(
        image,
        d,
        tmp_path / "job",
        scheduler=dask_address,
        block_voxels=20000,
        pyramid_levels=1,
        progress=False,
    )
    out = result["masks"]
    m0, m1 = _level(out, 0), _level(out, 1)
    assert m0[7].any() and np.array_equal(m1, m0[..., ::2, ::2])
    lab0, lab1 = _level(out, 0, "labels/compartments"), _level(out, 1, "labels/compartments")
    assert np.array_equal(lab1, lab0[..., ::2, ::2])
    root = zarr.open_group(str(out), mode="r")
    Image.from_zarr(root)
    ImageLabel.from_zarr(root["labels"]["compartments"])
