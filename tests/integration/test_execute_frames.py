"""A time-lapse as one task per time point on a 2-process LocalCluster: predictions and masks equal to the
single-process run, every frame written into one OME-Zarr with a T axis; an interrupted run redoes only the
unfinished frames; the CLI takes the same path."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

VOX = (0.5, 0.2, 0.2)


def _zarr(path, inner="0"):
    import zarr

    return np.asarray(zarr.open_array(str(path / inner), mode="r")[...])


@pytest.fixture()
def series(tmp_path):
    """A T=4, 8 x 64 x 64 one-channel time-lapse (OME-TIFF) and a tiny random 3D regression bundle."""
    from fakes import random_bundle
    from stainfree.io.writers import write_ome_tiff

    rng = np.random.default_rng(5)
    img = (rng.random((4, 1, 8, 64, 64)) * 1000).astype(np.uint16)
    path = write_ome_tiff(tmp_path / "tl.ome.tif", img, "TCZYX", VOX)
    return random_bundle(tmp_path), path


def test_predict_job_runs_frames_as_tasks(series, tmp_path, dask_address):
    from stainfree import api
    from stainfree.inference.predict import predict_file
    from stainfree.io.readers import read_image

    bundle, image = series
    result = api.predict_job(
        bundle, image, tmp_path / "job.ome.zarr", scheduler=dask_address, progress=False, bf16=False
    )
    run = result["frames"]
    assert run.total == 4 and run.computed == 4 and result["image"] == tmp_path / "job.ome.zarr"
    from distributed import Client

    with Client(dask_address) as client:  # both worker processes predicted frames (each opened the series)
        opened = client.run(
            lambda p: p in __import__("stainfree.execute.frames", fromlist=["_SERIES"])._SERIES,
            str(image.resolve()),
        )
    assert len(opened) == 2 and all(opened.values())
    one = predict_file(bundle, image, tmp_path / "one.ome.zarr", progress=False, overlap=3 / 16)
    ref, ref_meta = read_image(one)
    got, meta = read_image(result["image"])
    assert meta.axes == ref_meta.axes and got.shape == ref.shape
    assert _zarr(result["image"]).shape == (4, 1, 8, 64, 64)  # T, C, Z, Y, X
    assert np.abs(np.asarray(got) - np.asarray(ref)).max() < 1e-5
    assert np.asarray(ref).std() > 1e-3  # the random net's output varies
    again = api.predict_job(
        bundle, image, tmp_path / "job.ome.zarr", scheduler=dask_address, progress=False, bf16=False
    )
    assert again["frames"].computed == 0 and again["frames"].skipped == 4


def test_interrupted_frames_resume(series, tmp_path):
    from stainfree.execute.blocks import working_path
    from stainfree.execute.cluster import open_client
    from stainfree.execute.frames import predict_frames

    bundle, image = series
    out = tmp_path / "p.ome.zarr"
    options = {"roi_size": None, "overlap": 3 / 16, "sw_batch_size": 1, "bf16": False, "device": "cpu"}
    with open_client(None, None) as client:  # in-process
        first = predict_frames(client, bundle, image, out, options=options, max_frames=3)  # interrupted
        assert first.path is None and first.computed == 3 and not out.exists()
        assert len(list((working_path(out) / ".stainfree-run" / "done").glob("*.json"))) == 3
        rest = predict_frames(client, bundle, image, out, options=options)
        assert rest.path == out and rest.computed == 1 and rest.skipped == 3
        fresh = predict_frames(client, bundle, image, tmp_path / "fresh.ome.zarr", options=options)
        assert fresh.computed == 4
        assert np.array_equal(_zarr(out), _zarr(fresh.path))
        # another setting is another run: every frame again
        other = predict_frames(client, bundle, image, out, options={**options, "overlap": 0.25})
        assert other.computed == 4


@pytest.fixture()
def nilered_series(tmp_path):
    """A T=4 two-channel Nile Red time-lapse (2 x 48 x 48 frames) and two tiny random catalog bundles."""
    from fakes import random_nilered_bundle
    from stainfree.io.writers import write_ome_tiff

    rng = np.random.default_rng(1)
    img = (rng.random((4, 2, 2, 48, 48)) * 100 + 10).astype(np.float32)
    path = write_ome_tiff(tmp_path / "tl.ome.tif", img, "TCZYX", VOX, ["yellow", "red"])
    d = tmp_path / "bundles"
    random_nilered_bundle(d, "MITO", "binary", ["mitochondria"], seed=1)
    random_nilered_bundle(d, "LD", "binary", ["lipid_droplet"], seed=2)
    return path, d


def test_segment_job_runs_frames_as_tasks(nilered_series, tmp_path, dask_address):
    from typer.testing import CliRunner

    from stainfree import api
    from stainfree.cli import app
    from stainfree.io.readers import read_image

    image, bundles = nilered_series
    one = api.segment(str(image), bundles, tmp_path / "one")
    job = api.segment_job(str(image), bundles, tmp_path / "job", scheduler=dask_address, progress=False)
    assert job["frames"].total == 4 and job["frames"].computed == 4
    assert job["masks"] == tmp_path / "job" / "tl" / "tl_masks.ome.tif"
    for key in ("masks", "labels", "masks_zarr"):
        a, meta = read_image(one[key])
        b, job_meta = read_image(job[key])
        assert meta.axes == job_meta.axes and np.array_equal(np.asarray(a), np.asarray(b)), key
        assert list(meta.channel_names) == list(job_meta.channel_names)
    assert np.asarray(read_image(one["masks"])[0]).any()
    assert np.array_equal(
        _zarr(one["ngff"], "labels/compartments/0"), _zarr(job["ngff"], "labels/compartments/0")
    )
    assert np.abs(_zarr(one["ngff"]) - _zarr(job["ngff"])).max() < 1e-5
    assert json.loads(one["alignment"].read_text()) == json.loads(job["alignment"].read_text())
    assert job["overlay"].stat().st_size > 1000
    # the CLI: a time-lapse with --scheduler runs one task per time point
    args = [
        "segment",
        str(image),
        "-b",
        str(bundles),
        "-o",
        str(tmp_path / "cli"),
        "--scheduler",
        dask_address,
    ]
    cli = CliRunner().invoke(app, args)
    assert cli.exit_code == 0, cli.output
    assert "frames: 4 computed, 0 already done, of 4" in cli.output
    a, _ = read_image(tmp_path / "cli" / "tl" / "tl_masks.ome.tif")
    assert np.array_equal(np.asarray(a), np.asarray(read_image(one["masks"])[0]))


def test_interrupted_segment_frames_resume(nilered_series, tmp_path):
    from stainfree.execute.cluster import open_client
    from stainfree.execute.frames import segment_frames
    from stainfree.workflows.execute import _bundle_paths

    image, bundles = nilered_series
    paths = _bundle_paths(bundles)
    with open_client(None, None) as client:
        first = segment_frames(client, paths, image, tmp_path / "seg", max_frames=2)
        assert first["masks"] is None and first["frames"].computed == 2
        rest = segment_frames(client, paths, image, tmp_path / "seg")
        assert rest["frames"].computed == 2 and rest["frames"].skipped == 2
        fresh = segment_frames(client, paths, image, tmp_path / "fresh", pyramid_levels=1)
        assert np.array_equal(_zarr(rest["masks_zarr"]), _zarr(fresh["masks_zarr"]))
    # levels: every second voxel of masks and labels, the mean of the intensity; valid NGFF 0.5
    import zarr
    from ome_zarr_models.v05 import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    masks = _zarr(fresh["masks_zarr"])
    assert np.array_equal(_zarr(fresh["masks_zarr"], "1"), masks[..., ::2, ::2])
    labels = _zarr(fresh["ngff"], "labels/compartments/0")
    assert np.array_equal(_zarr(fresh["ngff"], "labels/compartments/1"), labels[..., ::2, ::2])
    intensity = _zarr(fresh["ngff"])
    assert np.allclose(_zarr(fresh["ngff"], "1"), intensity.reshape(4, 2, 24, 2, 24, 2).mean(axis=(3, 5)))
    Image.from_zarr(zarr.open_group(str(fresh["masks_zarr"]), mode="r"))
    root = zarr.open_group(str(fresh["ngff"]), mode="r")
    Image.from_zarr(root)
    ImageLabel.from_zarr(root["labels"]["compartments"])
    with open_client(None, None) as client:
        assert json.loads(rest["alignment"].read_text()) == json.loads(fresh["alignment"].read_text())
        done = segment_frames(client, paths, image, tmp_path / "seg")
        assert done["frames"].computed == 0 and done["frames"].skipped == 4


def test_big_frames_run_as_time_point_blocks(series, tmp_path, dask_address):
    """With block_voxels (or frames larger than a block) every block of every time point is a task: equal to
    predict_array on each frame (normalized on its own) with the same blocks; resumable; levels per frame."""
    import zarr
    from ome_zarr_models.v05 import Image

    from stainfree import api
    from stainfree.execute.cluster import open_client
    from stainfree.execute.frame_blocks import predict_frame_blocks
    from stainfree.inference.tiling import predict_array
    from stainfree.io.readers import read_image
    from stainfree.models.bundle import load_bundle

    bundle, image = series
    tile, block_voxels = (8, 32, 32), 16000
    kw = {"tile": list(tile), "block_voxels": block_voxels, "bf16": False, "progress": False}
    result = api.predict_job(bundle, image, tmp_path / "job.ome.zarr", scheduler=dask_address, **kw)
    run = result["blocks"]
    assert run.total == 4 * 4 and run.computed == 16  # 4 time points of 4 blocks (Y and X halved)
    img = np.asarray(read_image(image, intensities=True)[0], dtype=np.float32).reshape(4, 1, 8, 64, 64)
    model = load_bundle(bundle).model
    got = _zarr(result["image"])
    for t in range(4):
        x64 = img[t].astype(np.float64)
        xn = (img[t] - np.float32(x64.mean())) / np.float32(x64.std())
        ref = predict_array(
            model, xn, spatial_dims=3, roi_size=tile, overlap=3 / 16, max_block_voxels=block_voxels, divisor=4
        )
        assert np.abs(got[t] - ref).max() < 1e-5, t
    out = tmp_path / "r.ome.zarr"
    opts = {"roi_size": tile, "max_block_voxels": block_voxels, "pyramid_levels": 1}
    with open_client(None, None) as client:
        first = predict_frame_blocks(client, bundle, image, out, max_blocks=5, **opts)
        assert first.path is None and first.computed == 5
        rest = predict_frame_blocks(client, bundle, image, out, **opts)
        assert rest.computed == 11 and rest.skipped == 5
    assert np.abs(_zarr(out) - got).max() < 1e-5
    level1 = _zarr(out, "1")
    assert level1.shape == (4, 1, 8, 32, 32)
    assert np.allclose(level1, got.reshape(4, 1, 8, 32, 2, 32, 2).mean(axis=(4, 6)), atol=1e-6)
    Image.from_zarr(zarr.open_group(str(out), mode="r"))
