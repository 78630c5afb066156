"""segment(): tiny fake bundles with known outputs -> 15 named masks, label map by priority, overlay."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.types import COMPARTMENTS, compartment_id


@pytest.fixture()
def bundles(tmp_path, constant_bundle):
    d = tmp_path / "bundles"
    patch = (32, 32)
    constant_bundle(d, "LD", "binary", ["lipid_droplet"], [10.0], patch)
    constant_bundle(d, "MITO", "binary", ["mitochondria"], [-10.0], patch)
    constant_bundle(
        d, "VOLUME", "multiclass", ["nucleus", "cytosol", "extracellular"], [0.0, 5.0, 0.0], patch
    )
    constant_bundle(
        d,
        "ER",
        "multiclass",
        ["background", "er", "nuclear_membrane", "nuclear_reticulum"],
        [0.0, 0.0, 5.0, 0.0],
        patch,
    )
    return d


def _image(shape=(2, 3, 40, 48)):
    rng = np.random.default_rng(0)
    return (rng.random(shape) * 100 + 10).astype(np.float32)


def test_segment_masks_and_priority(bundles):
    from stainfree.inference.segment import segment
    from stainfree.types import ImageMeta

    img = _image()
    meta = ImageMeta(axes="CZYX", shape=img.shape, dtype="float32", channel_names=("yellow", "red"))
    masks, labels = segment(bundles, img, meta)
    assert masks.shape == (15, 3, 40, 48) and masks.dtype == np.uint8
    assert labels.shape == (3, 40, 48)
    on = {c for i, c in enumerate(COMPARTMENTS) if masks[i].any()}
    assert on == {"lipid_droplet", "cytosol", "nuclear_membrane"}
    assert masks[compartment_id("lipid_droplet") - 1].all()
    # lipid droplets outrank the nuclear membrane, which outranks the cytosol
    assert (labels == compartment_id("lipid_droplet")).all()


def test_label_map_priority_order():
    from stainfree.inference.segment import label_map_from_masks

    m = np.zeros((15, 4), np.uint8)
    m[compartment_id("cytosol") - 1] = 1
    m[compartment_id("mitochondria") - 1, 1:] = 1
    m[compartment_id("lipid_droplet") - 1, 2:] = 1
    labels = label_map_from_masks(m)
    assert labels.tolist() == [
        compartment_id("cytosol"),
        compartment_id("mitochondria"),
        compartment_id("lipid_droplet"),
        compartment_id("lipid_droplet"),
    ]


def test_api_segment_writes_named_channels_label_map_and_png(bundles, tmp_path):
    from stainfree import api
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_ome_tiff

    img = _image()
    src = write_ome_tiff(
        tmp_path / "cell.ome.tif", img, "CZYX", voxel_size_um=(0.5, 0.1, 0.1), channel_names=["yellow", "red"]
    )
    paths = api.segment(src, bundles, tmp_path / "out")
    masks, meta = read_image(paths["masks"])
    assert meta.channel_names == COMPARTMENTS
    assert masks.shape == (15, 3, 40, 48)
    labels, lmeta = read_image(paths["labels"])
    assert labels.shape == (3, 40, 48) and int(labels.max()) == compartment_id("lipid_droplet")
    assert lmeta.voxel_size_um[1] == pytest.approx(0.1)
    png = paths["overlay"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the same label map as an NGFF label image (validated with the NGFF models; ome-zarr's reader, which
    # napari-ome-zarr uses, finds it as a label layer with the compartment colours)
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel

    from stainfree.inference.segment import COMPARTMENT_COLORS

    root = zarr.open_group(str(paths["ngff"]), mode="r")
    image = Image.from_zarr(root)
    assert [a.name for a in image.attributes.multiscales[0].axes] == ["z", "y", "x"]
    label = ImageLabel.from_zarr(root["labels"]["compartments"])
    meta_label = label.attributes.image_label
    colors = {c.label_value: tuple(c.rgba) for c in meta_label.colors}
    mito = compartment_id("mitochondria")
    assert colors[mito] == (*COMPARTMENT_COLORS["mitochondria"], 255)
    assert np.array_equal(np.asarray(root["labels"]["compartments"]["0"]), labels)
    nodes = list(Reader(parse_url(str(paths["ngff"])))())
    assert any(isinstance(spec, Label) for n in nodes for spec in n.specs)
    # the red-onto-yellow shift used for the written intensity is recorded with the outputs
    import json

    rec = json.loads(paths["alignment"].read_text())
    assert len(rec["red_onto_yellow_shift_px"]) == 3 and rec["alignment"] == "auto"


def test_catalog_networks_align_the_nile_red_channels_and_bundles_record_it(tmp_path):
    from stainfree.catalog import load_catalog
    from stainfree.workflows.organelles import catalog_training_job

    net = load_catalog().networks[0]
    job = catalog_training_job(net, tmp_path / "m.csv", tmp_path / "run")
    assert job.data.channel_alignment == "auto"
    fixed = catalog_training_job(net, tmp_path / "m.csv", tmp_path / "run", channel_alignment=(0.0, 0.5, 0.5))
    assert fixed.data.channel_alignment == (0.0, 0.5, 0.5)
