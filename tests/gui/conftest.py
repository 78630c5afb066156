"""GUI tests of the napari plugin, headless; skipped with a reason when the ``napari`` extra is absent.

Run them with the extra installed (``pip install -e '.[dev,napari]'``): ``python -m pytest tests/gui``. The
viewer canvas needs OpenGL: pytest-xvfb (in the extra) starts a virtual X display when ``Xvfb`` is installed
(``apt-get install xvfb``); without a display Qt runs offscreen, where the reader, manifest and widget-logic
tests run and the canvas tests skip with a reason.
"""

from __future__ import annotations

import os

import pytest

#: System libraries Qt's xcb platform needs beyond libxcb (Debian: libxcb-icccm4 libxcb-keysyms1 ...).
_XCB_LIBS = ("xcb-icccm", "xcb-keysyms", "xcb-xinerama", "xcb-render-util", "xcb-image", "xkbcommon-x11")


def _xcb_usable() -> bool:
    from ctypes.util import find_library

    return all(find_library(name) for name in _XCB_LIBS)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """After pytest-xvfb set DISPLAY, before any Qt application: Qt draws offscreen without an X display
    (or without the xcb libraries, whose absence would abort the process), and the canvas tests skip."""
    if not os.environ.get("DISPLAY") or not _xcb_usable():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


NO_EXTRA = "the napari extra is not installed: pip install -e '.[dev,napari]' to run the GUI tests"


@pytest.fixture()
def seg_bundles(tmp_path, constant_bundle):
    """A folder of two constant catalog bundles: everything peroxisome (PERO) and filopodia (PM)."""
    folder = tmp_path / "bundles"
    constant_bundle(folder, "PERO", "binary", ["peroxisome"], [8.0])
    constant_bundle(
        folder, "PM", "multiclass", ["background", "plasma_membrane", "filopodia"], [0.0, 0.0, 6.0]
    )
    return folder


def _has_opengl() -> bool:
    from qtpy.QtGui import QOpenGLContext

    return bool(QOpenGLContext().create())


@pytest.fixture()
def viewer(request):
    """A napari viewer (window on the virtual display), closed after the test.

    Skips without the napari extra, or without OpenGL (no X display: install Xvfb).
    """
    napari = pytest.importorskip("napari", reason=NO_EXTRA)
    pytest.importorskip("pytestqt", reason=NO_EXTRA)
    request.getfixturevalue("qtbot")
    if not _has_opengl():
        pytest.skip(
            "no OpenGL context for the napari canvas (no X display): apt-get install xvfb libxcb-icccm4 "
            "libxcb-keysyms1 libxcb-xinerama0 libxcb-render-util0 libxcb-image0 libxkbcommon-x11-0"
        )
    v = napari.Viewer(show=True)
    yield v
    v.close()


@pytest.fixture()
def viewer_model(request):
    """A napari ViewerModel (layers, no window, no OpenGL) and a Qt application for the widgets."""
    pytest.importorskip("napari", reason=NO_EXTRA)
    pytest.importorskip("pytestqt", reason=NO_EXTRA)
    request.getfixturevalue("qtbot")
    from napari.components import ViewerModel

    return ViewerModel()
