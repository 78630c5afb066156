"""napari reader and sample data: layer types, names, physical scale and the catalog colours.

The layer-data tuples need numpy only; adding them to a viewer needs the napari extra.
"""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.types import COMPARTMENTS, compartment_id


@pytest.fixture()
def seg_out(tmp_path, seg_bundles):
    """A segment output folder (masks, label map, OME-Zarr, overlay) and a quantify output beside it."""
    from stainfree.api import quantify, segment
    from stainfree.config import QuantifyConfig
    from stainfree.io.writers import write_ome_tiff

    img = (np.random.default_rng(0).random((2, 2, 24, 20)) * 50 + 5).astype(np.float32)
    src = write_ome_tiff(
        tmp_path / "nr.ome.tif", img, "CZYX", voxel_size_um=(0.5, 0.1, 0.1), channel_names=["yellow", "red"]
    )
    paths = segment(src, seg_bundles, tmp_path / "seg", alignment="none")
    quantify(paths["labels"], tmp_path / "quant", config=QuantifyConfig(figures=False))
    return tmp_path


def test_reader_claims_only_stainfree_outputs(tmp_path, seg_out):
    from stainfree.napari._reader import get_reader

    assert get_reader(str(seg_out / "seg" / "nr_labels.ome.tif")) is not None
    assert get_reader(str(seg_out / "seg")) is not None
    assert get_reader(str(seg_out / "quant" / "objects.csv")) is not None
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert get_reader(str(tmp_path / "other.csv")) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_label_map_and_masks_as_labels_with_catalog_colours(seg_out):
    from stainfree.api import compartment_colors
    from stainfree.napari._reader import get_reader

    path = str(seg_out / "seg" / "nr_labels.ome.tif")
    [(data, meta, kind)] = get_reader(path)(path)
    assert kind == "labels" and meta["name"] == "nr_labels"
    assert meta["scale"] == pytest.approx((0.5, 0.1, 0.1))
    pero = compartment_id("peroxisome")
    assert (np.asarray(data) == pero).all()
    rgb = compartment_colors()["peroxisome"]
    assert meta["colormap"][pero] == pytest.approx((*(c / 255 for c in rgb), 1.0))
    assert meta["colormap"][0][3] == 0  # background transparent

    path = str(seg_out / "seg" / "nr_masks.ome.tif")
    layers = get_reader(path)(path)
    assert {m["name"] for _, m, _ in layers} == {"nr_masks [peroxisome]", "nr_masks [filopodia]"}
    assert {k for _, _, k in layers} == {"labels"}


def test_folder_gives_every_output_and_ngff_labels(seg_out):
    from stainfree.napari._reader import get_reader

    folder = str(seg_out / "seg")
    layers = get_reader(folder)(folder)
    names = [m["name"] for _, m, _ in layers]
    assert "nr_labels" in names and "nr [compartments]" in names and "nr" in names
    kinds = {m["name"] if isinstance(m["name"], str) else m["name"][0]: k for _, m, k in layers}
    assert kinds["nr [compartments]"] == "labels" and kinds["nr"] == "image"


def test_objects_table_as_points_coloured_by_class(seg_out):
    from stainfree.napari._layers import compartment_rgba
    from stainfree.napari._reader import get_reader

    path = str(seg_out / "quant" / "objects.csv")
    [(coords, meta, kind)] = get_reader(path)(path)
    assert kind == "points" and coords.shape[1] == 3
    features = meta["features"]
    assert len(features) == len(coords) and "structure" in features
    first = features["structure"].iloc[0]
    assert tuple(meta["face_color"][0][:3]) == pytest.approx(compartment_rgba()[first][:3])


def test_prediction_channels_named_and_scaled(tmp_path):
    from stainfree.io.writers import write_ome_tiff
    from stainfree.napari._reader import get_reader

    arr = np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)
    path = str(write_ome_tiff(tmp_path / "p.ome.tif", arr, "CZYX", (0.29, 0.108, 0.108), ["dna", "membrane"]))
    [(data, meta, kind)] = get_reader(path)(path)
    assert kind == "image" and meta["channel_axis"] == 0
    assert meta["name"] == ["p [dna]", "p [membrane]"]
    assert meta["scale"] == pytest.approx((0.29, 0.108, 0.108))


def test_sample_data_is_a_digital_cell():
    from stainfree.napari._sample import digital_cell

    layers = digital_cell()
    by_kind = {k: m for _, m, k in layers}
    assert set(by_kind) == {"image", "labels"}
    names = [n for _, m, _ in layers for n in ([m["name"]] if isinstance(m["name"], str) else m["name"])]
    assert names == ["brightfield", "nilered [yellow]", "nilered [red]", "labels"]
    labels = layers[-1][0]
    assert {compartment_id("nucleus"), compartment_id("cytosol")} <= set(np.unique(labels).tolist())
    assert by_kind["labels"]["scale"][1] < 1.0  # micrometres, not pixels
    assert len(COMPARTMENTS) == 15


def test_reader_layers_open_in_napari(seg_out, viewer):
    from stainfree.napari._reader import get_reader

    folder = str(seg_out / "seg")
    for data, meta, kind in get_reader(folder)(folder):
        getattr(viewer, f"add_{kind}")(data, **meta)
    path = str(seg_out / "quant" / "objects.csv")
    for data, meta, kind in get_reader(path)(path):
        getattr(viewer, f"add_{kind}")(data, **meta)
    labels = viewer.layers["nr_labels"]
    assert type(labels).__name__ == "Labels"
    assert tuple(labels.scale) == pytest.approx((0.5, 0.1, 0.1))
    pero = compartment_id("peroxisome")
    assert labels.get_color(pero)[:3] == pytest.approx(np.array([0, 220, 0]) / 255, abs=1e-3)
    assert type(viewer.layers["objects"]).__name__ == "Points"
    assert "structure" in viewer.layers["objects"].features
