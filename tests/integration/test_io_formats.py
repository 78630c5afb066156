"""read_image on real files and on files written here: formats, metadata, round trips, malformed input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from stainfree.errors import InputError
from stainfree.io.readers import detect_format, read_image
from stainfree.io.writers import write_ome_tiff, write_ome_zarr

# ----- real sample data -------------------------------------------------------------------------------------


def test_czi_and_ome_tiff_of_the_same_image_agree(shared_data: Path) -> None:
    czi, meta_czi = read_image(shared_data / "czi" / "s_1_t_1_c_1_z_1.czi")
    tif, meta_tif = read_image(shared_data / "czi" / "s_1_t_1_c_1_z_1.ome.tiff")
    assert isinstance(czi, np.ndarray) and isinstance(tif, np.ndarray)
    np.testing.assert_array_equal(czi, tif)
    assert meta_czi.axes == meta_tif.axes == "YX"
    assert meta_czi.shape == (325, 475) and meta_czi.dtype == "uint16"
    assert meta_czi.voxel_size_um == meta_tif.voxel_size_um
    assert meta_czi.voxel_size_um[0] is None
    assert meta_czi.voxel_size_um[1] == pytest.approx(1.0833, abs=1e-4)
    assert meta_czi.channel_names == meta_tif.channel_names == ("Bright",)
    assert meta_tif.extra["format"] == "ome-tiff"


def test_czi_time_lapse_matches_bioio(shared_data: Path) -> None:
    import bioio_czi
    from bioio import BioImage

    path = shared_data / "czi" / "CD_s_1_t_3_c_2_z_5.czi"
    array, meta = read_image(path)
    assert meta.axes == "TCZYX" and array.shape == (3, 2, 5, 170, 240) and array.dtype == np.uint16
    ref = BioImage(path, reader=bioio_czi.Reader)
    pps = ref.physical_pixel_sizes
    assert meta.voxel_size_um == pytest.approx((pps.Z, pps.Y, pps.X))
    assert meta.voxel_size_um == pytest.approx((0.32, 0.0906, 0.0906), abs=1e-4)
    assert meta.channel_names == tuple(str(n) for n in ref.channel_names)
    np.testing.assert_array_equal(array[1, 0, 2], ref.get_image_data("YX", T=1, C=0, Z=2))
    lazy, lazy_meta = read_image(path, lazy=True)
    assert not isinstance(lazy, np.ndarray) and lazy_meta == meta
    np.testing.assert_array_equal(np.asarray(lazy[2, 1]), array[2, 1])


def test_nd2_files_match_their_known_metadata(shared_data: Path) -> None:
    import yaml

    known = yaml.safe_load((shared_data / "nd2" / "known-metadata.yml").read_text())
    image, meta = read_image(shared_data / "nd2" / "example-multichannel.nd2")
    channels = known["example-multichannel.nd2"]
    first = next(iter(channels.values()))["resolution"]
    assert meta.axes == "CYX" and image.shape == (len(channels), first["y_size_px"], first["x_size_px"])
    assert meta.voxel_size_um[1] == pytest.approx(first["xy_step_um"])
    assert meta.voxel_size_um[2] == pytest.approx(first["xy_step_um"])
    assert "DAPI" in meta.channel_names and image.dtype == np.uint16
    pbmc, m2 = read_image(shared_data / "nd2" / "example-pbmc.nd2")
    assert m2.voxel_size_um[2] == pytest.approx(2 * first["xy_step_um"])  # the same cells, binned 2x
    assert detect_format(shared_data / "nd2" / "example-cerevisiae.nd2") == "nd2"


def test_lif_without_its_plugin_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bioio_lif", None)  # importing it now raises ImportError
    f = tmp_path / "stack.lif"
    f.write_bytes(b"not really a LIF")
    with pytest.raises(InputError, match="stack.lif: reading LIF needs the bioio-lif package"):
        read_image(f)


def test_real_tiffs(shared_data: Path) -> None:
    hela, m = read_image(shared_data / "organelles_2d" / "hela-cells.tif")
    assert m.axes == "CYX" and hela.shape == (3, 512, 672) and m.channel_names == ("ch0", "ch1", "ch2")
    assert m.voxel_size_um[1] == pytest.approx(1 / 19.42, rel=1e-3)  # ImageJ: 19.42 pixels per micrometre
    raw = tifffile.imread(shared_data / "organelles_2d" / "hela-cells.tif")  # (Y, X, S)
    np.testing.assert_array_equal(hela[1], raw[..., 1])
    bpae, m = read_image(shared_data / "organelles_2d" / "BPAE_mito.tif")
    assert (
        m.axes == "YX" and bpae.shape == (680, 1100) and m.dtype == "float32" and m.channel_names == ("ch0",)
    )
    nuclei, m = read_image(shared_data / "nuclei_3d" / "img3d.tif")
    assert m.axes == "ZYX" and nuclei.shape == (31, 61, 57)
    phase, m = read_image(shared_data / "phase_dapi_2d" / "phase.tif")
    assert m.axes == "YX" and phase.shape == (512, 512) and m.dtype == "uint16"
    assert m.voxel_size_um == (None, None, None)
    lazy, m_lazy = read_image(shared_data / "nuclei_3d" / "img3d.tif", lazy=True)
    assert m_lazy.axes == "ZYX"
    np.testing.assert_array_equal(lazy.compute(), nuclei)


# ----- round trips ------------------------------------------------------------------------------------------


def _image(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.random.default_rng(0).integers(0, 1000, shape).astype(dtype)


def test_ome_tiff_round_trip(tmp_path: Path) -> None:
    a = _image((2, 3, 16, 20))
    path = write_ome_tiff(tmp_path / "x.ome.tif", a, "CZYX", (0.5, 0.1, 0.1), ["dna", "membrane"])
    b, m = read_image(path)
    np.testing.assert_array_equal(a, b)
    assert m.axes == "CZYX" and m.voxel_size_um == pytest.approx((0.5, 0.1, 0.1))
    assert m.channel_names == ("dna", "membrane") and m.extra["format"] == "ome-tiff"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip(tmp_path: Path, version: str) -> None:
    a = _image((2, 3, 40, 30))
    path = write_ome_zarr(
        tmp_path / "x.ome.zarr", a, "CZYX", (0.5, 0.2, 0.2), ["dna", "er"], n_scales=3, ngff_version=version
    )
    marker = ".zattrs" if version == "0.4" else "zarr.json"
    assert (path / marker).exists()
    b, m = read_image(path)
    np.testing.assert_array_equal(a, b)
    assert m.axes == "CZYX" and m.voxel_size_um == pytest.approx((0.5, 0.2, 0.2))
    assert m.channel_names == ("dna", "er") and m.extra["ngff_version"] == version and m.extra["levels"] == 3
    lazy, _ = read_image(path, lazy=True)
    assert not isinstance(lazy, np.ndarray)
    np.testing.assert_array_equal(lazy.compute(), a)
    group = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(group["2"][...], a[..., ::4, ::4])


def test_hand_made_ngff_04_store_with_other_path_and_units(tmp_path: Path) -> None:
    """Dataset path, axes and scale come from the metadata (here 'full', nanometres, ZYX)."""
    a = _image((4, 12, 10))
    root = zarr.open_group(str(tmp_path / "hand.zarr"), mode="w", zarr_format=2)
    root.create_array("full", shape=a.shape, dtype=a.dtype, chunks=(2, 6, 5))[...] = a
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "z", "type": "space", "unit": "nanometer"},
                {"name": "y", "type": "space", "unit": "nanometer"},
                {"name": "x", "type": "space", "unit": "nanometer"},
            ],
            "datasets": [
                {"path": "full", "coordinateTransformations": [{"type": "scale", "scale": [300, 65, 65]}]}
            ],
        }
    ]
    b, m = read_image(tmp_path / "hand.zarr")
    np.testing.assert_array_equal(a, b)
    assert m.axes == "ZYX" and m.voxel_size_um == pytest.approx((0.3, 0.065, 0.065))
    assert m.channel_names == ("ch0",) and m.extra["dataset"] == "full"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ome_zarr_written_by_ome_zarr_py_is_read(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    a = _image((2, 3, 32, 32))
    group = zarr.open_group(str(tmp_path / "py.ome.zarr"), mode="w", zarr_format=3)
    write_image(a, group, axes="czyx", fmt=FormatV05())
    b, m = read_image(tmp_path / "py.ome.zarr")
    np.testing.assert_array_equal(a, b)
    assert m.axes == "CZYX" and m.extra["ngff_version"] == "0.5"


def test_imagej_hyperstack(tmp_path: Path) -> None:
    a = _image((2, 3, 2, 16, 20))  # T Z C Y X, as ImageJ stores it
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        a,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"spacing": 0.5, "unit": "um", "axes": "TZCYX"},
    )
    b, m = read_image(path)
    assert m.axes == "TCZYX" and m.shape == (2, 2, 3, 16, 20)
    np.testing.assert_array_equal(b, a.transpose(0, 2, 1, 3, 4))
    assert m.voxel_size_um == pytest.approx((0.5, 0.2, 0.2))
    assert m.extra["format"] == "imagej-tiff"


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_png_slice_series_in_natural_order(tmp_path: Path, dtype: str) -> None:
    for i in (1, 2, 10, 3):
        plane = np.full((6, 7), i * (1000 if dtype == "uint16" else 1), dtype)
        plane[0, 0] = 0
        Image.fromarray(plane).save(tmp_path / f"slice_{i}.png")
    b, m = read_image(str(tmp_path / "slice_*.png"))
    assert m.axes == "ZYX" and b.shape == (4, 6, 7) and b.dtype == np.dtype(dtype)
    scale = 1000 if dtype == "uint16" else 1
    np.testing.assert_array_equal(b[:, 1, 1], np.array([1, 2, 3, 10]) * scale)
    assert [Path(f).name for f in m.extra["files"]] == [
        "slice_1.png",
        "slice_2.png",
        "slice_3.png",
        "slice_10.png",
    ]


def test_slice_series_with_mismatched_shapes(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "s_1.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "s_2.png")
    with pytest.raises(InputError, match=r"s_2.png: slice of shape \(6, 8\)"):
        read_image(str(tmp_path / "s_*.png"))


# ----- malformed input --------------------------------------------------------------------------------------


def make_bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Write one bad file per problem; returns name -> (path, expected message fragment)."""
    folder.mkdir(parents=True, exist_ok=True)
    bad: dict[str, tuple[Path, str]] = {}
    bad["missing"] = (folder / "missing.tif", "file not found")
    (folder / "notes.xyz").write_text("hello")
    bad["extension"] = (folder / "notes.xyz", "unknown image format '.xyz'")
    (folder / "random.tif").write_bytes(np.random.default_rng(0).bytes(3000))
    bad["corrupt"] = (folder / "random.tif", "corrupt or unreadable TIFF")
    tifffile.imwrite(folder / "line.tif", np.arange(10, dtype=np.uint16))
    bad["1d"] = (folder / "line.tif", "wrong number of dimensions: 1D")
    tifffile.imwrite(folder / "six.tif", np.ones((2, 2, 2, 2, 5, 6), np.uint16))
    bad["6d"] = (folder / "six.tif", "wrong number of dimensions: 6D")
    tifffile.imwrite(folder / "nan.tif", np.array([[1, np.nan], [2, 3]], np.float32))
    bad["nan"] = (folder / "nan.tif", "NaN")
    tifffile.imwrite(folder / "inf.tif", np.array([[1, -np.inf], [2, 3]], np.float32))
    bad["inf"] = (folder / "inf.tif", "infinite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that a zero-size TIFF is nonconformant
        tifffile.imwrite(folder / "zero.tif", np.zeros((0, 10), np.uint8))
    bad["zero"] = (folder / "zero.tif", "size 0")
    return bad


def test_malformed_files_raise_input_error_naming_the_file(tmp_path: Path) -> None:
    for name, (path, fragment) in make_bad_files(tmp_path).items():
        with pytest.raises(InputError) as info:
            read_image(path)
        message = str(info.value)
        assert str(path) in message, name
        assert fragment in message, (name, message)
        assert "\n" not in message


def test_constant_image_is_readable_but_flagged_by_check(tmp_path: Path) -> None:
    from stainfree.io.readers import check_image

    tifffile.imwrite(tmp_path / "mask.tif", np.zeros((5, 6), np.uint8))
    a, m = read_image(tmp_path / "mask.tif")
    assert m.axes == "YX" and a.max() == 0
    with pytest.raises(InputError, match="empty image: every pixel is 0"):
        check_image(a, m.path)


def test_zarr_group_without_ngff_metadata(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InputError, match="without OME-NGFF"):
        read_image(tmp_path / "plain.zarr")
    (tmp_path / "broken.zarr").mkdir()
    (tmp_path / "broken.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 3}))
    with pytest.raises(InputError, match="broken.zarr"):
        read_image(tmp_path / "broken.zarr")
