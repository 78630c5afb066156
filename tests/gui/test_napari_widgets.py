"""The napari widgets, headless: segment on the sample field (screenshot shows the overlay colours),
quantify to coloured points, predict to named channels, errors as notifications, work off the GUI thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

NO_EXTRA = "the napari extra is not installed: pip install -e '.[dev,napari]' to run the GUI tests"

pytest.importorskip("napari", reason=NO_EXTRA)
pytest.importorskip("pytestqt", reason=NO_EXTRA)

WAIT_MS = 60_000


def _add_sample(viewer):
    from stainfree.napari._sample import digital_cell

    for data, meta, kind in digital_cell():
        getattr(viewer, f"add_{kind}")(data, **meta)
    return viewer


@pytest.fixture()
def sample(viewer):
    """The sample field in a napari viewer with its canvas (for screenshots)."""
    return _add_sample(viewer)


@pytest.fixture()
def sample_model(viewer_model):
    """The sample field in a napari ViewerModel (no canvas: the widgets only need the layer list)."""
    return _add_sample(viewer_model)


def _run(widget, qtbot):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=WAIT_MS)
    return worker


def test_segment_widget_adds_coloured_labels_and_screenshot_shows_them(
    sample, seg_bundles, qtbot, monkeypatch
):
    import stainfree.api
    from stainfree.napari._widgets import SegmentWidget

    viewer = sample
    threads: list[threading.Thread] = []
    original = stainfree.api.segment_array

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(stainfree.api, "segment_array", spy)
    viewer.layers["labels"].visible = False
    viewer.layers["brightfield"].visible = False
    # opened as napari opens it from the Plugins menu (npe2 manifest, viewer injected)
    _, widget = viewer.window.add_plugin_dock_widget("stainfree", "Segment organelles")
    assert isinstance(widget, SegmentWidget)
    widget.layer.value = viewer.layers["nilered [yellow]"]
    widget.bundle.value = seg_bundles
    _run(widget, qtbot)
    # the networks ran in a worker thread, never on the GUI thread
    assert threads and threads[0] is not threading.main_thread()
    layer = viewer.layers["nilered compartments"]
    assert type(layer).__name__ == "Labels"
    assert tuple(layer.scale) == pytest.approx(tuple(viewer.layers["nilered [yellow]"].scale))
    assert np.unique(np.asarray(layer.data)).tolist() == [10]  # peroxisome wins over filopodia
    assert widget.status.value.startswith("done")

    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 0, "blank screenshot"
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    green = (g > r + 60) & (g > b + 60)  # the peroxisome colour (0, 220, 0) over the grey-ish image
    assert green.mean() > 0.05, f"overlay colour missing: {green.mean():.3f} of the pixels"


def test_segment_widget_error_is_a_notification(sample_model, tmp_path, qtbot, monkeypatch):
    sample = sample_model
    import napari.utils.notifications as notifications

    from stainfree.napari._widgets import SegmentWidget

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    widget = SegmentWidget(sample)
    widget.layer.value = sample.layers["nilered [yellow]"]
    widget.bundle.value = tmp_path  # no bundles here
    assert widget.run() is None
    assert shown and "no model bundle" in shown[0]
    assert widget.run_button.enabled


def test_quantify_widget_adds_centroids_coloured_by_class(sample_model, qtbot):
    sample = sample_model
    from stainfree.napari._layers import compartment_rgba
    from stainfree.napari._widgets import QuantifyWidget

    widget = QuantifyWidget(sample)
    widget.layer.value = sample.layers["labels"]
    _run(widget, qtbot)
    points = sample.layers["labels objects"]
    assert type(points).__name__ == "Points" and len(points.data) > 0
    structures = points.features["structure"].tolist()
    assert "nucleus" in structures
    i = structures.index("nucleus")
    assert tuple(points.face_color[i][:3]) == pytest.approx(compartment_rgba()["nucleus"][:3], abs=1e-3)


def test_predict_widget_adds_named_channels(sample_model, tmp_path, qtbot):
    sample = sample_model
    torch = pytest.importorskip("torch")
    from stainfree.config import BundleConfig, ModelConfig
    from stainfree.models.bundle import save_bundle
    from stainfree.models.registry import build_model
    from stainfree.napari._widgets import PredictWidget

    torch.manual_seed(0)
    mc = ModelConfig(spatial_dims=3, in_channels=1, out_channels=1, depth=1, base_channels=2)
    cfg = BundleConfig(
        name="dna",
        task="regression",
        spatial_dims=3,
        input_mode="3d",
        model=mc,
        target_channels=["dna"],
        voxel_size_um=None,
    )
    save_bundle(tmp_path / "dna.stainfree", build_model(mc), cfg)
    widget = PredictWidget(sample)
    widget.layer.value = sample.layers["brightfield"]
    widget.bundle.value = tmp_path
    _run(widget, qtbot)
    pred = sample.layers["brightfield prediction"]
    assert pred.data.shape == sample.layers["brightfield"].data.shape
    assert tuple(pred.scale) == pytest.approx(tuple(sample.layers["brightfield"].scale))
