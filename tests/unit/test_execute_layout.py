"""Job inputs and run records: layouts, cluster specs, fingerprints (no cluster started)."""

from __future__ import annotations

import pytest


def test_input_layouts(tmp_path):
    from stainfree.execute.positions import find_positions, input_layout

    (tmp_path / "a.ome.tif").write_bytes(b"x")
    (tmp_path / "b.tif").write_bytes(b"x")
    (tmp_path / ".hidden.tif").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert input_layout(tmp_path) == "folder"
    assert input_layout(tmp_path / "*.tif") == "glob"
    assert input_layout(tmp_path / "a.ome.tif") == "file"
    layout, found = find_positions(tmp_path)
    assert layout == "folder" and [p.key for p in found] == ["a", "b"]
    _, found = find_positions(str(tmp_path / "*.tif"))
    assert [p.key for p in found] == ["a", "b"]


def test_a_plate_is_recognised_by_its_metadata(tmp_path):
    import json

    from stainfree.execute.positions import find_positions

    plate = tmp_path / "p.ome.zarr"
    plate.mkdir()
    wells = [{"path": "A/1", "rowIndex": 0, "columnIndex": 0}]
    (plate / "zarr.json").write_text(json.dumps({"attributes": {"ome": {"plate": {"wells": wells}}}}))
    (plate / "A" / "1").mkdir(parents=True)
    images = [{"path": "0"}, {"path": "3"}]
    (plate / "A" / "1" / "zarr.json").write_text(
        json.dumps({"attributes": {"ome": {"well": {"images": images}}}})
    )
    layout, found = find_positions(plate)
    assert layout == "plate" and [p.key for p in found] == ["A/1/0", "A/1/3"]
    assert found[1].source == str(plate / "A/1/3")


def test_cluster_specs_and_fingerprints(tmp_path):
    from stainfree.errors import InputError
    from stainfree.execute.records import file_stamp, fingerprint, parse_cluster

    assert parse_cluster("local:3") == 3 and parse_cluster(None) is None
    for bad in ("local", "local:0", "slurm:4"):
        with pytest.raises(InputError, match="local:N"):
            parse_cluster(bad)
    f = tmp_path / "x.tif"
    f.write_bytes(b"abc")
    key = fingerprint({"input": file_stamp(f), "settings": {"overlap": 0.25}})
    assert key == fingerprint({"settings": {"overlap": 0.25}, "input": file_stamp(f)})
    assert key != fingerprint({"input": file_stamp(f), "settings": {"overlap": 0.5}})


def test_cli_refuses_a_bad_cluster_spec(tmp_path):
    from typer.testing import CliRunner

    from stainfree.cli import app

    (tmp_path / "in.tif").write_bytes(b"x")
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path), str(tmp_path / "in.tif"), "--out", "o.ome.zarr", "--cluster", "many"]
    )
    assert result.exit_code == 2 and "--cluster must be local:N" in result.output
