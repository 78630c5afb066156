"""Manifest: reading, building, conversion from the simulator, and validation of every row at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stainfree.config import DataConfig
from stainfree.errors import InputError, InputErrors
from stainfree.io.manifest import build_manifest, manifest_from_simulation, read_manifest, validate_manifest
from stainfree.io.writers import write_ome_tiff


def _img(path, shape=(4, 16, 16), value=None, channels=None, vox=(0.29, 0.29, 0.29)):
    a = np.random.default_rng(0).random(shape).astype(np.float32) if value is None else value
    axes = "CZYX" if a.ndim == 4 else "ZYX"
    return write_ome_tiff(path, a, axes, voxel_size_um=vox, channel_names=channels)


def test_build_manifest_pairs_by_stem_and_splits_reproducibly(tmp_path):
    for i in range(5):
        _img(tmp_path / "sig" / f"cell{i}.ome.tif")
        _img(tmp_path / "tgt" / f"cell{i}.ome.tif")
    df = build_manifest(tmp_path / "sig", tmp_path / "tgt", test_fraction=0.4, seed=1)
    assert list(df.columns) == ["signal", "target", "split"]
    assert all(s.split("/")[-1] == t.split("/")[-1] for s, t in zip(df.signal, df.target, strict=True))
    assert (df.split == "test").sum() == 2
    again = build_manifest(
        str(tmp_path / "sig" / "*.ome.tif"), str(tmp_path / "tgt" / "*.tif"), test_fraction=0.4, seed=1
    )
    assert again.equals(df)
    with pytest.raises(InputError, match="no image files"):
        build_manifest(tmp_path / "nothing", tmp_path / "tgt")


def test_read_manifest_resolves_relative_paths_and_default_split(tmp_path):
    _img(tmp_path / "a.ome.tif")
    (tmp_path / "m.csv").write_text("signal,target\na.ome.tif,a.ome.tif\n")
    df = read_manifest(tmp_path / "m.csv")
    assert df.signal[0] == str(tmp_path / "a.ome.tif") and df.split[0] == "train"
    validate_manifest(df, DataConfig())  # a valid manifest passes


def test_validation_reports_every_problem_together(tmp_path):
    _img(tmp_path / "ok_s.ome.tif")
    _img(tmp_path / "ok_t.ome.tif")
    _img(tmp_path / "small_t.ome.tif", shape=(4, 8, 16))
    nan = np.ones((4, 16, 16), np.float32)
    nan[0, 0, 0] = np.nan
    _img(tmp_path / "nan_t.ome.tif", value=nan)
    rows = [
        ("ok_s.ome.tif", "ok_t.ome.tif"),  # fine
        ("missing.ome.tif", "ok_t.ome.tif"),  # missing file
        ("ok_s.ome.tif", "small_t.ome.tif"),  # shape mismatch
        ("ok_s.ome.tif", "nan_t.ome.tif"),  # NaN
    ]
    pd.DataFrame({"signal": [r[0] for r in rows], "target": [r[1] for r in rows]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    with pytest.raises(InputErrors) as info:
        validate_manifest(read_manifest(tmp_path / "m.csv"), DataConfig())
    errors = info.value.errors
    assert len(errors) == 3, [str(e) for e in errors]
    text = str(info.value)
    assert "row 2" in text and "missing.ome.tif" in text
    assert "row 3" in text and "does not match" in text
    assert "row 4" in text and "NaN" in text


def test_validation_checks_channels_voxels_and_training_rows(tmp_path):
    _img(tmp_path / "s.ome.tif", shape=(2, 4, 16, 16), channels=["yellow", "red"])
    _img(tmp_path / "t.ome.tif", vox=(0.5, 0.29, 0.29))
    (tmp_path / "m.csv").write_text("signal,target,split\ns.ome.tif,t.ome.tif,test\n")
    with pytest.raises(InputErrors) as info:
        validate_manifest(read_manifest(tmp_path / "m.csv"), DataConfig(signal_channels=["gfp"]))
    text = str(info.value)
    assert (
        "no channel named 'gfp'" in text
        and "voxel sizes differ" in text
        and "no row has split 'train'" in text
    )


def test_manifest_from_simulation(tmp_path):
    _img(tmp_path / "field_000" / "brightfield.ome.tif")
    _img(tmp_path / "field_000" / "fluorescence.ome.tif", shape=(2, 4, 16, 16), channels=["dna", "membrane"])
    (tmp_path / "manifest.csv").write_text(
        "field,brightfield,fluorescence,split\nfield_000,field_000/brightfield.ome.tif,"
        "field_000/fluorescence.ome.tif,train\n"
    )
    df = manifest_from_simulation(tmp_path / "manifest.csv", target_channel="dna")
    assert df.target_channels[0] == "dna" and df.signal[0].endswith("brightfield.ome.tif")
    validate_manifest(df, DataConfig())
    # or use the simulator's manifest directly by naming its columns
    sim = read_manifest(tmp_path / "manifest.csv")
    validate_manifest(
        sim, DataConfig(signal_column="brightfield", target_column="fluorescence", target_channels=["dna"])
    )


def test_write_manifest_keeps_paths_relative_to_the_working_directory_findable(tmp_path, monkeypatch):
    """A path relative to the current directory is stored so that read_manifest finds the same file."""
    import pandas as pd

    from stainfree.io.manifest import read_manifest, write_manifest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "targets").mkdir(parents=True)
    (tmp_path / "out" / "targets" / "t.tif").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "s.tif").write_bytes(b"x")
    df = pd.DataFrame({"signal": ["elsewhere/s.tif"], "target": ["out/targets/t.tif"], "split": ["train"]})
    path = write_manifest(df, "out/targets/manifest.csv")
    stored = pd.read_csv(path)
    assert stored["target"][0] == "t.tif"  # below the CSV: relative to it, so the folder can move
    assert stored["signal"][0] == str(tmp_path / "elsewhere" / "s.tif")  # outside: absolute
    back = read_manifest(path)
    assert back["target"][0] == str(tmp_path / "out" / "targets" / "t.tif")
    assert back["signal"][0] == str(tmp_path / "elsewhere" / "s.tif")
