"""Writing simulated data sets: byte-identical reruns, the documented layout, time-lapses, OME-Zarr."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from stainfree import api
from stainfree.config import SimulationConfig
from stainfree.errors import ConfigError
from stainfree.simulate import simulate_field, write_dataset
from stainfree.types import COMPARTMENTS, compartment_id

TINY = {"shape": (12, 64, 64), "voxel_size_um": (0.4, 0.25, 0.25), "n_fields": 2, "seed": 5}


def test_same_seed_gives_byte_identical_files(tmp_path):
    cfg = SimulationConfig(gfp_structure="lysosome", **TINY)
    a = write_dataset(cfg, tmp_path / "a").parent
    b = write_dataset(cfg, tmp_path / "b").parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 + 2 * 8
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = write_dataset(cfg.model_copy(update={"seed": 6}), tmp_path / "c").parent
    assert (a / "field_000/labels.ome.tif").read_bytes() != (c / "field_000/labels.ome.tif").read_bytes()


def test_layout_manifest_and_field_json(tmp_path):
    manifest = api.simulate(tmp_path / "sim", SimulationConfig(**TINY), n_fields=3)
    df = pd.read_csv(manifest)
    images = ["brightfield", "fluorescence", "fluorescence_clean", "nilered", "labels", "instances", "cells"]
    assert list(df.columns) == ["field", *images, "json", "split"]
    assert df["split"].tolist() == ["train", "train", "val"]
    root = manifest.parent
    sim_json = json.loads((root / "simulation.json").read_text())
    assert sim_json["config"]["n_fields"] == 3 and sim_json["label_priority"][0] == "extracellular"
    row = df.iloc[0]
    with tifffile.TiffFile(root / row["fluorescence"]) as tf:
        assert tf.series[0].axes == "CZYX"
        fl = tf.asarray()
        assert "dna" in tf.ome_metadata and 'PhysicalSizeZ="0.4"' in tf.ome_metadata
    assert fl.shape == (4, 12, 64, 64) and fl.dtype == np.uint16
    labels = tifffile.imread(root / row["labels"])
    inst = tifffile.imread(root / row["instances"])
    cells = tifffile.imread(root / row["cells"])
    assert labels.dtype == np.uint8 and inst.dtype == np.uint32 and cells.dtype == np.uint16
    assert inst.shape == (15, 12, 64, 64) and cells.shape == labels.shape
    assert tifffile.imread(root / row["nilered"]).shape == (2, 12, 64, 64)
    assert tifffile.imread(root / row["brightfield"]).shape == (12, 64, 64)
    meta = json.loads((root / row["json"]).read_text())
    for key in ("voxel_size_um", "microscope", "noise_model", "fluorescence", "nilered", "objects"):
        assert key in meta
    assert set(meta["fluorescence"]["targets"]) == {"dna", "membrane", "mitochondria", "er"}
    for o in meta["objects"]:
        c = compartment_id(o["class"])
        assert int((inst[c - 1] == o["instance"]).sum()) == o["volume_voxels"]
    assert sum(o["volume_voxels"] for o in meta["objects"]) == labels.size


def test_time_lapse_objects_move_and_counts_stay(tmp_path):
    # objects may be hidden (occluded by a higher-priority organelle) in some frames; ids are stable tracks
    cfg = SimulationConfig(
        n_frames=4, diffusion_um2_s=0.05, directed_speed_um_s=0.3, **{**TINY, "cells_per_field": (1, 1)}
    )
    sim = simulate_field(cfg, 0)
    assert sim.labels.shape == (4, 12, 64, 64) and sim.instances.shape == (4, 15, 12, 64, 64)
    assert sim.brightfield.shape == (4, 12, 64, 64) and sim.fluorescence.shape[:2] == (4, 4)
    assert sim.axes("labels") == "TZYX" and sim.axes("cells") == "ZYX"
    moving = [compartment_id(c) for c in ("lysosome", "early_endosome", "mitochondria", "lipid_droplet")]
    changed = np.isin(sim.labels[0], moving) != np.isin(sim.labels[-1], moving)
    assert changed.sum() > 20
    objs = sim.metadata["objects"]
    for cls in COMPARTMENTS:
        per_t = [sum(1 for o in objs if o["t"] == t and o["class"] == cls) for t in range(4)]
        assert max(per_t) - min(per_t) <= max(2, 0.15 * max(per_t)), (cls, per_t)
    # instance ids are tracks: the same lysosome keeps its id and moves
    lys = [o for o in objs if o["class"] == "lysosome" and o["instance"] == 1]
    assert len(lys) >= 3
    c0, c1 = np.array(lys[0]["centroid_zyx_um"]), np.array(lys[-1]["centroid_zyx_um"])
    assert np.linalg.norm(c1 - c0) > 0.0
    static = compartment_id("nucleus")
    assert all(np.array_equal(sim.labels[t] == static, sim.labels[0] == static) for t in range(4))
    for t in range(4):
        for c in range(15):
            assert np.array_equal(sim.instances[t, c] > 0, sim.labels[t] == c + 1)
    manifest = write_dataset(cfg.model_copy(update={"n_fields": 1}), tmp_path / "tl")
    assert tifffile.imread(manifest.parent / "field_000" / "labels.ome.tif").shape == (4, 12, 64, 64)


def test_ome_zarr_output(tmp_path):
    from stainfree.io.readers import read_image

    manifest = write_dataset(SimulationConfig(output_format="ome-zarr", **{**TINY, "n_fields": 1}), tmp_path)
    row = pd.read_csv(manifest).iloc[0]
    assert row["labels"].endswith(".ome.zarr")
    arr, meta = read_image(manifest.parent / row["nilered"])
    assert meta.axes == "CZYX" and meta.channel_names == ("yellow", "red")
    assert tuple(arr.shape) == (2, 12, 64, 64)


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="shape"):
        api.simulate(tmp_path, shape=(2, 8, 8))
    with pytest.raises(ConfigError, match="target"):
        api.simulate(tmp_path, targets=["golgi", "tubulin"])
    with pytest.raises(ConfigError):
        api.simulate(tmp_path, microscope="lightsheet")


def test_preview_montage(tmp_path):
    import imageio.v3 as iio

    from stainfree.simulate.preview import focal_plane, save_montage

    sim = simulate_field(SimulationConfig(gfp_structure="er", **TINY), 0)
    nuc = sim.labels == compartment_id("nucleus")
    assert nuc[focal_plane(sim)].any()
    png = save_montage(sim, tmp_path / "montage.png", dpi=30)
    img = iio.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    assert img[..., :3].std() > 10
