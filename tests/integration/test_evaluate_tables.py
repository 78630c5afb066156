"""evaluate_regression / evaluate_segmentation tables, api.evaluate for segmentation, and the figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.evaluate import figures
from stainfree.evaluate.evaluate import evaluate_regression, evaluate_segmentation, total_confusion_matrix


def test_regression_table_with_controls():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(2, 50_000)) * np.array([[2.0], [1.0]])
    noisy = signal + rng.normal(size=signal.shape)
    controls = {"dna": [rng.normal(size=50_000)], "er": [rng.normal(size=50_000)]}
    table = evaluate_regression([("a", noisy, signal)], ["dna", "er"], controls=controls)
    assert list(table.columns) == [
        "image",
        "structure",
        "pearson_r",
        "nmse",
        "c_max",
        "r_over_cmax",
        "c_max_method",
    ]
    dna = table.set_index("structure").loc["dna"]
    # perfect prediction of the signal reaches the ceiling: r == C_max == sqrt(4 / 5)
    assert dna["c_max"] == pytest.approx(np.sqrt(0.8), abs=0.01)
    assert dna["r_over_cmax"] == pytest.approx(1.0, abs=0.02)
    assert dna["c_max_method"] == "controls"
    plain = evaluate_regression([("a", noisy, signal)], ["dna", "er"])
    assert plain["c_max"].isna().all() and set(plain["c_max_method"]) == {"none"}
    # blank prediction: NMSE 1 on the z-scored truth
    blank = evaluate_regression([("a", noisy, np.zeros_like(noisy))], ["dna", "er"])
    np.testing.assert_allclose(blank["nmse"], 1.0)


def test_segmentation_tables_binary_and_multiclass(tmp_path):
    truth = np.array([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=bool)
    prob = np.array([[0.9, 0.8, 0.2, 0.6, 0.1, 0.0, 0.0, 0.0]])
    table = evaluate_segmentation([("x", truth, prob)], ["nucleus"])
    row = table.iloc[0]
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 1, 4)
    assert row["f1"] == pytest.approx(2 / 3)

    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]].T  # predicted labels 0, 1, 1, 1, 2, 0
    multi = evaluate_segmentation([("x", labels, probs)], ["bg", "a", "b"], task="multiclass")
    assert list(multi["structure"]) == ["a", "b"]
    b = multi.set_index("structure").loc["b"]
    assert (b["precision"], b["recall"]) == (1.0, 0.5)
    cm = total_confusion_matrix([("x", labels, probs), ("y", labels, labels)], 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [0, 4, 0], [1, 0, 3]])

    paths = [
        figures.plot_segmentation_bars(multi, tmp_path / "bars.png"),
        figures.plot_confusion(cm, ["bg", "a", "b"], tmp_path / "cm.png"),
        figures.plot_r_per_structure(
            pd.DataFrame(
                {"structure": ["dna", "dna", "er"], "pearson_r": [0.8, 0.9, 0.5], "c_max": [0.95, 0.95, 0.7]}
            ),
            tmp_path / "r.png",
        ),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_api_evaluate_multiclass_against_simulator_label_map(tmp_path):
    from stainfree import api
    from stainfree.io.writers import write_ome_tiff
    from stainfree.types import compartment_id

    labels = np.zeros((2, 8, 8), dtype=np.uint8)
    labels[:, :4] = compartment_id("nucleus")
    labels[:, 4:] = compartment_id("cytosol")
    probs = np.zeros((3, 2, 8, 8), dtype=np.float32)
    probs[1, :, :4] = 1.0  # nucleus everywhere it should be
    probs[2, :, 4:6] = 1.0  # cytosol on part of its area
    probs[0, :, 6:] = 1.0  # background on the rest
    pred = write_ome_tiff(
        tmp_path / "p.ome.tif", probs, "CZYX", channel_names=["background", "nucleus", "cytosol"]
    )
    target = write_ome_tiff(tmp_path / "labels.ome.tif", labels, "ZYX")
    table = api.evaluate(pred, target, tmp_path / "ev", task="multiclass")
    t = table.set_index("structure")
    assert t.loc["nucleus", "f1"] == 1.0
    assert t.loc["cytosol", "recall"] == pytest.approx(0.5)
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()
    assert (tmp_path / "ev" / "confusion_matrix.csv").is_file()
    binary = api.evaluate(pred, target, tmp_path / "ev2", task="binary")
    assert binary.set_index("structure").loc["nucleus", "iou"] == 1.0


def test_binary_masks_scored_by_the_catalog_definition_of_each_compartment(tmp_path):
    from stainfree import api
    from stainfree.io.writers import write_ome_tiff
    from stainfree.types import compartment_id

    labels = np.full((1, 8, 8), compartment_id("cytosol"), dtype=np.uint8)
    labels[:, :2] = compartment_id("extracellular")
    labels[:, 2:4, 2:4] = compartment_id("mitochondria")  # inside the cytoplasm
    labels[:, 6:, 6:] = compartment_id("nuclear_reticulum")  # inside the nucleus
    masks = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    masks[0, :, 2:] = 1  # cytosol: the whole cytoplasm, the mitochondrion in it included
    masks[0, :, 6:, 6:] = 0
    masks[1, :, 2:4, 2:4] = 1  # mitochondria
    masks[2, :, 6:, 6:] = 1  # nucleus, with its nuclear reticulum
    pred = write_ome_tiff(
        tmp_path / "m.ome.tif", masks, "CZYX", channel_names=["cytosol", "mitochondria", "nucleus"]
    )
    target = write_ome_tiff(tmp_path / "labels.ome.tif", labels, "ZYX")
    t = api.evaluate(pred, target, tmp_path / "ev", task="binary").set_index("structure")
    assert t.loc["cytosol", "f1"] == 1.0 and t.loc["mitochondria", "f1"] == 1.0
    assert t.loc["nucleus", "f1"] == 1.0


def test_api_evaluate_regression_with_controls(tmp_path):
    from stainfree import api
    from stainfree.io.writers import write_ome_tiff

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(1, 4, 64, 64)).astype(np.float32) * 2
    target = signal + rng.normal(size=signal.shape).astype(np.float32)
    control = rng.normal(size=signal.shape).astype(np.float32)
    pred = write_ome_tiff(tmp_path / "pred.ome.tif", signal, "CZYX", channel_names=["dna"])
    tgt = write_ome_tiff(tmp_path / "target.ome.tif", target, "CZYX", channel_names=["dna"])
    ctl = write_ome_tiff(tmp_path / "control.ome.tif", control, "CZYX", channel_names=["dna"])
    table = api.evaluate([pred], [tgt], tmp_path / "ev", controls=[ctl])
    row = table.iloc[0]
    assert row["c_max_method"] == "controls"
    assert row["c_max"] == pytest.approx(np.sqrt(0.8), abs=0.02)
    assert row["r_over_cmax"] == pytest.approx(1.0, abs=0.03)
    written = pd.read_csv(tmp_path / "ev" / "evaluation.csv")
    assert written["pearson_r"].iloc[0] == pytest.approx(row["pearson_r"])
