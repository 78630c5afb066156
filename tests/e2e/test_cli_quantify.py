"""`stainfree quantify`: tables as CSV + Parquet, PNG figures, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.io.writers import write_ome_tiff
from stainfree.types import COMPARTMENTS, compartment_id


def label_map() -> np.ndarray:
    lab = np.full((8, 32, 32), compartment_id("extracellular"), np.uint8)
    lab[1:7, 4:28, 4:28] = compartment_id("cytosol")
    lab[2:6, 10:20, 10:20] = compartment_id("nucleus")
    lab[3:5, 22:25, 22:25] = compartment_id("lysosome")
    lab[3:5, 5:8, 5:8] = compartment_id("lysosome")
    lab[2:4, 20:22, 12:18] = compartment_id("mitochondria")  # touches the nucleus (y 19 | 20)
    return lab


def test_cli_quantify_writes_tables_and_figures(tmp_path: Path) -> None:
    src = write_ome_tiff(tmp_path / "labels.ome.tif", label_map(), "ZYX")
    out = tmp_path / "q"
    res = CliRunner().invoke(
        app,
        ["quantify", str(src), "--out", str(out), "--voxel-size", "0.4", "0.1", "0.1", "--min-size", "5"],
    )
    assert res.exit_code == 0, res.output
    assert "lysosome 2" in res.output
    for name in ("objects", "structures", "cells", "contacts", "contact_matrix", "object_contacts",
                 "timeseries", "contact_events"):  # fmt: skip
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    for png in ("volume_count.png", "sphericity_ratio.png", "contact_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    obj = pd.read_parquet(out / "objects.parquet")
    lyso = obj[obj["structure"] == "lysosome"]
    assert len(lyso) == 2 and np.allclose(lyso["volume_um3"], 18 * 0.4 * 0.1 * 0.1)
    contacts = pd.read_csv(out / "contacts.csv").set_index(["structure_a", "structure_b"])
    assert contacts.loc[("mitochondria", "nucleus"), "contact_area_um2"] > 0
    assert json.loads((out / "quantify.json").read_text())["voxel_size_um"] == [0.4, 0.1, 0.1]


def test_cli_quantify_contact_distance_and_instances(tmp_path: Path) -> None:
    lab = label_map()
    inst = np.stack([(lab == i + 1).astype(np.uint16) * (i + 1) for i in range(len(COMPARTMENTS))])
    src = write_ome_tiff(tmp_path / "inst.ome.tif", inst, "CZYX", voxel_size_um=(0.4, 0.1, 0.1),
                         channel_names=COMPARTMENTS)  # fmt: skip
    out = tmp_path / "q"
    res = CliRunner().invoke(
        app, ["quantify", str(src), "-o", str(out), "--contact-nm", "250", "--no-figures"]
    )
    assert res.exit_code == 0, res.output
    assert not (out / "contact_matrix.png").exists()
    cfg = json.loads((out / "quantify.json").read_text())["config"]
    assert cfg["contact_distance_nm"] == 250


def test_cli_quantify_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["quantify", str(tmp_path / "nope.ome.tif"), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output
    bad = write_ome_tiff(tmp_path / "bad.ome.tif", np.full((4, 8, 8), 99, np.uint8), "ZYX")
    res = CliRunner().invoke(app, ["quantify", str(bad), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2 and "0..15" in res.output
