"""Widgets that run ``predict``, ``segment`` and ``quantify`` on the selected layer, off the GUI thread.

Each widget is a magicgui :class:`~magicgui.widgets.Container`: a layer picker, a bundle picker (a folder:
one ``*.stainfree`` bundle or a folder of them), a Run button and a progress bar. Run starts a napari
``thread_worker``; the viewer stays responsive; the results come back as layers. A
:class:`~stainfree.errors.StainfreeError` (bad input, bad bundle) is shown as a notification, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)

from stainfree.napari._layers import LayerData, image_layers, label_map_layer, mask_layers, points_layer

if TYPE_CHECKING:
    import napari


def _bundle_paths(value: Any) -> list[Path]:
    """The bundle picker's value: one ``*.stainfree`` bundle, or the bundles in a folder (by name)."""
    from stainfree.errors import InputError

    if not value or str(value) in ("", "."):
        raise InputError("bundle", "pick a model bundle (*.stainfree) or a folder of bundles")
    folder = Path(str(value))
    if folder.name.endswith(".stainfree") or (folder / "config.yaml").is_file():
        return [folder]
    found = sorted(folder.glob("*.stainfree")) if folder.is_dir() else []
    if not found:
        raise InputError(folder, "no model bundle (*.stainfree) here: pick a bundle or a folder of bundles")
    return found


def _layer_type(layer: Any) -> str:
    """``"image"``, ``"labels"`` or another napari layer type name, in lower case."""
    from napari.layers import Image, Labels

    return "image" if isinstance(layer, Image) else "labels" if isinstance(layer, Labels) else "other"


def _voxel_size(layer: Any) -> tuple[float | None, ...]:
    """(z, y, x) voxel size in um from a layer's scale (None where the scale is 1, i.e. unknown)."""
    zyx = [float(s) for s in layer.scale[-3:]]
    zyx = [1.0] * (3 - len(zyx)) + zyx
    return tuple(None if s == 1.0 else s for s in zyx)


def _channel_stack(viewer: napari.viewer.Viewer, layer: Any) -> tuple[Any, list[str]]:
    """The layer's data with its channel siblings (layers ``<base> [<channel>]``) stacked on a C axis."""
    import numpy as np

    name = str(layer.name)
    if name.endswith("]") and " [" in name:
        base = name[: name.rindex(" [")]
        sibs = [
            lay
            for lay in viewer.layers
            if str(lay.name).startswith(base + " [") and lay.data.shape == layer.data.shape
        ]
        names = [str(s.name)[len(base) + 2 : -1] for s in sibs]
        return np.stack([np.asarray(s.data) for s in sibs]), names
    return np.asarray(layer.data), []


class _RunWidget(Container):
    """Layer picker(s), options, bundle picker, Run button, progress bar; work in a thread_worker."""

    layer_types: tuple[str, ...] = ("image",)

    def __init__(self, viewer: napari.viewer.Viewer, options: list[Any], needs_bundle: bool = True) -> None:
        self._viewer = viewer
        self.layer = ComboBox(label="layer", choices=self._layer_choices)
        self.bundle = FileEdit(label="bundle(s)", mode="d", visible=needs_bundle)
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(value="")
        super().__init__(
            widgets=[self.layer, *options, self.bundle, self.run_button, self.progress, self.status]
        )
        self.run_button.changed.connect(self.run)
        self.worker: Any = None
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)

    def _refresh(self, event: Any = None) -> None:
        self.layer.reset_choices()

    def _layer_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        return [(str(lay.name), lay) for lay in self._viewer.layers if _layer_type(lay) in self.layer_types]

    def _job(self) -> Callable[[], list[LayerData]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self) -> Any:
        """Start the job in a worker thread; returns the worker (None when the inputs are refused)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        from stainfree.errors import StainfreeError

        try:
            if self.layer.value is None:
                raise _input_error("layer", "select a layer first")
            job = self._job()
        except StainfreeError as exc:
            show_error(str(exc))
            return None
        self.run_button.enabled = False
        self.progress.min, self.progress.max = 0, 0  # busy indicator while the networks run
        self.status.value = "running..."
        worker = create_worker(job)
        worker.returned.connect(self._add_layers)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.worker = worker
        worker.start()
        return worker

    def _add_layers(self, layers: list[LayerData]) -> None:
        for data, meta, kind in layers:
            getattr(self._viewer, f"add_{kind}")(data, **meta)
        self.status.value = f"done: {len(layers)} layer(s)"

    def _failed(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        from stainfree.errors import StainfreeError

        text = str(exc) if isinstance(exc, StainfreeError) else f"{type(exc).__name__}: {exc}"
        self.status.value = "failed"
        show_error(text)

    def _done(self) -> None:
        self.progress.max, self.progress.value = 1, 1
        self.run_button.enabled = True


def _input_error(source: str, problem: str) -> Exception:
    from stainfree.errors import InputError

    return InputError(source, problem)


class PredictWidget(_RunWidget):
    """Virtual staining: predict the selected (label-free) image layer with one bundle or a folder of them."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.tta = CheckBox(label="test-time augmentation", value=False)
        super().__init__(viewer, [self.tta])

    def _job(self) -> Callable[[], list[LayerData]]:
        from stainfree.api import predict_array

        layer = self.layer.value
        bundles = _bundle_paths(self.bundle.value)
        data, names = _channel_stack(self._viewer, layer)
        spatial = min(data.ndim - bool(names), 3)
        axes = ("C" if names else "") + "ZYX"[3 - spatial :]
        voxel = _voxel_size(layer)
        base = str(layer.name).split(" [")[0]
        tta = bool(self.tta.value)

        def job() -> list[LayerData]:
            pred, out_names, vox = predict_array(
                bundles, data, axes=axes, channel_names=names or None, voxel_size_um=voxel, tta=tta
            )
            out_axes = "CZYX"[4 - pred.ndim :] if pred.ndim <= 4 else "TCZYX"
            return image_layers(pred, out_axes, vox, out_names, f"{base} prediction")

        return job


class SegmentWidget(_RunWidget):
    """Organelles from one dye: segment the 15 compartments of the selected Nile Red layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.threshold = FloatSpinBox(
            label="threshold (0 = each bundle's own)", value=0.0, min=0.0, max=0.99, step=0.05
        )
        self.tta = CheckBox(label="test-time augmentation", value=False)
        self.add_masks = CheckBox(label="add the 15 masks", value=False)
        super().__init__(viewer, [self.threshold, self.tta, self.add_masks])

    def _job(self) -> Callable[[], list[LayerData]]:
        from stainfree.api import segment_array
        from stainfree.types import COMPARTMENTS

        layer = self.layer.value
        bundles = _bundle_paths(self.bundle.value)
        data, names = _channel_stack(self._viewer, layer)
        if not names and data.ndim < 3:
            raise _input_error(str(layer.name), "needs the yellow and red Nile Red channels")
        voxel = _voxel_size(layer)
        base = str(layer.name).split(" [")[0]
        threshold, tta, with_masks = (
            float(self.threshold.value) or None,
            bool(self.tta.value),
            bool(self.add_masks.value),
        )

        def job() -> list[LayerData]:
            masks, labels = segment_array(
                data, bundles, channel_names=names or None, voxel_size_um=voxel, threshold=threshold, tta=tta
            )
            out = [label_map_layer(labels, voxel, f"{base} compartments")]
            if with_masks:
                out.extend(mask_layers(masks, COMPARTMENTS, voxel, f"{base} masks"))
            return out

        return job


class QuantifyWidget(_RunWidget):
    """Quantify the objects of the selected label map; centroids come back as Points coloured by class."""

    layer_types = ("labels",)

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.nilered = ComboBox(label="Nile Red (optional)", choices=self._image_choices)
        super().__init__(viewer, [self.nilered], needs_bundle=False)

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        return [("(none)", None)] + [
            (str(lay.name), lay) for lay in self._viewer.layers if _layer_type(lay) == "image"
        ]

    def _refresh(self, event: Any = None) -> None:
        super()._refresh(event)
        self.nilered.reset_choices()

    def _job(self) -> Callable[[], list[LayerData]]:
        import numpy as np

        from stainfree.api import quantify

        layer = self.layer.value
        labels = np.asarray(layer.data)
        if labels.ndim == 2:
            labels = labels[None]
        nilered = None
        if self.nilered.value is not None:
            nilered, _ = _channel_stack(self._viewer, self.nilered.value)
            if nilered.ndim == 3:
                nilered = nilered[:, None]
        voxel = _voxel_size(layer)
        z, y, x = (1.0 if v is None else float(v) for v in voxel)
        base = str(layer.name)

        def job() -> list[LayerData]:
            tables = quantify(
                labels,
                nilered=nilered,
                voxel_size_um=(z, y, x),
                axes="ZYX",
                kind="labels",
            )
            layer_data = points_layer(tables["objects"], f"{base} objects")
            return [layer_data] if layer_data is not None else []

        return job
