"""Contacts between structures: exact shared faces, shares, object pairs, distance mode, matrix."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.quantify.contacts import CONTACT_COLUMNS, contact_matrix, measure_contacts
from stainfree.quantify.objects import build_object_map


def two_boxes(gap: int = 0):
    a = np.zeros((10, 12, 16), bool)
    b = np.zeros_like(a)
    a[2:6, 3:8, 2:7] = True  # 4 x 5 x 5
    b[2:6, 3:8, 7 + gap : 11 + gap] = True  # touches a along x when gap == 0: face of 4 (z) x 5 (y) voxels
    return a, b


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.2, 0.1)])
def test_touching_boxes_give_exactly_the_shared_face(spacing):
    vz, vy, vx = spacing
    a, b = two_boxes()
    contacts, pairs = measure_contacts(build_object_map({"er": a, "mitochondria": b}), spacing)
    assert list(contacts.columns) == list(CONTACT_COLUMNS)
    row = contacts.set_index(["structure_a", "structure_b"]).loc[("er", "mitochondria")]
    face = 4 * 5 * vz * vy
    assert row["contact_area_um2"] == pytest.approx(face)
    exposed = 2 * (4 * 5 * vz * vy + 4 * 5 * vz * vx + 5 * 5 * vy * vx)
    assert row["contact_area_fraction"] == pytest.approx(face / exposed)
    assert row["contact_voxels"] == 20
    assert row["contact_volume_um3"] == pytest.approx(20 * vz * vy * vx)
    assert row["contact_volume_fraction"] == pytest.approx(20 / 100)
    assert row["n_object_pairs"] == 1 and row["n_objects_a_in_contact"] == 1
    back = contacts.set_index(["structure_a", "structure_b"]).loc[("mitochondria", "er")]
    assert back["contact_area_um2"] == pytest.approx(face)
    assert back["contact_volume_fraction"] == pytest.approx(20 / 80)
    assert len(pairs) == 1 and pairs["contact_area_um2"].iloc[0] == pytest.approx(face)


def test_separated_boxes_have_no_contact_unless_within_distance():
    a, b = two_boxes(gap=2)  # two empty voxels between them (x spacing 0.1 -> centres 0.3 um apart)
    omap = build_object_map({"er": a, "mitochondria": b})
    adj, _ = measure_contacts(omap, (0.5, 0.2, 0.1))
    assert adj["contact_area_um2"].sum() == 0 and adj["n_object_pairs"].sum() == 0
    near, pairs = measure_contacts(omap, (0.5, 0.2, 0.1), distance_um=0.35)
    row = near.set_index(["structure_a", "structure_b"]).loc[("er", "mitochondria")]
    assert row["contact_voxels"] == 20  # only the facing layer is within 0.3 um
    assert row["n_object_pairs"] == 1
    # the facing face: the gap in front of it (0.2 um) is within 0.35 um
    assert row["contact_area_um2"] >= 4 * 5 * 0.5 * 0.2 - 1e-9
    assert len(pairs) == 1
    far, _ = measure_contacts(omap, (0.5, 0.2, 0.1), distance_um=0.25)
    assert far.set_index(["structure_a", "structure_b"]).loc[("er", "mitochondria"), "contact_voxels"] == 0


def test_object_pair_counts_and_same_structure_contacts():
    m = np.zeros((4, 10, 20), np.uint16)
    m[1:3, 2:6, 2:6] = 1
    m[1:3, 2:6, 6:10] = 2  # touches instance 1
    m[1:3, 2:6, 14:18] = 3  # alone
    e = np.zeros_like(m)
    e[1:3, 6:8, 2:18] = 1  # one ER sheet touching all three
    omap = build_object_map({"mitochondria": m, "er": e}, instances=True, min_size=1)
    contacts, pairs = measure_contacts(omap, (1, 1, 1))
    c = contacts.set_index(["structure_a", "structure_b"])
    assert c.loc[("mitochondria", "er"), "n_object_pairs"] == 3
    assert c.loc[("mitochondria", "er"), "n_objects_a_in_contact"] == 3
    assert c.loc[("er", "mitochondria"), "n_objects_a_in_contact"] == 1
    assert c.loc[("mitochondria", "mitochondria"), "n_object_pairs"] == 1
    assert c.loc[("mitochondria", "mitochondria"), "contact_area_um2"] == pytest.approx(2 * 8)  # both sides
    same = pairs[(pairs["structure_a"] == "mitochondria") & (pairs["structure_b"] == "mitochondria")]
    assert len(same) == 1 and same["contact_area_um2"].iloc[0] == pytest.approx(8)


def test_overlapping_masks_count_as_contact_volume():
    a = np.zeros((4, 8, 8), bool)
    b = np.zeros_like(a)
    a[1:3, 1:5, 1:5] = True
    b[1:3, 3:7, 3:7] = True  # 2 x 2 x 2 overlap
    contacts, _ = measure_contacts(build_object_map({"er": a, "golgi": b}), (1, 1, 1))
    row = contacts.set_index(["structure_a", "structure_b"]).loc[("er", "golgi")]
    assert row["contact_voxels"] >= 8 and row["n_object_pairs"] == 1


def test_empty_field_and_matrix_shape():
    omap = build_object_map({"er": np.zeros((3, 5, 5), bool), "golgi": np.zeros((3, 5, 5), bool)})
    contacts, pairs = measure_contacts(omap, (1, 1, 1))
    assert len(contacts) == 4 and contacts["contact_voxels"].sum() == 0
    assert pairs.empty and "object_b" in pairs.columns
    wide = contact_matrix(contacts)
    assert list(wide.columns) == ["frame", "structure_a", "er", "golgi"]
