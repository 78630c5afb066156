"""Objects: connected components, volumes, surfaces, sphericity, distances, summaries (pure numpy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stainfree.errors import InputError
from stainfree.quantify.objects import (
    OBJECT_COLUMNS,
    build_object_map,
    cell_structure_volumes,
    cell_summary,
    cell_volumes,
    derive_cells,
    label_components,
    measure_objects,
    object_map_from_label_map,
    structure_summary,
)
from stainfree.types import COMPARTMENTS, compartment_id


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    """Voxelised ellipsoid/sphere of physical radius (scalar or per axis) on a grid of ``spacing``."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r = np.broadcast_to(np.asarray(radius, dtype=float), (3,))
    d = sum(((g - c) * sp / rr) ** 2 for g, c, sp, rr in zip(grids, centre, spacing, r, strict=True))
    return d <= 1.0


def synthetic_field(rng: np.random.Generator):
    """A simulator-like label map with a known object list (class, volume in voxels)."""
    lab = np.full((24, 96, 96), compartment_id("extracellular"), dtype=np.uint8)
    lab[2:22, 8:88, 8:88] = compartment_id("cytosol")
    lab[ball(lab.shape, (12, 48, 48), (6, 14, 14))] = compartment_id("nucleus")
    known = []
    free = np.zeros(lab.shape, bool)
    free[3:21, 10:86, 10:86] = True
    free &= lab == compartment_id("cytosol")
    classes = ["mitochondria", "lysosome", "lipid_droplet", "peroxisome"]
    placed = 0
    while placed < 16:
        c = classes[placed % 4]
        r = int(rng.integers(2, 4))
        centre = (int(rng.integers(5, 19)), int(rng.integers(12, 84)), int(rng.integers(12, 84)))
        obj = ball(lab.shape, centre, r)
        grown = ball(lab.shape, centre, r + 1.8)  # keep a gap: objects never touch
        if not np.all(free[grown]):
            continue
        lab[obj] = compartment_id(c)
        free[grown] = False
        known.append((c, int(obj.sum())))
        placed += 1
    return lab, known


def test_label_components_min_size_and_connectivity():
    m = np.zeros((5, 5, 5), bool)
    m[1, 1, 1] = m[2, 2, 2] = True  # corner neighbours
    m[4, 0:4, 0:4] = True  # 16 voxels
    lab26, n26 = label_components(m, connectivity=3, min_size=1)
    lab6, n6 = label_components(m, connectivity=1, min_size=1)
    assert (n26, n6) == (2, 3)
    lab, n = label_components(m, connectivity=3, min_size=10)
    assert n == 1 and lab.max() == 1 and (lab > 0).sum() == 16


def test_counts_and_volumes_match_known_objects():
    lab, known = synthetic_field(np.random.default_rng(0))
    omap = object_map_from_label_map(lab, COMPARTMENTS, min_size=1)
    df = measure_objects(omap, (0.3, 0.1, 0.1))
    assert list(df.columns) == list(OBJECT_COLUMNS)
    expected = pd.Series([c for c, _ in known]).value_counts()
    got = df["structure"].value_counts()
    for c, n in expected.items():
        assert got[c] == n
    # volumes: voxel counts x voxel volume, exactly
    for c in expected.index:
        vols = sorted(v for k, v in known if k == c)
        assert sorted(df.loc[df["structure"] == c, "n_voxels"]) == vols
    big = df[df["n_voxels"] > 100]
    assert np.allclose(big["volume_um3"], big["n_voxels"] * 0.3 * 0.1 * 0.1, rtol=0.02)


def test_voxelised_box_volume_and_anisotropic_scaling():
    m = np.zeros((12, 20, 20), bool)
    m[1:11, 2:12, 3:13] = True  # 1000 voxels
    iso = measure_objects(build_object_map({"golgi": m}), (1.0, 1.0, 1.0))
    aniso = measure_objects(build_object_map({"golgi": m}), (0.5, 0.1, 0.1))
    assert iso["volume_um3"].iloc[0] == pytest.approx(1000.0)
    assert aniso["volume_um3"].iloc[0] == pytest.approx(1000 * 0.005)
    # centroid in micrometres, scaled per axis
    assert aniso["centroid_z_um"].iloc[0] == pytest.approx(5.5 * 0.5)
    assert aniso["centroid_x_um"].iloc[0] == pytest.approx(7.5 * 0.1)


def test_sphere_sphericity_close_to_one_and_ellipsoid_lower():
    sphere = ball((28, 28, 28), (14, 14, 14), 11)
    s = measure_objects(build_object_map({"lipid_droplet": sphere}), (1.0, 1.0, 1.0)).iloc[0]
    assert abs(s["sphericity"] - 1.0) < 0.05
    assert s["surface_um2"] == pytest.approx(4 * math.pi * 11**2, rel=0.05)
    assert s["elongation"] == pytest.approx(1.0, abs=0.05)
    ell = ball((60, 22, 22), (30, 11, 11), (24, 8, 8))  # 3:1 prolate
    e = measure_objects(build_object_map({"mitochondria": ell}), (1.0, 1.0, 1.0)).iloc[0]
    assert e["sphericity"] < 0.9
    assert e["sphericity"] == pytest.approx(0.846, abs=0.04)  # analytic value of a 3:1 prolate spheroid
    assert e["elongation"] == pytest.approx(3.0, rel=0.08)


def test_sphere_with_anisotropic_voxels_stays_spherical():
    spacing = (0.3, 0.1, 0.1)
    sphere = ball((20, 56, 56), (10, 28, 28), 2.4, spacing)  # radius 2.4 um = 24 xy voxels, 8 z voxels
    s = measure_objects(build_object_map({"lysosome": sphere}), spacing).iloc[0]
    assert abs(s["sphericity"] - 1.0) < 0.06
    assert s["volume_um3"] == pytest.approx(4 / 3 * math.pi * 2.4**3, rel=0.03)


def test_empty_mask_gives_empty_tables_with_columns():
    omap = build_object_map({"nucleus": np.zeros((4, 8, 8), bool), "er": np.zeros((4, 8, 8), bool)})
    df = measure_objects(omap, (1, 1, 1))
    assert df.empty and list(df.columns) == list(OBJECT_COLUMNS)
    summ = structure_summary(df, omap.names)
    assert list(summ["structure"]) == ["nucleus", "er"] and (summ["count"] == 0).all()
    assert cell_summary(df, pd.Series(dtype=float)).empty


def test_all_foreground_mask_is_one_object_with_defined_values():
    m = np.ones((6, 10, 10), bool)
    df = measure_objects(build_object_map({"cytosol": m}), (1.0, 1.0, 1.0))
    assert len(df) == 1
    row = df.iloc[0]
    assert row["n_voxels"] == 600 and row["volume_um3"] == 600
    for col in ("surface_um2", "sphericity", "elongation", "centroid_z_um"):
        assert np.isfinite(row[col])
    assert 0 < row["sphericity"] <= 1


def test_mismatched_intensity_shape_raises_input_error():
    omap = build_object_map({"er": np.ones((4, 8, 8), bool)})
    with pytest.raises(InputError, match="does not match"):
        measure_objects(omap, (1, 1, 1), intensity=np.ones((4, 8, 9)))
    with pytest.raises(InputError):
        build_object_map({"a": np.ones((4, 8, 8), bool), "b": np.ones((4, 8, 9), bool)})


def test_mean_intensity_ratio_and_nucleus_distance():
    lab = np.zeros((10, 30, 30), np.uint8)
    lab[2:8, 2:12, 2:12] = 1  # nucleus
    lab[4:6, 4:8, 17:21] = 9  # mitochondrion 5 voxels (x) right of the nucleus
    intensity = np.where(lab == 9, 7.0, 1.0)
    ratio = np.where(lab == 9, 0.5, 2.0)
    omap = object_map_from_label_map(lab, COMPARTMENTS, min_size=1)
    df = measure_objects(omap, (0.5, 0.2, 0.2), intensity=intensity, ratio=ratio).set_index("structure")
    mito = df.loc["mitochondria"]
    assert mito["mean_intensity"] == pytest.approx(7.0)
    assert mito["mean_ratio"] == pytest.approx(0.5)
    assert mito["nucleus_distance_um"] == pytest.approx(6 * 0.2)  # x 11 -> 17, centre to centre
    assert mito["nucleus_distance_signed_um"] > mito["nucleus_distance_um"]
    assert df.loc["nucleus", "nucleus_distance_um"] == 0
    assert df.loc["nucleus", "nucleus_distance_signed_um"] < 0


def test_instance_maps_keep_ids_and_min_size():
    inst = np.zeros((6, 20, 20), np.uint32)
    inst[1:4, 1:5, 1:5] = 7
    inst[1:4, 10:15, 10:15] = 42
    inst[5, 19, 19] = 3  # one voxel: dropped by min_size
    df = measure_objects(build_object_map({"lysosome": inst}, instances=True, min_size=10), (1, 1, 1))
    assert sorted(df["object_id"]) == [7, 42]
    assert dict(zip(df["object_id"], df["n_voxels"], strict=True)) == {7: 48, 42: 75}


def test_overlapping_masks_go_to_separate_layers():
    a = np.zeros((6, 12, 12), bool)
    b = np.zeros_like(a)
    a[1:5, 1:8, 1:8] = True
    b[1:5, 5:11, 5:11] = True  # overlaps a
    omap = build_object_map({"er": a, "mitochondria": b})
    assert len(omap.layers) == 2
    df = measure_objects(omap, (1, 1, 1))
    assert list(df["n_voxels"]) == [a.sum(), b.sum()]


def test_cells_height_and_cell_summary():
    lab = np.full((12, 40, 80), compartment_id("extracellular"), np.uint8)
    lab[2:10, 5:35, 5:75] = compartment_id("cytosol")  # one blob, two nuclei -> two cells
    lab[4:8, 12:28, 12:28] = compartment_id("nucleus")
    lab[4:8, 12:28, 52:68] = compartment_id("nucleus")
    lab[6:9, 30:33, 60:63] = compartment_id("lysosome")
    omap = object_map_from_label_map(lab, COMPARTMENTS, min_size=1)
    cells = derive_cells(omap, min_size=50)
    assert cells.max() == 2
    assert cells[5, 20, 20] != cells[5, 20, 60]
    df = measure_objects(omap, (0.5, 0.1, 0.1), cells=cells)
    lyso = df[df["structure"] == "lysosome"].iloc[0]
    assert lyso["cell_id"] == cells[5, 20, 60]
    assert lyso["bottom_um"] == pytest.approx((6 - 2) * 0.5)
    assert lyso["height_um"] == pytest.approx((7 - 2) * 0.5)
    vox = (0.5, 0.1, 0.1)
    cs = cell_summary(
        df, cell_volumes(cells, vox), structure_volumes=cell_structure_volumes(omap, cells, vox)
    )
    total = cs.groupby("cell_id")["volume_fraction"].sum()
    assert np.allclose(total.loc[[1, 2]], 1.0)  # nucleus + cytosol + lysosome fill each cell voxel-wise
    per = cs.set_index(["cell_id", "structure"])
    lyso_cell = int(lyso["cell_id"])
    assert per.loc[(lyso_cell, "lysosome"), "count"] == 1
    assert per.loc[(lyso_cell, "lysosome"), "total_volume_um3"] == pytest.approx(27 * 0.005)
    assert per.loc[(3 - lyso_cell, "nucleus"), "count"] == 1
