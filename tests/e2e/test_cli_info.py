"""`stainfree info`: a table on stdout; one `error:` line per bad file on stderr and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
import typer
from typer.testing import CliRunner

from stainfree.cli import app
from stainfree.io.writers import write_ome_tiff

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_io_formats import make_bad_files  # noqa: E402


def invoke(*args: str):
    """Run `stainfree info ARGS` (typer runs a lone command without its name while it is the only one)."""
    command = typer.main.get_command(app)
    argv = ["info", *args] if hasattr(command, "commands") else list(args)
    return CliRunner().invoke(app, argv)


def test_info_good_files(tmp_path: Path, shared_data: Path) -> None:
    ome = write_ome_tiff(
        tmp_path / "cells.ome.tif",
        np.arange(2 * 3 * 8 * 8, dtype=np.uint16).reshape(2, 3, 8, 8),
        "CZYX",
        (0.5, 0.25, 0.25),
        ["dna", "er"],
    )
    czi = shared_data / "czi" / "CD_s_1_t_3_c_2_z_5.czi"
    result = invoke(str(ome), str(czi))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cells.ome.tif" in out and "CZYX" in out and "dna, er" in out and "0.5, 0.25, 0.25" in out
    assert "383" in out  # max of the OME-TIFF
    assert "TCZYX" in out and "3 x 2 x 5 x 170 x 240" in out and "0.32" in out
    assert out.count(" ok ") == 2
    assert result.stderr == ""


def test_info_bad_files_give_one_error_line_each_and_exit_2(tmp_path: Path) -> None:
    bad = make_bad_files(tmp_path / "bad")
    tifffile.imwrite(tmp_path / "constant.tif", np.full((6, 6), 9, np.uint16))
    bad["constant"] = (tmp_path / "constant.tif", "empty image: every pixel is 9")
    good = write_ome_tiff(tmp_path / "good.ome.tif", np.eye(8, dtype=np.uint8), "YX")
    paths = [str(p) for p, _ in bad.values()]
    result = invoke(str(good), *paths)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(bad)
    for line, (path, fragment) in zip(lines, bad.values(), strict=True):
        assert line.startswith(f"error: {path}: ") and fragment in line, line
    assert "good.ome.tif" in result.stdout and " ok " in result.stdout


def test_info_single_bad_file(tmp_path: Path) -> None:
    result = invoke(str(tmp_path / "nope.tif"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.tif'}: file not found"
