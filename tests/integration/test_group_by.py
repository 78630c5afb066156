"""quantify --group-by on simulated mitotic fields: phase from field.json, or any manifest column."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from stainfree import api
from stainfree.cli import app
from stainfree.config import QuantifyConfig, SimulationConfig
from stainfree.io.writers import write_table
from stainfree.simulate import simulate_field, write_field


def _dataset(tmp_path):
    rows = []
    for i, phase in enumerate(("interphase", "metaphase")):
        cfg = SimulationConfig(
            seed=2, shape=(16, 112, 112), cells_per_field=(1, 1), phases=[phase], targets=["dna"]
        )
        files = write_field(simulate_field(cfg, 0), tmp_path / f"field_{i}")
        rows.append(
            {
                "field": f"field_{i}",
                "dish": f"dish_{'AB'[i]}",
                **{k: f"field_{i}/{v}" for k, v in files.items()},
            }
        )
    return write_table(tmp_path / "manifest.csv", pd.DataFrame(rows))


def test_group_by_phase_and_manifest_column(tmp_path):
    manifest = _dataset(tmp_path)
    out = tmp_path / "q"
    tables = api.quantify(manifest, out, group_by="phase")
    g = tables["groups"].set_index(["phase", "structure"])
    assert list(tables["groups"]["phase"].unique()) == ["interphase", "metaphase"]
    assert g.loc[("interphase", "nucleus"), "volume_per_cell_um3"] > 5
    assert ("metaphase", "nucleus") not in g.index  # envelope broken down: no nucleus at all
    assert (
        g.loc[("metaphase", "mitochondria"), "objects_per_cell"]
        > g.loc[("interphase", "mitochondria"), "objects_per_cell"]
    )
    assert (
        g.loc[("metaphase", "plasma_membrane"), "volume_fraction"]
        > g.loc[("interphase", "plasma_membrane"), "volume_fraction"]
    )
    d = tables["group_distances"].set_index(["phase", "structure", "quantity"])
    assert d.loc[("interphase", "mitochondria", "nucleus_distance"), "voxels"] > 0
    assert d.loc[("metaphase", "mitochondria", "nucleus_distance"), "no_nucleus_voxels"] > 0
    assert d.loc[("metaphase", "mitochondria", "height"), "median_um"] > 0
    for name in (
        "groups.csv",
        "group_distances.csv",
        "groups_bars.png",
        "groups_boxes.png",
        "groups_distances.png",
    ):
        assert (out / name).is_file(), name
    assert set(tables["objects"]["phase"].dropna()) == {"interphase", "metaphase"}

    by_dish = api.quantify(manifest, None, group_by="dish", config=QuantifyConfig(figures=False))
    assert set(by_dish["groups"]["dish"]) == {"dish_A", "dish_B"}
    res = CliRunner().invoke(
        app, ["quantify", str(manifest), "--out", str(tmp_path / "c"), "--group-by", "nope", "--no-figures"]
    )
    assert res.exit_code == 2 and "nope" in res.output
