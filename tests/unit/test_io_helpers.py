"""Pure helpers of stainfree.io.readers: axis mapping, canonical order, channel selection, checks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from stainfree.errors import InputError
from stainfree.io.readers import (
    as_czyx,
    canonicalize,
    check_image,
    image_stats,
    natural_key,
    resolve_axes,
    select_channels,
    unit_to_um,
)
from stainfree.types import ImageMeta


@pytest.mark.parametrize(
    ("raw", "shape", "expected"),
    [
        ("QYX", (31, 61, 57), "ZYX"),
        ("QQYX", (2, 5, 8, 8), "CZYX"),
        ("QQQYX", (3, 2, 5, 8, 8), "TCZYX"),
        ("YXS", (8, 9, 3), "YXC"),
        ("ZCYX", (4, 2, 8, 8), "ZCYX"),
        ("SYX", (3, 8, 8), "CYX"),
    ],
)
def test_resolve_axes_maps_unknown_letters_z_then_c_then_t(raw: str, shape: tuple, expected: str) -> None:
    _, axes = resolve_axes(raw, shape, "f.tif")
    assert axes == expected


def test_resolve_axes_drops_unknown_singletons_and_rejects_six_dimensions() -> None:
    index, axes = resolve_axes("QQYX", (1, 5, 8, 8), "f.tif")
    assert axes == "ZYX" and index[0] == 0
    with pytest.raises(InputError, match="f.tif: wrong number of dimensions: 6D"):
        resolve_axes("QQQQYX", (2, 2, 2, 2, 5, 6), "f.tif")


def test_canonicalize_reorders_and_drops_singletons() -> None:
    a = np.arange(1 * 3 * 2 * 4 * 5).reshape(1, 3, 2, 4, 5)  # T Z C Y X
    out, axes = canonicalize(a, "TZCYX", "x")
    assert axes == "CZYX"
    assert out.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(out[1, 2], a[0, 2, 1])
    lazy, axes_lazy = canonicalize(da.from_array(a), "TZCYX", "x")
    assert axes_lazy == "CZYX"
    np.testing.assert_array_equal(lazy.compute(), out)


def test_as_czyx_inserts_singletons_and_refuses_time_series() -> None:
    assert as_czyx(np.zeros((4, 5)), "YX").shape == (1, 1, 4, 5)
    assert as_czyx(np.zeros((3, 4, 5)), "ZYX").shape == (1, 3, 4, 5)
    assert as_czyx(np.zeros((2, 4, 5)), "CYX").shape == (2, 1, 4, 5)
    assert as_czyx(np.zeros((1, 2, 3, 4, 5)), "TCZYX").shape == (2, 3, 4, 5)
    with pytest.raises(InputError, match="2 time points"):
        as_czyx(np.zeros((2, 3, 4, 5)), "TZYX")


def test_select_channels_by_name_and_index() -> None:
    a = np.stack([np.full((2, 3, 4), i) for i in range(3)])
    meta = ImageMeta("CZYX", a.shape, "int64", (1.0, 0.5, 0.5), ("dna", "mito", "er"), "cell.tif")
    out, m = select_channels(a, meta, ["er", 0])
    assert m.axes == "CZYX" and m.channel_names == ("er", "dna")
    np.testing.assert_array_equal(out[:, 0, 0, 0], [2, 0])
    one, m1 = select_channels(a, meta, "mito")
    assert m1.axes == "ZYX" and m1.channel_names == ("mito",) and one.shape == (2, 3, 4)
    assert int(one[0, 0, 0]) == 1
    with pytest.raises(
        InputError, match=r"cell.tif: no channel 'golgi'; known channels: 0=dna, 1=mito, 2=er"
    ):
        select_channels(a, meta, ["golgi"])
    with pytest.raises(InputError, match="no channel 5"):
        select_channels(a, meta, [5])


def test_select_channels_on_single_channel_image() -> None:
    a = np.ones((4, 5))
    meta = ImageMeta("YX", a.shape, "float64", channel_names=("ch0",), path="p.tif")
    out, m = select_channels(a, meta, [0])
    assert out.shape == (4, 5) and m.channel_names == ("ch0",)
    with pytest.raises(InputError, match="no channel 'dna'"):
        select_channels(a, meta, "dna")


def test_natural_key_and_units() -> None:
    names = ["slice_10.png", "slice_2.png", "slice_1.png"]
    assert sorted(names, key=natural_key) == ["slice_1.png", "slice_2.png", "slice_10.png"]
    assert unit_to_um("nm") == pytest.approx(1e-3)
    assert unit_to_um("micron") == 1.0
    assert unit_to_um("\\u00B5m") == 1.0
    assert unit_to_um("pixel") is None


def test_check_image_constant_and_values() -> None:
    with pytest.raises(InputError, match="m.tif: empty image: every pixel is 0"):
        check_image(np.zeros((4, 4), np.uint8), "m.tif")
    check_image(np.zeros((4, 4), np.uint8), "m.tif", allow_constant=True)
    with pytest.raises(InputError, match="NaN"):
        check_image(np.array([[1.0, np.nan]]), "a")
    with pytest.raises(InputError, match="infinite"):
        check_image(da.from_array(np.array([[1.0, np.inf]])), "a", allow_constant=True)
    with pytest.raises(InputError, match="wrong number of dimensions: 1D"):
        check_image(np.arange(3), "a")


def test_image_stats_ignores_non_finite_values() -> None:
    a = np.array([[1.0, np.nan], [np.inf, -2.0]], np.float32)
    for arr in (a, da.from_array(a, chunks=1)):
        stats = image_stats(arr)
        assert stats == {"min": -2.0, "max": 1.0, "nan": 1, "inf": 1}
    assert image_stats(np.array([[3, 9]], np.uint16)) == {"min": 3.0, "max": 9.0, "nan": 0, "inf": 0}


def test_allocator_setting_takes_effect_in_a_fresh_process():
    import subprocess
    import sys

    code = "from stainfree.runtime import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # glibc here; False (and no error) elsewhere
