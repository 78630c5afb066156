"""Per-group statistics: voxel-wise distances to the own nucleus and the coverslip, the groups table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.quantify.groups import (
    assign_groups,
    cell_groups_from_field,
    distance_summary,
    group_table,
    order_groups,
    voxel_distances,
)
from stainfree.quantify.maps import build_object_map

VOX = (0.5, 0.25, 0.25)


def _field():
    """Two cells side by side; cell 1 has a nucleus, cell 2 (in 'metaphase') none; one mitochondrion each."""
    shape = (8, 20, 40)
    cells = np.zeros(shape, np.uint16)
    cells[1:7, 2:18, 2:19] = 1
    cells[1:7, 2:18, 21:38] = 2
    nucleus = np.zeros(shape, bool)
    nucleus[2:5, 6:10, 6:10] = True
    mito = np.zeros(shape, bool)
    mito[3, 8, 14:17] = True  # 4..6 voxels (1.0..1.5 um) right of the nucleus' last column x=9, plane 3
    mito[1, 8, 25:28] = True  # in cell 2, on the cell's lowest plane
    omap = build_object_map({"nucleus": nucleus, "mitochondria": mito}, min_size=1)
    return omap, cells


def test_voxel_distances_to_own_nucleus_and_coverslip():
    omap, cells = _field()
    hist = voxel_distances(omap, cells, VOX, {1: "interphase", 2: "metaphase"}, group_by="phase")
    assert set(hist.columns) == {
        "frame",
        "phase",
        "structure",
        "quantity",
        "bin_lo_um",
        "bin_hi_um",
        "voxels",
    }
    m1 = hist[(hist["phase"] == "interphase") & (hist["structure"] == "mitochondria")]
    d = m1[m1["quantity"] == "nucleus_distance"]
    # voxels at x = 14, 15, 16: 5, 6, 7 columns from x = 9 -> 1.25, 1.5, 1.75 um
    assert d["voxels"].sum() == 3
    assert sorted(d["bin_lo_um"].round(2)) == [1.2, 1.5, 1.7]
    h = m1[m1["quantity"] == "height"]
    assert h["bin_lo_um"].round(2).tolist() == [1.0] and h["voxels"].sum() == 3  # plane 3 - plane 1 = 1 um
    nuc = hist[(hist["structure"] == "nucleus") & (hist["quantity"] == "nucleus_distance")]
    assert nuc["bin_lo_um"].tolist() == [0.0] and nuc["voxels"].sum() == 48  # inside: exactly 0
    m2 = hist[(hist["phase"] == "metaphase") & (hist["structure"] == "mitochondria")]
    assert set(m2["quantity"]) == {"height", "no_nucleus"}
    assert m2.loc[m2["quantity"] == "no_nucleus", "voxels"].sum() == 3
    assert m2.loc[m2["quantity"] == "height", "bin_lo_um"].tolist() == [0.0]

    summ = distance_summary(hist, group_by="phase")
    row = summ[(summ["phase"] == "interphase") & (summ["structure"] == "mitochondria")]
    row = row[row["quantity"] == "nucleus_distance"].iloc[0]
    assert 1.2 <= row["median_um"] <= 1.6 and row["q05_um"] <= row["median_um"] <= row["q95_um"]
    meta = summ[(summ["phase"] == "metaphase") & (summ["quantity"] == "nucleus_distance")]
    assert meta["voxels"].sum() == 0 and meta["no_nucleus_voxels"].sum() == 3
    inside = (summ["structure"] == "nucleus") & (summ["quantity"] == "nucleus_distance")
    assert summ.loc[inside, "median_um"].max() < 1e-3


def test_group_table_counts_per_cell():
    objects = pd.DataFrame(
        {
            "frame": 0,
            "structure": ["golgi"] * 5 + ["nucleus"],
            "cell_id": [1, 2, 2, 3, 3, 1],
            "volume_um3": [0.4, 0.1, 0.1, 0.05, 0.15, 30.0],
            "sphericity": 0.8,
            "mean_ratio": 1.0,
            "nucleus_distance_um": 1.0,
            "height_um": 2.0,
        }
    )
    cells = pd.DataFrame(
        {
            "frame": 0,
            "cell_id": [1, 1, 2, 3],
            "structure": ["golgi", "nucleus", "golgi", "golgi"],
            "total_volume_um3": [0.4, 30.0, 0.2, 0.2],
            "cell_volume_um3": [100.0, 100.0, 100.0, 300.0],
        }
    )
    groups = {1: "interphase", 2: "metaphase", 3: "metaphase"}
    objects = assign_groups(objects, groups, "phase")
    cells = assign_groups(cells, groups, "phase")
    table = group_table(objects, cells, group_by="phase").set_index(["phase", "structure"])
    assert table.loc[("interphase", "golgi"), "objects_per_cell"] == 1.0
    assert table.loc[("metaphase", "golgi"), "objects_per_cell"] == 2.0
    assert table.loc[("metaphase", "golgi"), "cells"] == 2
    assert table.loc[("metaphase", "golgi"), "mean_volume_um3"] == pytest.approx(0.1)
    assert table.loc[("metaphase", "golgi"), "volume_per_cell_um3"] == pytest.approx(0.2)
    assert table.loc[("metaphase", "golgi"), "volume_fraction"] == pytest.approx(0.4 / 400)
    assert table.loc[("interphase", "nucleus"), "volume_per_cell_um3"] == 30.0
    assert list(table.index.get_level_values(0).unique()) == ["interphase", "metaphase"]


def test_groups_from_field_json_and_order():
    meta = {"cells": [{"cell": 1, "phase": "telophase"}, {"cell": 2, "phase": "prophase"}], "mitosis": {}}
    assert cell_groups_from_field(meta, "phase") == {1: "telophase", 2: "prophase"}
    assert cell_groups_from_field({"cells": [{"cell": 1}]}, "phase") == {1: "interphase"}
    assert cell_groups_from_field({"cells": [{"cell": 1}]}, "condition") is None
    assert order_groups(["b", "metaphase", "a", "interphase", None]) == ["interphase", "metaphase", "a", "b"]
