"""CLI: stainfree make-masks, segment (fake bundles with known outputs), train-catalog errors."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from typer.testing import CliRunner

from stainfree.cli import app

runner = CliRunner()


def test_make_masks_cli(tmp_path):
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    g = np.zeros((48, 48), np.float32)
    g[12, 12] = g[35, 30] = 1
    g = ndimage.gaussian_filter(g, 2) * 500 + 5
    y = np.full_like(g, 20.0)
    write_ome_tiff(
        tmp_path / "in" / "a.ome.tif",
        np.stack([y, y, g])[:, None],
        "CZYX",
        channel_names=["yellow", "red", "gfp"],
    )
    res = runner.invoke(
        app, ["make-masks", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--bleed", "0.05"]
    )
    assert res.exit_code == 0, res.output
    mask, _ = read_image(tmp_path / "out" / "a_mask.ome.tif")
    assert ndimage.label(mask)[1] == 2
    bad = runner.invoke(
        app, ["make-masks", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--method", "x"]
    )
    assert bad.exit_code == 2 and "error:" in bad.output
    missing = runner.invoke(app, ["make-masks", str(tmp_path / "nope"), "--out", str(tmp_path / "o3")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_segment_cli_writes_three_files(tmp_path, constant_bundle):
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff
    from stainfree.types import COMPARTMENTS, compartment_id

    bdir = tmp_path / "bundles"
    constant_bundle(bdir, "PERO", "binary", ["peroxisome"], [8.0])
    constant_bundle(bdir, "PM", "multiclass", ["background", "plasma_membrane", "filopodia"], [0.0, 0.0, 6.0])
    img = (np.random.default_rng(0).random((2, 2, 24, 20)) * 50 + 5).astype(np.float32)
    src = write_ome_tiff(tmp_path / "nr.ome.tif", img, "CZYX", channel_names=["yellow", "red"])
    res = runner.invoke(app, ["segment", str(src), "--bundles", str(bdir), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "overlay" in res.output
    masks, meta = read_image(tmp_path / "out" / "nr_masks.ome.tif")
    assert meta.channel_names == COMPARTMENTS and masks.shape == (15, 2, 24, 20)
    assert masks[compartment_id("filopodia") - 1].all() and masks[compartment_id("peroxisome") - 1].all()
    labels, _ = read_image(tmp_path / "out" / "nr_labels.ome.tif")
    assert (np.asarray(labels) == compartment_id("peroxisome")).all()
    assert (tmp_path / "out" / "nr_overlay.png").stat().st_size > 1000
    # test-time augmentation of constant networks changes nothing
    res = runner.invoke(
        app, ["segment", str(src), "--bundles", str(bdir), "--out", str(tmp_path / "tta"), "--tta"]
    )
    assert res.exit_code == 0, res.output
    tta_masks, _ = read_image(tmp_path / "tta" / "nr_masks.ome.tif")
    assert np.array_equal(np.asarray(tta_masks), np.asarray(masks))


def test_segment_cli_bad_bundles_is_one_line_error(tmp_path):
    from stainfree.io.writers import write_ome_tiff

    src = write_ome_tiff(tmp_path / "nr.ome.tif", np.ones((2, 1, 8, 8), np.float32), "CZYX")
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app, ["segment", str(src), "--bundles", str(tmp_path / "empty"), "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "no model bundles" in res.output


def test_train_catalog_cli_unknown_structure(tmp_path):
    res = runner.invoke(app, ["train-catalog", str(tmp_path), "--out", str(tmp_path / "o"), "-s", "unicorn"])
    assert res.exit_code == 2 and "unknown" in res.output
