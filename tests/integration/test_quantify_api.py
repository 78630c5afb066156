"""api.quantify on files: simulator field folders, mask stacks, label maps, time-lapses; outputs on disk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stainfree import api
from stainfree.config import QuantifyConfig
from stainfree.errors import InputError
from stainfree.io.writers import write_ome_tiff
from stainfree.types import COMPARTMENTS, compartment_id

VOX = (0.3, 0.1, 0.1)


def small_field():
    """Label map, instance stack and cell map of a 2-cell field with 3 lysosomes and 2 lipid droplets."""
    lab = np.full((10, 40, 80), compartment_id("extracellular"), np.uint8)
    cells = np.zeros(lab.shape, np.uint16)
    for k, x0 in enumerate((4, 44), start=1):
        lab[1:9, 4:36, x0 : x0 + 32] = compartment_id("cytosol")
        cells[1:9, 4:36, x0 : x0 + 32] = k
        lab[3:7, 12:28, x0 + 8 : x0 + 24] = compartment_id("nucleus")
    inst = np.zeros((len(COMPARTMENTS), *lab.shape), np.uint32)
    for i, (y, x) in enumerate([(6, 8), (30, 30), (6, 60)], start=1):
        lab[4:7, y : y + 3, x : x + 3] = compartment_id("lysosome")
        inst[COMPARTMENTS.index("lysosome"), 4:7, y : y + 3, x : x + 3] = 10 + i
    for i, (y, x) in enumerate([(30, 8), (30, 70)], start=1):
        lab[2:5, y : y + 4, x : x + 4] = compartment_id("lipid_droplet")
        inst[COMPARTMENTS.index("lipid_droplet"), 2:5, y : y + 4, x : x + 4] = i
    for name in ("extracellular", "cytosol", "nucleus"):
        cid = compartment_id(name)
        comp = COMPARTMENTS.index(name)
        if name == "nucleus":
            inst[comp][(lab == cid) & (cells == 1)] = 1
            inst[comp][(lab == cid) & (cells == 2)] = 2
        elif name == "cytosol":
            inst[comp][(lab == cid) & (cells == 1)] = 1
            inst[comp][(lab == cid) & (cells == 2)] = 2
        else:
            inst[comp][lab == cid] = 1
    return lab, inst, cells


def write_field(folder, lab, inst, cells):
    folder.mkdir()
    write_ome_tiff(folder / "labels.ome.tif", lab, "ZYX", voxel_size_um=VOX)
    write_ome_tiff(folder / "instances.ome.tif", inst, "CZYX", voxel_size_um=VOX, channel_names=COMPARTMENTS)
    write_ome_tiff(folder / "cells.ome.tif", cells, "ZYX", voxel_size_um=VOX)
    # a camera offset of 100 counts in both channels; the droplets emit 100 yellow and 20 red above it
    yellow = np.where(lab == compartment_id("lipid_droplet"), 200.0, 100.0).astype(np.float32)
    red = np.where(lab == compartment_id("lipid_droplet"), 120.0, 100.0).astype(np.float32)
    write_ome_tiff(folder / "nilered.ome.tif", np.stack([yellow, red]), "CZYX", voxel_size_um=VOX,
                   channel_names=["yellow", "red"])  # fmt: skip
    (folder / "field.json").write_text(json.dumps({"voxel_size_um": list(VOX), "objects": []}))


def test_field_folder_uses_instances_cells_nilered_and_voxel_size(tmp_path):
    lab, inst, cells = small_field()
    write_field(tmp_path / "field_000", lab, inst, cells)
    tables = api.quantify(tmp_path / "field_000", tmp_path / "out")
    obj = tables["objects"]
    counts = obj["structure"].value_counts()
    assert counts["lysosome"] == 3 and counts["lipid_droplet"] == 2 and counts["nucleus"] == 2
    assert sorted(obj.loc[obj["structure"] == "lysosome", "object_id"]) == [11, 12, 13]
    lyso = obj[obj["structure"] == "lysosome"]
    assert np.allclose(lyso["volume_um3"], 27 * 0.3 * 0.1 * 0.1)
    ld = obj[obj["structure"] == "lipid_droplet"]
    assert np.allclose(ld["mean_ratio"], 20 / 100, rtol=1e-3)
    assert set(ld["cell_id"]) == {1, 2}
    meta = json.loads((tmp_path / "out" / "quantify.json").read_text())
    assert meta["voxel_size_um"] == list(VOX) and meta["kind"] == "instances"
    for name in (
        "objects",
        "structures",
        "cells",
        "contacts",
        "contact_matrix",
        "contact_events",
        "timeseries",
    ):
        assert (tmp_path / "out" / f"{name}.csv").is_file()
        back = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        assert list(back.columns) == [str(c) for c in tables[name].columns]
    for png in ("volume_count.png", "sphericity_ratio.png", "contact_matrix.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    cs = tables["cells"].set_index(["cell_id", "structure"])
    assert cs.loc[(1, "lysosome"), "count"] + cs.loc[(2, "lysosome"), "count"] == 3
    st = tables["structures"].set_index("structure")
    assert st["volume_fraction"].sum() == pytest.approx(1.0)  # every cell voxel belongs to one structure
    assert st.loc["extracellular", "volume_fraction"] == 0


def test_label_map_file_and_mask_stack_agree(tmp_path):
    lab, _, _ = small_field()
    write_ome_tiff(tmp_path / "labels.ome.tif", lab, "ZYX", voxel_size_um=VOX)
    masks = np.stack([(lab == i + 1).astype(np.uint8) for i in range(len(COMPARTMENTS))])
    write_ome_tiff(
        tmp_path / "seg_masks.ome.tif", masks, "CZYX", voxel_size_um=VOX, channel_names=COMPARTMENTS
    )
    cfg = QuantifyConfig(figures=False)
    a = api.quantify(tmp_path / "labels.ome.tif", None, config=cfg)
    b = api.quantify(tmp_path / "seg_masks.ome.tif", None, config=cfg)
    cols = ["structure", "n_voxels", "volume_um3", "surface_um2"]
    pd.testing.assert_frame_equal(
        a["objects"][cols].reset_index(drop=True), b["objects"][cols].reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(a["contacts"], b["contacts"])
    # the label map's own voxel size was used
    assert a["objects"]["volume_um3"].sum() == pytest.approx(lab.size * 0.003)


def test_time_lapse_label_map_gives_tracks_and_events(tmp_path):
    t_n = 5
    lab = np.full((t_n, 8, 24, 40), compartment_id("cytosol"), np.uint8)
    lab[:, 2:6, 8:16, 26:34] = compartment_id("golgi")
    for t in range(t_n):
        x = 14 + 2 * t  # a 4-voxel cube sliding to the golgi, touching it in frame 4 (x + 4 == 26)
        lab[t, 3:5, 10:14, x : x + 4] = compartment_id("lysosome")
    write_ome_tiff(tmp_path / "tl.ome.tif", lab, "TZYX", voxel_size_um=(0.5, 0.1, 0.1))
    cfg = QuantifyConfig(frame_interval_s=3.0, figures=True, min_size_voxels=5)
    tables = api.quantify(tmp_path / "tl.ome.tif", tmp_path / "out", config=cfg)
    lyso = tables["objects"][tables["objects"]["structure"] == "lysosome"]
    assert len(lyso) == t_n and lyso["track_id"].nunique() == 1
    ev = tables["contact_events"]
    ev = ev[(ev["structure_a"] == "golgi") & (ev["structure_b"] == "lysosome")]
    assert len(ev) == 1
    assert (ev["start_frame"].iloc[0], ev["end_frame"].iloc[0]) == (4, 4)
    assert ev["duration_s"].iloc[0] == pytest.approx(3.0)
    assert (tmp_path / "out" / "contacts_over_time.png").is_file()
    ts = tables["timeseries"]
    assert list(ts.loc[ts["structure"] == "lysosome", "time_s"]) == [0.0, 3.0, 6.0, 9.0, 12.0]


def test_bad_inputs_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="0..15"):
        api.quantify(np.full((4, 8, 8), 20, np.uint8), None, voxel_size_um=VOX)
    lab, _, _ = small_field()
    with pytest.raises(InputError, match="does not match"):
        api.quantify(lab, None, intensity=np.ones((10, 40, 81)), voxel_size_um=VOX)
    with pytest.raises(InputError, match="not found"):
        api.quantify(tmp_path / "missing.ome.tif", None)
    # a label map with custom names
    small = np.zeros((6, 10, 10), np.uint8)
    small[1:4, 1:4, 1:4] = 1
    small[1:4, 5:9, 5:9] = 2
    t = api.quantify(small, None, names=["spots", "blobs"], voxel_size_um=(1, 1, 1))
    assert list(t["objects"]["structure"]) == ["spots", "blobs"]


def test_simulator_field_counts_and_volumes_equal_its_object_list(tmp_path):
    simulate = pytest.importorskip("stainfree.simulate")
    from stainfree.config import SimulationConfig

    cfg = SimulationConfig(shape=(16, 96, 96), n_fields=1, cells_per_field=(1, 1), seed=3)
    simulate.write_dataset(cfg, tmp_path / "sim")
    folder = tmp_path / "sim" / "field_000"
    tables = api.quantify(folder, None, config=QuantifyConfig(min_size_voxels=1, figures=False))
    meta = json.loads((folder / "field.json").read_text())
    listed = pd.DataFrame([o for o in meta["objects"] if o["t"] == 0])
    obj = tables["objects"]
    got = obj.groupby("structure").size()
    want = listed.groupby("class").size()
    assert got.to_dict() == want.to_dict()
    merged = obj.merge(
        listed, left_on=["structure", "object_id"], right_on=["class", "instance"], suffixes=("", "_sim")
    )
    assert len(merged) == len(obj)
    assert (merged["n_voxels"] == merged["volume_voxels"]).all()
    assert np.allclose(merged["volume_um3"], merged["volume_um3_sim"], atol=1e-4)
    inside = merged[merged["class"] != "extracellular"]
    assert (inside["cell_id"] == inside["cell"]).mean() > 0.95
    lds = obj[obj["structure"] == "lipid_droplet"]
    assert lds["mean_ratio"].notna().all()  # the folder's nilered.ome.tif was used


def test_real_stardist_nuclei_instance_map(shared_data):
    path = shared_data / "nuclei_3d" / "mask3d.tif"
    import tifffile

    truth = tifffile.imread(path)
    ids, sizes = np.unique(truth[truth > 0], return_counts=True)
    tables = api.quantify(path, None, kind="instances", names=["nucleus"], voxel_size_um=(1.0, 1.0, 1.0))
    obj = tables["objects"]
    assert sorted(obj["object_id"]) == sorted(ids[sizes >= 10].tolist())
    assert obj["n_voxels"].sum() == sizes[sizes >= 10].sum()
    assert ((obj["sphericity"] > 0.5) & (obj["sphericity"] <= 1)).all()


def test_data_set_manifest_stacks_fields(tmp_path):
    lab, inst, cells = small_field()
    root = tmp_path / "ds"
    rows = []
    for k in range(2):
        folder = root / f"field_{k:03d}"
        folder.mkdir(parents=True)
        field_lab = (
            lab
            if k == 0
            else np.where(lab == compartment_id("lipid_droplet"), compartment_id("cytosol"), lab)
        )
        write_ome_tiff(folder / "labels.ome.tif", field_lab.astype(np.uint8), "ZYX", voxel_size_um=VOX)
        rows.append({"field": folder.name, "labels": f"{folder.name}/labels.ome.tif", "split": "train"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    tables = api.quantify(root, tmp_path / "out", config=QuantifyConfig(figures=False))
    obj = tables["objects"]
    assert list(obj.columns[:2]) == ["field", "frame"]
    lds = obj[obj["structure"] == "lipid_droplet"].groupby("field").size()
    assert lds.to_dict() == {"field_000": 2}
    assert set(tables["contacts"]["field"]) == {"field_000", "field_001"}
    meta = json.loads((tmp_path / "out" / "quantify.json").read_text())
    assert [f["field"] for f in meta["fields"]] == ["field_000", "field_001"]


def test_nilered_channels_are_aligned_before_the_ratio_and_the_shift_is_recorded(tmp_path):
    from scipy import ndimage

    lab, inst, cells = small_field()
    rng = np.random.default_rng(0)
    yellow = (100 + 50 * ndimage.gaussian_filter(rng.random(lab.shape), 1.5)).astype(np.float32)
    yellow[lab == compartment_id("lipid_droplet")] += 100
    red = ndimage.shift(0.8 * yellow, (0.0, 1.0, -1.5), order=3, mode="nearest").astype(np.float32)
    nile = np.stack([yellow, red])
    out = tmp_path / "q"
    api.quantify(lab, out, nilered=nile, voxel_size_um=VOX, kind="labels")
    meta = json.loads((out / "quantify.json").read_text())
    shift = meta["nilered_channel_shift_px"][0]
    assert np.allclose(shift, [0.0, -1.0, 1.5], atol=0.15)  # red moved back onto yellow
    api.quantify(lab, tmp_path / "n", nilered=nile, voxel_size_um=VOX, kind="labels",
                 config=QuantifyConfig(channel_alignment="none"))  # fmt: skip
    meta_n = json.loads((tmp_path / "n" / "quantify.json").read_text())
    shift_n = meta_n["nilered_channel_shift_px"][0]
    assert shift_n == [0.0, 0.0, 0.0]
