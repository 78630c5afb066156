"""One Nile Red image segmented as blocks on a 2-process LocalCluster: masks and label map identical to
single-process api.segment; an interrupted run resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

BLOCK_VOXELS = 20000  # 8 x 96 x 96 planes of the 2D catalog nets -> 4 blocks of 2 planes
MITO = 8  # index of mitochondria among the 15 masks


@pytest.fixture()
def nilered(tmp_path, constant_bundle):
    """An 8 x 96 x 96 two-channel Nile Red image (red shifted by a subpixel chromatic shift) and two tiny
    random catalog bundles (one aligns its channels itself, one scales the ratio absolutely)."""
    import yaml
    from scipy import ndimage

    from stainfree.io.writers import write_ome_zarr

    rng = np.random.default_rng(3)
    shape = (8, 96, 96)
    cells = ndimage.gaussian_filter(rng.random(shape), (1, 4, 4)) > 0.5
    yellow = 100 + 600 * cells * rng.random(shape) + 5 * rng.random(shape)
    red = ndimage.shift(yellow * 0.7, (0.0, 0.8, -0.5), order=1, mode="nearest") + 3 * rng.random(shape)
    img = np.stack([yellow, red]).astype(np.float32)
    path = write_ome_zarr(tmp_path / "cell.ome.zarr", img, "CZYX", (0.5, 0.2, 0.2), ["yellow", "red"])
    d = tmp_path / "bundles"
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [0.0], (32, 32), seed=1)
    constant_bundle(
        d, "VOLUME", "multiclass", ["nucleus", "cytosol", "extracellular"], [0.0, 0.2, 0.0], seed=2
    )
    for name, update in [("LD", {"channel_alignment": "auto"}), ("VOLUME", {"ratio_normalization": "fixed"})]:
        cfg_path = d / f"{name}.stainfree" / "bundle.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg.update(update)
        cfg_path.write_text(yaml.safe_dump(cfg))
    return path, d


def _zarr(path, inner="0"):
    import zarr

    return np.asarray(zarr.open_array(str(path / inner), mode="r")[...])


def test_segment_job_as_blocks_equals_one_process(nilered, tmp_path, dask_address):
    from stainfree import api
    from stainfree.io.readers import read_image

    image, bundles = nilered
    result = api.segment_job(
        image, bundles, tmp_path / "job", scheduler=dask_address, block_voxels=BLOCK_VOXELS, progress=False
    )
    assert result["blocks"].total == 4 and result["blocks"].computed == 4
    paths = api.segment(image, bundles, tmp_path / "one")
    one_masks, _ = read_image(paths["masks"])
    one_labels, _ = read_image(paths["labels"])
    masks, meta = read_image(result["masks"])
    assert meta.channel_names[7] == "lipid_droplet" and masks.shape == (15, 8, 96, 96)
    one = np.asarray(one_masks)
    assert 0.05 < one[7].mean() < 0.95  # the random nets' masks vary over the image
    assert np.array_equal(np.asarray(masks), one)
    assert np.array_equal(_zarr(result["masks"], "labels/compartments/0"), np.asarray(one_labels))
    job_shift = json.loads(result["alignment"].read_text())["red_onto_yellow_shift_px"]
    one_shift = json.loads(paths["alignment"].read_text())["red_onto_yellow_shift_px"]
    assert job_shift == one_shift and abs(job_shift[1]) > 0.3  # estimated on the whole (small) image
    again = api.segment_job(
        image, bundles, tmp_path / "job", scheduler=dask_address, block_voxels=BLOCK_VOXELS, progress=False
    )
    assert again["blocks"].computed == 0 and again["blocks"].skipped == 4
    # the CLI: --scheduler with --block-voxels segments the one image as blocks
    from typer.testing import CliRunner

    from stainfree.cli import app

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
    cli = CliRunner().invoke(app, [*args, "--block-voxels", str(BLOCK_VOXELS)])
    assert cli.exit_code == 0, cli.output
    assert "blocks: 4 computed, 0 already done, of 4" in cli.output
    assert np.array_equal(_zarr(tmp_path / "cli" / "cell" / "cell_masks.ome.zarr"), one)


def test_interrupted_segment_run_resumes(nilered, tmp_path, monkeypatch):
    from stainfree.execute import segment_blocks as blocks
    from stainfree.execute.blocks import working_path
    from stainfree.execute.cluster import open_client
    from stainfree.execute.segment_blocks import segment_blocks
    from stainfree.workflows.execute import _bundle_paths

    image, bundles = nilered
    paths = _bundle_paths(bundles)
    out = tmp_path / "seg"
    kw = {"name": "cell", "max_block_voxels": BLOCK_VOXELS}
    with open_client(None, None) as client:  # in-process
        first = segment_blocks(client, paths, image, out, max_blocks=3, **kw)  # an interrupted run
        assert first["masks"] is None and first["blocks"].computed == 3
        assert (
            len(list((working_path(out / "cell_masks.ome.zarr") / ".stainfree-run" / "done").glob("*"))) == 3
        )
        with monkeypatch.context() as m:  # the whole-image numbers are kept with the run, not recomputed
            m.setattr(blocks, "_segment_inputs", lambda *a, **k: pytest.fail("inputs recomputed"))
            rest = segment_blocks(client, paths, image, out, **kw)
        assert rest["blocks"].computed == 1 and rest["blocks"].skipped == 3
        resumed = _zarr(rest["masks"])
        fresh = segment_blocks(client, paths, image, tmp_path / "fresh", **kw)
        assert fresh["blocks"].computed == 4
        assert np.array_equal(resumed, _zarr(fresh["masks"]))
        # another threshold is another run: every block again, other masks
        other = segment_blocks(client, paths, image, out, threshold=0.3, **kw)
        assert other["blocks"].computed == 4
        assert _zarr(other["masks"])[7].sum() > resumed[7].sum()


def test_bundles_of_different_tiles_segment_as_blocks(tmp_path, dask_address, constant_bundle):
    """Bundles whose plans differ (tile, divisor, halo) share one block grid, each with its own windows:
    masks and label map equal single-process api.segment."""
    from stainfree import api
    from stainfree.execute.blocks import bundle_plan
    from stainfree.execute.cluster import cached_bundle
    from stainfree.inference.predict import default_bundle_roi
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_zarr
    from stainfree.workflows.execute import _bundle_paths

    rng = np.random.default_rng(4)
    shape = (8, 100, 100)
    yellow = 100 + 600 * rng.random(shape)
    img = np.stack([yellow, 0.7 * yellow + 3 * rng.random(shape)]).astype(np.float32)
    image = write_ome_zarr(tmp_path / "cell.ome.zarr", img, "CZYX", (0.5, 0.2, 0.2), ["yellow", "red"])
    d = tmp_path / "bundles"
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [0.0], (32, 32), seed=1, depth=1)
    constant_bundle(d, "MITO", "binary", ["mitochondria"], [0.0], (32, 32), seed=2, depth=3)
    plans = []
    for b in _bundle_paths(d):
        cfg = cached_bundle(b).config
        plans.append(bundle_plan(cfg, (2, *shape), 2, default_bundle_roi(cfg), 0.25, BLOCK_VOXELS))
    assert plans[0].roi != plans[1].roi and plans[0].divisor != plans[1].divisor  # refused before
    result = api.segment_job(
        image, d, tmp_path / "job", scheduler=dask_address, block_voxels=BLOCK_VOXELS, progress=False
    )
    assert result["blocks"].total > 1
    one = api.segment(image, d, tmp_path / "one")
    masks = np.asarray(read_image(one["masks"])[0])
    assert masks[7].any() and masks[MITO].any()
    assert np.array_equal(_zarr(result["masks"]), masks)
    assert np.array_equal(
        _zarr(result["masks"], "labels/compartments/0"), np.asarray(read_image(one["labels"])[0])
    )
