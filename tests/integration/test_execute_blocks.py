"""One image as blocks on a 2-process LocalCluster: equal to predict_array, chunk-aligned, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

BLOCK_VOXELS = 16000
TILE = (16, 32, 32)


@pytest.fixture()
def volume(tmp_path):
    from fakes import random_bundle
    from stainfree.io.writers import write_ome_zarr

    rng = np.random.default_rng(0)
    img = (rng.random((1, 16, 64, 64)) * 1000).astype(np.uint16)
    bundle = random_bundle(tmp_path)
    return bundle, write_ome_zarr(tmp_path / "in.ome.zarr", img, "CZYX", (0.5, 0.2, 0.2)), img


def _reference(bundle, img, overlap=3 / 16, **kwargs):  # the default overlap of predict and jobs
    from stainfree.inference.tiling import predict_array
    from stainfree.models.bundle import load_bundle

    x64 = img.astype(np.float64)
    xn = (img.astype(np.float32) - np.float32(x64.mean())) / np.float32(x64.std())
    model = load_bundle(bundle).model
    return predict_array(
        model,
        xn,
        spatial_dims=3,
        roi_size=TILE,
        overlap=overlap,
        max_block_voxels=BLOCK_VOXELS,
        divisor=4,
        **kwargs,
    )


def _read(path):
    import zarr

    return np.asarray(zarr.open_array(str(path / "0"), mode="r")[...])


def test_blocks_equal_predict_array_and_are_chunks(volume, tmp_path, dask_address):
    from stainfree import api
    from stainfree.inference.blockplan import plan_blocks

    bundle, inp, img = volume
    out = tmp_path / "out.ome.zarr"
    result = api.predict_job(
        bundle,
        inp,
        out,
        scheduler=dask_address,
        tile=list(TILE),
        block_voxels=BLOCK_VOXELS,
        progress=False,
        bf16=False,
    )
    run = result["blocks"]
    plan = plan_blocks(img.shape[1:], spatial_dims=3, divisor=4, roi_size=TILE, max_block_voxels=BLOCK_VOXELS)
    assert result["image"] == out and run.total == len(plan.cores) >= 4 and run.computed == run.total
    pred = _read(out)
    assert np.abs(pred - _reference(bundle, img)).max() <= 1e-5
    meta = json.loads((out / "zarr.json").read_text())
    assert meta["attributes"]["ome"]["version"] == "0.5"
    assert json.loads((out / "0" / "zarr.json").read_text())["chunk_grid"]["configuration"][
        "chunk_shape"
    ] == [
        1,
        *plan.block_shape,
    ]
    again = api.predict_job(
        bundle,
        inp,
        out,
        scheduler=dask_address,
        tile=list(TILE),
        block_voxels=BLOCK_VOXELS,
        progress=False,
        bf16=False,
    )
    assert again["blocks"].computed == 0 and again["blocks"].skipped == run.total


def test_resume_computes_only_unfinished_blocks(volume, tmp_path, dask_address):
    from stainfree.atomic import PARTIAL_SUFFIX
    from stainfree.execute.blocks import predict_blocks, working_path
    from stainfree.execute.cluster import open_client
    from stainfree.lock import output_lock

    bundle, inp, img = volume
    out = tmp_path / "out.ome.zarr"
    kw = {"roi_size": TILE, "max_block_voxels": BLOCK_VOXELS}
    with open_client(scheduler=dask_address) as client:
        first = predict_blocks(client, bundle, inp, out, max_blocks=2, **kw)  # an interrupted run
        assert not first.complete and first.computed == 2 and not out.exists()
        # a new run takes the folder's lock, which sweeps the atomic writers' temporaries, not the run store
        with output_lock(
            tmp_path, name=f".{out.name}.stainfree.lock", stale=f".{out.name}.*{PARTIAL_SUFFIX}"
        ):
            pass
        assert len(list((working_path(out) / ".stainfree-run" / "done").glob("*.json"))) == 2
        second = predict_blocks(client, bundle, inp, out, **kw)
        assert second.complete and second.skipped == 2 and second.computed == second.total - 2
        assert np.abs(_read(out) - _reference(bundle, img)).max() <= 1e-5
        # a changed setting starts afresh, even from an interrupted run
        predict_blocks(client, bundle, inp, out, max_blocks=3, overlap=0.5, **kw)
        changed = predict_blocks(client, bundle, inp, out, overlap=0.4, **kw)
        assert changed.skipped == 0 and changed.computed == changed.total
        assert np.abs(_read(out) - _reference(bundle, img, overlap=0.4)).max() <= 1e-5


def test_blocks_with_tta_equal_one_process(volume, tmp_path, dask_address):
    from stainfree import api
    from stainfree.io.readers import read_image

    bundle, inp, img = volume
    out = tmp_path / "tta.ome.zarr"
    kw = {"tile": list(TILE), "block_voxels": BLOCK_VOXELS, "progress": False, "bf16": False}
    result = api.predict_job(bundle, inp, out, scheduler=dask_address, tta=True, uncertainty=True, **kw)
    assert result["blocks"].total >= 4
    pred, meta = read_image(out)
    assert meta.channel_names[1].endswith("_tta_spread")
    ref = _reference(bundle, img, tta=True, uncertainty=True)
    assert ref.shape[0] == 2 and np.abs(np.asarray(pred) - ref).max() <= 1e-5
    plain = _reference(bundle, img)
    assert np.abs(ref[:1] - plain).max() > 1e-4  # the views really were averaged
    # a run without tta does not take the tta run's blocks for its own
    again = api.predict_job(bundle, inp, out, scheduler=dask_address, **kw)
    assert again["blocks"].computed == again["blocks"].total
    assert np.abs(_read(out) - plain).max() <= 1e-5
