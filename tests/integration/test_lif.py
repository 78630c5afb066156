"""Leica LIF through bioio-lif: files written by tests/_lif.py (no LIF sample is available offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _lif import lif_xml, write_lif, write_lif_bytes
from stainfree.errors import InputError
from stainfree.io.readers import read_image

pytest.importorskip("bioio_lif")
liffile = pytest.importorskip("liffile")

VOXEL = (0.75, 0.1135, 0.1135)  # z, y, x in um


def _stack(nc: int, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(nc)
    hi = np.iinfo(dtype).max
    return rng.integers(0, hi, size=(nc, 4, 6, 9), endpoint=True, dtype=dtype)


@pytest.mark.parametrize(
    ("names", "dtype"),
    [(["Gray"], np.uint8), (["Green", "Red"], np.uint16), (["Blue", "Green", "Red"], np.uint8)],
)
def test_written_lif_reads_back_exactly(tmp_path: Path, names: list[str], dtype: type) -> None:
    data = _stack(len(names), dtype)
    f = tmp_path / "stack.lif"
    write_lif(f, data, channel_names=names, voxel_size_um=VOXEL)

    with liffile.LifFile(f) as lif:  # the parser bioio-lif reads through: ZCYX as stored
        assert len(lif.images) == 1
        raw = lif.images[0].asarray()
    np.testing.assert_array_equal(raw, data.transpose(1, 0, 2, 3) if len(names) > 1 else data[0])

    image, meta = read_image(f)
    expected = data if len(names) > 1 else data[0]
    assert isinstance(image, np.ndarray) and image.dtype == dtype
    np.testing.assert_array_equal(image, expected)
    assert meta.axes == ("CZYX" if len(names) > 1 else "ZYX")
    assert meta.shape == expected.shape and meta.dtype == np.dtype(dtype).name
    assert meta.voxel_size_um == pytest.approx(VOXEL, rel=1e-6)
    assert meta.channel_names == tuple(names)
    assert meta.extra["format"] == "lif"

    lazy, lazy_meta = read_image(f, lazy=True)
    np.testing.assert_array_equal(np.asarray(lazy), expected)
    assert lazy_meta.axes == meta.axes


def _info_one_line_error(f: Path) -> str:
    from stainfree.cli import app

    result = CliRunner().invoke(app, ["info", str(f)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f.name in lines[0], result.stderr
    return lines[0]


def _good_bytes(tmp_path: Path) -> bytes:
    f = tmp_path / "good.lif"
    write_lif(f, _stack(2, np.uint16), channel_names=["Green", "Red"], voxel_size_um=VOXEL)
    return f.read_bytes()


@pytest.mark.parametrize("where", ["memory block", "xml"])
def test_truncated_lif_is_one_input_error_line(tmp_path: Path, where: str) -> None:
    good = _good_bytes(tmp_path)
    cut = len(good) - 100 if where == "memory block" else 13 + 301  # 13-byte header, then UTF-16 XML
    f = tmp_path / "truncated.lif"
    f.write_bytes(good[:cut])
    with pytest.raises(InputError) as err:
        read_image(f)
    assert "truncated.lif" in str(err.value) and "\n" not in str(err.value)
    _info_one_line_error(f)


def test_lif_with_garbage_xml_is_one_input_error_line(tmp_path: Path) -> None:
    xml = lif_xml((1, 2, 3, 4), np.dtype(np.uint8), channel_names=["Gray"], voxel_size_um=VOXEL)
    garbage = xml[:200] + "<<&& not xml ]]>" + xml[200:]
    f = tmp_path / "garbage.lif"
    f.write_bytes(write_lif_bytes(garbage, [("MemBlock_0", b""), ("MemBlock_1", bytes(24))]))
    with pytest.raises(InputError, match="garbage.lif"):
        read_image(f)
    _info_one_line_error(f)

    notlif = tmp_path / "notlif.lif"
    notlif.write_bytes(b"\x00" * 64)
    _info_one_line_error(notlif)


def test_lazy_read_failure_in_info_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the up-front block check, the cut pixel data fails only when info computes the range."""
    import stainfree.io.readers as readers

    good = _good_bytes(tmp_path)
    f = tmp_path / "cut.lif"
    f.write_bytes(good[:-100])
    monkeypatch.setattr(readers, "_check_lif_blocks", lambda path: None)
    assert "corrupt or unreadable file" in _info_one_line_error(f)
