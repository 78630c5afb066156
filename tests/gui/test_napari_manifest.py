"""The npe2 manifest: valid, shipped as package data, registered through the napari.manifest entry point."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files

import pytest

NO_EXTRA = "the napari extra is not installed: pip install -e '.[dev,napari]' to run the GUI tests"


def test_manifest_is_package_data_and_entry_point():
    assert files("stainfree.napari").joinpath("napari.yaml").is_file()
    eps = {ep.name: ep.value for ep in entry_points(group="napari.manifest")}
    assert eps.get("stainfree") == "stainfree.napari:napari.yaml"


def test_npe2_validates_the_manifest():
    pytest.importorskip("npe2", reason=NO_EXTRA)
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("stainfree")
    assert manifest.name == "stainfree"
    commands = {c.id: c.python_name for c in manifest.contributions.commands or []}
    for python_name in commands.values():  # every command resolves to a callable
        module, attr = python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), python_name
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "stainfree"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_plugin_import_is_light():
    """Importing the package, reader and sample data loads neither napari nor Qt (`make demo` needs no Qt)."""
    code = (
        "import sys, stainfree.napari, stainfree.napari._reader, stainfree.napari._sample; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'PyQt5', 'qtpy', 'magicgui')]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
