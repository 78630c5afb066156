"""Time-lapse segmentation: frame by frame, outputs with a T axis, equal to segmenting each frame alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stainfree.errors import InputError
from stainfree.io.writers import write_ome_tiff
from stainfree.types import COMPARTMENTS, ImageMeta

pytest.importorskip("torch")

VOX = (0.5, 0.2, 0.2)


@pytest.fixture()
def bundles(tmp_path):
    from fakes import random_nilered_bundle

    d = tmp_path / "bundles"
    random_nilered_bundle(d, "MITO", "binary", ["mitochondria"], seed=1)
    random_nilered_bundle(d, "LD", "binary", ["lipid_droplet"], seed=2)
    return d


def series(t_n=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((t_n, 2, 2, 24, 32)) * 100 + 10).astype(np.float32)


def test_series_frames_equal_single_frames_and_outputs_have_t(tmp_path, bundles):
    from stainfree import api
    from stainfree.io.readers import read_image

    img = series()
    write_ome_tiff(tmp_path / "tl.ome.tif", img, "TCZYX", VOX, ["yellow", "red"])
    paths = api.segment(tmp_path / "tl.ome.tif", bundles, tmp_path / "seg")
    masks, meta = read_image(paths["masks"])
    labels, _ = read_image(paths["labels"])
    assert masks.shape == (3, 15, 2, 24, 32) and meta.axes == "TCZYX"
    assert list(meta.channel_names) == list(COMPARTMENTS) and meta.voxel_size_um == pytest.approx(VOX)
    assert labels.shape == (3, 2, 24, 32)
    zarr_masks, zmeta = read_image(paths["masks_zarr"])
    assert np.array_equal(np.asarray(zarr_masks), masks) and zmeta.axes == "TCZYX"
    # frame 2 of the series equals segmenting frame 2 alone
    write_ome_tiff(tmp_path / "f2.ome.tif", img[2], "CZYX", VOX, ["yellow", "red"])
    alone = api.segment(tmp_path / "f2.ome.tif", bundles, tmp_path / "seg2")
    m2, _ = read_image(alone["masks"])
    l2, _ = read_image(alone["labels"])
    assert np.array_equal(masks[2], m2) and np.array_equal(labels[2], l2)
    assert masks[:, COMPARTMENTS.index("mitochondria")].any()
    record = json.loads(paths["alignment"].read_text())
    assert record["frames"] == 3 and len(record["red_onto_yellow_shift_px"]) == 3
    assert paths["overlay"].stat().st_size > 1000
    # quantify takes the output folder directly: a time-lapse with tracks and events
    from stainfree.config import QuantifyConfig

    cfg = QuantifyConfig(figures=False, derive_cells=False)
    tables = api.quantify(tmp_path / "seg", None, config=cfg)
    assert sorted(tables["objects"]["frame"].unique()) == [0, 1, 2]
    assert {"track_events", "event_rates", "contact_events"} <= set(tables)


def test_nan_frame_is_one_line_naming_the_time_point(tmp_path, bundles):
    from stainfree import api

    img = series()
    img[1, 0, 1, 5, 5] = np.nan
    write_ome_tiff(tmp_path / "tl.ome.tif", img, "TCZYX", VOX, ["yellow", "red"])
    with pytest.raises(InputError, match="time point 1") as err:
        api.segment(tmp_path / "tl.ome.tif", bundles, tmp_path / "seg")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "seg").glob("*.ome.*"))  # nothing half-written


def test_reads_and_writes_interleave(bundles):
    from stainfree.inference.segment import find_bundles
    from stainfree.inference.segment_series import segment_series

    img = series(t_n=4)
    log = []

    def read(t):
        log.append(("read", t))
        return img[t]

    def write(t, frame, masks, labels):
        log.append(("write", t))
        assert masks.shape == (15, 2, 24, 32) and labels.shape == (2, 24, 32)

    meta = ImageMeta(axes="CZYX", shape=img.shape[1:], dtype="float32", channel_names=("yellow", "red"))
    segment_series(find_bundles(bundles), read, 4, meta, write)
    assert log == [(k, t) for t in range(4) for k in ("read", "write")]  # one frame in memory at a time


def test_timelapse_workflow_returns_tables_and_figures(tmp_path, bundles):
    from stainfree import api

    write_ome_tiff(tmp_path / "tl.ome.tif", series(t_n=3), "TCZYX", VOX, ["yellow", "red"])
    res = api.timelapse(tmp_path / "tl.ome.tif", bundles, tmp_path / "run")
    assert res["segmentation"]["masks"].is_file()
    assert {"track_events", "event_rates", "contact_events", "objects"} <= set(res["tables"])
    assert "event_rates.png" in res["figures"] and res["figures"]["event_rates.png"].is_file()
    assert (tmp_path / "run" / "tracks" / "track_events.csv").is_file()
