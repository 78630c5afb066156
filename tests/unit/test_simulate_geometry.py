"""Digital cell geometry: one compartment per voxel, exact instance maps and object lists, cells apart."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.config import SimulationConfig
from stainfree.simulate import PRIORITY, simulate_field
from stainfree.simulate.draw import Ellipsoid, Tube, ball_offsets, boundary, paint, segments_to_points
from stainfree.simulate.geometry import build_scene
from stainfree.types import COMPARTMENTS, compartment_id

SMALL = {"shape": (16, 96, 96), "voxel_size_um": (0.35, 0.2, 0.2), "n_fields": 1}


@pytest.fixture(scope="module")
def default_field():
    """One full-size field (32 x 256 x 256) with three cells."""
    return simulate_field(SimulationConfig(seed=7, cells_per_field=(3, 3)), 0)


@pytest.fixture(scope="module")
def small_fields():
    return [simulate_field(SimulationConfig(seed=s, cell_shape="mixed", **SMALL), 0) for s in range(3)]


def test_priority_lists_every_compartment_once():
    assert sorted(PRIORITY) == sorted(COMPARTMENTS)
    assert PRIORITY[0] == "extracellular" and PRIORITY[-1] == "filopodia"


def test_every_compartment_present_in_default_field(default_field):
    counts = np.bincount(default_field.labels.ravel(), minlength=16)
    assert counts[0] == 0, "every voxel has a compartment"
    missing = [c for c in COMPARTMENTS if counts[compartment_id(c)] == 0]
    assert missing == []
    assert default_field.labels.dtype == np.uint8
    assert default_field.metadata["n_cells"] == 3


def _check_consistent(sim):
    labels, inst = sim.labels, sim.instances
    assert inst.shape == (15, *labels.shape) and inst.dtype == np.uint32
    for c in range(15):
        assert np.array_equal(inst[c] > 0, labels == c + 1), COMPARTMENTS[c]
    # exactly one class per voxel: instance channels never overlap
    assert ((inst > 0).sum(axis=0) == 1).all()
    objs = sim.metadata["objects"]
    for c, cls in enumerate(COMPARTMENTS):
        ids, vols = np.unique(inst[c][inst[c] > 0], return_counts=True)
        listed = sorted((o["instance"], o["volume_voxels"]) for o in objs if o["class"] == cls)
        assert listed == list(zip(ids.tolist(), vols.tolist(), strict=True)), cls
        assert ids.tolist() == list(range(1, len(ids) + 1)), f"{cls} ids contiguous"


def test_labels_instances_objects_consistent(default_field, small_fields):
    _check_consistent(default_field)
    for sim in small_fields:
        _check_consistent(sim)


def test_objects_belong_to_their_cell(default_field):
    cells = default_field.cells
    inst = default_field.instances
    for o in default_field.metadata["objects"]:
        if o["class"] == "extracellular":
            assert o["cell"] == 0
            continue
        ids = np.unique(cells[inst[o["label"] - 1] == o["instance"]])
        assert ids.tolist() == [o["cell"]], o


def test_cells_do_not_overlap_and_have_one_nucleus(default_field):
    cells, labels, inst = default_field.cells, default_field.labels, default_field.instances
    assert cells.dtype == np.uint16
    assert set(np.unique(cells)) == {0, 1, 2, 3}
    nuc = compartment_id("nucleus")
    for k in (1, 2, 3):
        ids = np.unique(inst[nuc - 1][(cells == k) & (labels == nuc)])
        assert len(ids) == 1
    # organelles only inside cells, extracellular only outside
    assert (cells[labels == compartment_id("extracellular")] == 0).all()
    for cls in ("mitochondria", "lipid_droplet", "er", "lysosome", "golgi"):
        assert (cells[labels == compartment_id(cls)] > 0).all()
    # the plasma membrane separates touching cells: no 6-neighbour cytosol voxels of different cells
    cyto = np.where(labels == compartment_id("cytosol"), cells, 0)
    for ax in range(3):
        a = np.moveaxis(cyto, ax, 0)
        assert not ((a[1:] > 0) & (a[:-1] > 0) & (a[1:] != a[:-1])).any()


def test_vesicle_sizes_overlap_but_differ(default_field):
    objs = default_field.metadata["objects"]

    def med(cls):
        return np.median([o["volume_um3"] for o in objs if o["class"] == cls])

    assert med("peroxisome") < med("early_endosome") < med("late_endosome") < med("lipid_droplet")
    assert med("early_endosome") < med("lysosome")


def test_cell_shapes_differ():
    def measure(shape):
        scene = build_scene(np.random.default_rng(3), (32, 256, 256), (0.29, 0.108, 0.108), 1, shape)
        info = scene.cells_info[0]
        a, b = info["semi_axes_um"]
        return max(a, b) / min(a, b), info["height_um"], (scene.cells > 0).any(axis=0).sum()

    round_, elong, spread = measure("round"), measure("elongated"), measure("spread")
    assert elong[0] > 1.8 > round_[0]
    assert spread[1] < round_[1]  # flatter
    assert spread[2] > round_[2] * 0.9  # at least as large a footprint


def test_draw_helpers():
    vox = (0.3, 0.1, 0.1)
    labels = np.zeros((10, 40, 40), np.uint8)
    inst = np.zeros((10, 40, 40), np.uint32)
    n = paint(labels, inst, Ellipsoid(np.array([1.5, 2.0, 2.0]), np.array([0.6, 1.0, 1.0])), vox, 3, 7)
    expected = 4 / 3 * np.pi * 0.6 * 1.0 * 1.0 / (0.3 * 0.1 * 0.1)
    assert abs(n - expected) / expected < 0.1
    assert set(np.unique(inst)) == {0, 7}
    pts = segments_to_points(np.array([[1.5, 0.5, 0.5]]), np.array([[1.5, 0.5, 3.5]]), 0.05)
    clip = np.zeros_like(inst)
    n2 = paint(labels, inst, Tube(pts, 0.1), vox, 4, 1, clip=clip, clip_value=1)
    assert n2 == 0, "clip blocks painting"
    assert (ball_offsets(0.05, vox) == 0).all()
    ids = np.zeros((3, 5, 5), np.uint16)
    ids[:, 1:4, 1:4] = 1
    b = boundary(ids)
    assert b.sum() == 26 and not b[1, 2, 2]  # a 3x3x3 block: every voxel but the centre is on the surface
