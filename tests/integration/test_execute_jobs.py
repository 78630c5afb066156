"""Plates, folders and globs as one job on a 2-process LocalCluster: mirrored outputs, a summary, resume,
and results equal to one process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _plate(path, fields):
    """A tiny NGFF 0.4 HCS plate: {"A/1/0": image (C, Z, Y, X), ...}."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    from stainfree.io.writers import write_ome_zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = sorted({k.rsplit("/", 1)[0] for k in fields})
    rows = sorted({w.split("/")[0] for w in wells})
    cols = sorted({w.split("/")[1] for w in wells})
    write_plate_metadata(root, rows, cols, wells, fmt=FormatV04())
    for well in wells:
        names = [k.rsplit("/", 1)[1] for k in fields if k.startswith(well + "/")]
        write_well_metadata(root.require_group(well), names, fmt=FormatV04())
        for name in names:
            write_ome_zarr(path / well / name, fields[f"{well}/{name}"], "CZYX")
    return path


def _image(seed, shape=(1, 4, 32, 32)):
    return (np.random.default_rng(seed).random(shape) * 500 + 20).astype(np.uint16)


def test_plate_is_mirrored_with_a_summary(tmp_path, dask_address):
    import zarr

    from fakes import random_bundle
    from stainfree import api
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.io.readers import read_image

    bundle = random_bundle(tmp_path)
    fields = {"A/1/0": _image(1), "A/1/1": _image(2), "B/3/0": _image(3)}
    plate = _plate(tmp_path / "plate.ome.zarr", fields)
    out = tmp_path / "pred.ome.zarr"
    result = api.predict_job(
        bundle, plate, out, scheduler=dask_address, tile=[4, 32, 32], progress=False, bf16=False
    )
    table = pd.read_csv(result["summary"])
    assert table["position"].tolist() == ["A/1/0", "A/1/1", "B/3/0"]
    assert (table["status"] == "done").all()
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()["ome"]
    assert attrs["version"] == "0.5"
    assert [w["path"] for w in attrs["plate"]["wells"]] == ["A/1", "B/3"]
    for key, img in fields.items():
        pred, meta = read_image(out / key)
        ref, _ = predict_with_bundle(bundle, img, None, roi_size=(4, 32, 32))
        assert np.abs(np.asarray(pred) - ref[0]).max() <= 1e-5
    again = api.predict_job(
        bundle, plate, out, scheduler=dask_address, tile=[4, 32, 32], progress=False, bf16=False
    )
    assert (again["table"]["status"] == "skipped").all()


def test_folder_with_a_bad_file_fails_only_that_position(tmp_path, dask_address):
    from fakes import random_bundle
    from stainfree import api
    from stainfree.io.writers import write_ome_tiff

    bundle = random_bundle(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        write_ome_tiff(folder / f"field{i}.ome.tif", _image(i), "CZYX")
    (folder / "broken.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    result = api.predict_job(
        bundle, folder, out, scheduler=dask_address, tile=[4, 32, 32], progress=False, bf16=False
    )
    table = result["table"].set_index("position")
    assert table.loc["broken", "status"] == "failed" and "broken.tif" in table.loc["broken", "reason"]
    assert (table.loc[["field0", "field1"], "status"] == "done").all()
    assert (out / "field0.ome.tif").is_file() and not (out / "broken.ome.tif").exists()
    # the rerun skips the finished positions and tries the failed one again
    again = api.predict_job(
        bundle, str(folder / "*.tif"), out, scheduler=dask_address, tile=[4, 32, 32], bf16=False
    )
    assert again["table"].set_index("position")["status"].to_dict() == {
        "broken": "failed",
        "field0": "skipped",
        "field1": "skipped",
    }


def test_folder_job_with_tta_equals_one_process(tmp_path):
    from fakes import random_bundle
    from stainfree import api
    from stainfree.errors import InputError
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    bundle = random_bundle(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    img = _image(5)
    write_ome_tiff(folder / "field.ome.tif", img, "CZYX")
    out = tmp_path / "out"
    kw = {"tile": [4, 32, 32], "progress": False, "bf16": False}
    result = api.predict_job(bundle, folder, out, tta=True, uncertainty=True, **kw)  # in-process
    assert (result["table"]["status"] == "done").all()
    pred, meta = read_image(out / "field.ome.tif")
    ref, ref_meta = predict_with_bundle(bundle, img, None, roi_size=(4, 32, 32), tta=True, uncertainty=True)
    assert meta.channel_names == ref_meta.channel_names and len(meta.channel_names) == 2
    assert np.abs(np.asarray(pred) - ref).max() <= 1e-5
    with pytest.raises(InputError, match="add tta"):
        api.predict_job(bundle, folder, out, uncertainty=True, **kw)


@pytest.fixture()
def seg_bundles(tmp_path, constant_bundle):
    d = tmp_path / "bundles"
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [0.0], (32, 32), seed=1)
    constant_bundle(
        d, "VOLUME", "multiclass", ["nucleus", "cytosol", "extracellular"], [0.0, 0.2, 0.0], seed=2
    )
    return d


def test_segment_and_quantify_folder_jobs_equal_one_process(tmp_path, dask_address, seg_bundles):
    from stainfree import api
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    folder = tmp_path / "nilered"
    folder.mkdir()
    for i in range(2):
        img = (np.random.default_rng(10 + i).random((2, 3, 40, 48)) * 100 + 10).astype(np.float32)
        write_ome_tiff(folder / f"cell{i}.ome.tif", img, "CZYX", channel_names=["yellow", "red"])
    seg = api.segment_job(folder, seg_bundles, tmp_path / "seg", scheduler=dask_address, progress=False)
    assert (seg["table"]["status"] == "done").all()
    quant = api.quantify_job(tmp_path / "seg", tmp_path / "quant", scheduler=dask_address, progress=False)
    assert quant["table"]["position"].tolist() == ["cell0", "cell1"]
    assert (quant["table"]["status"] == "done").all()
    for i in range(2):
        single = tmp_path / f"single{i}"
        paths = api.segment(folder / f"cell{i}.ome.tif", seg_bundles, single)
        job_masks, _ = read_image(tmp_path / "seg" / f"cell{i}" / paths["masks"].name)
        one_masks, _ = read_image(paths["masks"])
        assert np.asarray(one_masks).any() and not np.asarray(one_masks).all()
        assert np.array_equal(np.asarray(job_masks), np.asarray(one_masks))
        tables = api.quantify(paths["masks"], tmp_path / f"q{i}")
        for name in ("objects", "structures"):
            job_table = pd.read_csv(tmp_path / "quant" / f"cell{i}" / f"{name}.csv")
            one_table = pd.read_csv(tmp_path / f"q{i}" / f"{name}.csv")
            pd.testing.assert_frame_equal(job_table, one_table)
        assert len(tables["objects"]) > 0
