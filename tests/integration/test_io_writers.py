"""Writers: deterministic OME-TIFF, chunk-wise OME-Zarr with atomic rename, tables, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from stainfree.errors import InputError
from stainfree.io.readers import read_image
from stainfree.io.writers import (
    create_ome_zarr,
    write_json,
    write_ome_tiff,
    write_ome_zarr,
    write_png,
    write_table,
)


def test_write_ome_tiff_twice_gives_identical_bytes(tmp_path: Path) -> None:
    a = np.random.default_rng(3).integers(0, 255, (2, 4, 16, 16)).astype(np.uint8)
    args = ("CZYX", (0.4, 0.1, 0.1), ["yellow", "red"])
    first = write_ome_tiff(tmp_path / "a.ome.tif", a, *args).read_bytes()
    second = write_ome_tiff(tmp_path / "b.ome.tif", a, *args).read_bytes()
    assert first == second
    b = a.copy()
    b[0, 0, 0, 0] += 1
    other = write_ome_tiff(tmp_path / "c.ome.tif", b, *args)
    with tifffile.TiffFile(other) as tif, tifffile.TiffFile(tmp_path / "a.ome.tif") as ref:
        assert 'UUID="urn:uuid:' in tif.ome_metadata
        assert tif.ome_metadata != ref.ome_metadata  # a different image gets a different UUID
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_ome_tiff_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "keep.ome.tif", np.ones((4, 4), np.uint8), "YX")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_ome_tiff(path, np.ones((4, 4), np.uint8), "ZYX")
    with pytest.raises(ValueError):  # fails inside tifffile, after the temporary file was opened
        write_ome_tiff(path, np.ones((4, 4), np.uint8), "YX", compression="no-such-codec")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.ome.tif"]


def test_create_ome_zarr_block_by_block(tmp_path: Path) -> None:
    a = np.random.default_rng(0).random((3, 50, 40)).astype(np.float32)
    path = tmp_path / "pred.ome.zarr"
    writer = create_ome_zarr(
        path, a.shape, a.dtype, "ZYX", (1.0, 0.3, 0.3), ["dna"], chunks=(1, 16, 16), n_scales=2
    )
    assert not path.exists()  # nothing at the destination until finalize
    for z in range(a.shape[0]):
        for y0 in range(0, 50, 16):
            writer.array[z, y0 : y0 + 16] = a[z, y0 : y0 + 16]
    assert writer.finalize() == path
    b, m = read_image(path)
    np.testing.assert_array_equal(a, b)
    assert m.voxel_size_um == pytest.approx((1.0, 0.3, 0.3)) and m.channel_names == ("dna",)
    assert not list(tmp_path.glob(".*.tmp"))


def test_create_ome_zarr_abort_leaves_previous_store(tmp_path: Path) -> None:
    path = write_ome_zarr(tmp_path / "x.ome.zarr", np.full((8, 8), 3, np.uint8), "YX")
    with pytest.raises(RuntimeError, match="boom"):
        with create_ome_zarr(path, (8, 8), "uint8", "YX") as writer:
            writer[...] = np.zeros((8, 8), np.uint8)
            raise RuntimeError("boom")
    b, _ = read_image(path)
    assert int(b.min()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]


def test_write_ome_zarr_from_dask_and_unknown_voxel_size(tmp_path: Path) -> None:
    a = np.arange(2 * 30 * 20, dtype=np.uint16).reshape(2, 30, 20)
    path = write_ome_zarr(
        tmp_path / "d.ome.zarr", da.from_array(a, chunks=(1, 7, 7)), "CYX", ngff_version="0.5"
    )
    b, m = read_image(path)
    np.testing.assert_array_equal(a, b)
    assert m.voxel_size_um == (None, None, None) and m.channel_names == ("ch0", "ch1")
    with pytest.raises(ValueError, match="channel names"):
        write_ome_zarr(tmp_path / "e.ome.zarr", a, "CYX", channel_names=["one"])
    with pytest.raises(ValueError, match="subsequence"):
        write_ome_zarr(tmp_path / "e.ome.zarr", a, "YXC")


def test_ome_zarr_is_valid_ngff(tmp_path: Path) -> None:
    import zarr
    from ome_zarr_models.v04 import Image as Image04
    from ome_zarr_models.v05 import Image as Image05

    a = np.zeros((2, 3, 16, 16), np.uint16)
    p4 = write_ome_zarr(tmp_path / "a4.ome.zarr", a, "TZYX", (2.0, 0.5, 0.5), n_scales=2, ngff_version="0.4")
    p5 = write_ome_zarr(tmp_path / "a5.ome.zarr", a, "TZYX", (2.0, 0.5, 0.5), n_scales=2, ngff_version="0.5")
    Image04.from_zarr(zarr.open_group(str(p4), mode="r"))
    Image05.from_zarr(zarr.open_group(str(p5), mode="r"))
    attrs = json.loads((p5 / "zarr.json").read_text())["attributes"]["ome"]
    assert attrs["version"] == "0.5"
    scales = [d["coordinateTransformations"][0]["scale"] for d in attrs["multiscales"][0]["datasets"]]
    assert scales == [[1.0, 2.0, 0.5, 0.5], [1.0, 2.0, 1.0, 1.0]]


def test_write_table_csv_and_parquet(tmp_path: Path) -> None:
    df = pd.DataFrame({"field": ["field_000", "field_001"], "pearson": [0.91, 0.87]})
    csv = write_table(tmp_path / "t.csv", df)
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)
    parquet = write_table(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), df)
    with pytest.raises(InputError, match="t.xlsx: unsupported table format"):
        write_table(tmp_path / "t.xlsx", df)


def test_write_json_converts_numpy_and_sorts_keys(tmp_path: Path) -> None:
    obj = {"b": np.float32(0.5), "a": np.arange(3), "c": {"n": np.int64(7), "p": tmp_path / "x"}}
    path = write_json(tmp_path / "x.json", obj)
    text = path.read_text()
    assert json.loads(text) == {"a": [0, 1, 2], "b": 0.5, "c": {"n": 7, "p": str(tmp_path / "x")}}
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n") and '\n  "a"' in text
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_write_png_gray_and_rgb(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = np.stack([gray, gray + 1, gray + 2], axis=-1)
    np.testing.assert_array_equal(np.asarray(Image.open(write_png(tmp_path / "g.png", gray))), gray)
    np.testing.assert_array_equal(np.asarray(Image.open(write_png(tmp_path / "c.png", rgb))), rgb)
    with pytest.raises(ValueError):
        write_png(tmp_path / "f.png", gray.astype(np.float32))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_metadata_validates_against_the_ngff_models(tmp_path, version):
    import zarr

    from stainfree.io.writers import create_ome_zarr

    models = __import__(f"ome_zarr_models.v0{version[-1]}.image", fromlist=["Image"])
    label_models = __import__(f"ome_zarr_models.v0{version[-1]}.image_label", fromlist=["ImageLabel"])
    img = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    labels = (img[0] % 3).astype(np.uint8)
    with create_ome_zarr(
        tmp_path / "a.ome.zarr",
        img.shape,
        img.dtype,
        "CZYX",
        (1.0, 0.2, 0.2),
        ["dna", "membrane"],
        n_scales=2,
        ngff_version=version,
    ) as w:
        w.array[...] = img
        with pytest.raises(ValueError, match="same label values"):
            w.add_labels("bad", labels, colors={1: (255, 0, 0, 255)}, properties={1: "cell", 2: "other"})
        w.add_labels(
            "cells", labels, colors={1: (255, 0, 0, 255), 2: (0, 0, 255, 255)}, properties={1: "a", 2: "b"}
        )
    root = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="r")
    image = models.Image.from_zarr(root)
    attrs = getattr(image.attributes, "ome", image.attributes)  # 0.5 nests them under 'ome'
    ms = attrs.multiscales[0]
    assert [a.name for a in ms.axes] == ["c", "z", "y", "x"] and len(ms.datasets) == 2
    assert ms.datasets[1].coordinateTransformations[0].scale == [1.0, 1.0, 0.4, 0.4]
    label = label_models.ImageLabel.from_zarr(root["labels"]["cells"])
    label_attrs = getattr(label.attributes, "ome", label.attributes)
    assert [c.label_value for c in label_attrs.image_label.colors] == [1, 2]
    assert np.array_equal(np.asarray(root["labels"]["cells"]["1"]), labels[..., ::2, ::2])
