"""Predict with a saved model bundle: an array, an image file, or a big file streamed block by block.

:func:`predict_with_bundle` and :func:`predict_file` add what a saved model bundle knows to the tiling
and blending core (:func:`~stainfree.inference.tiling.predict_array`, re-exported here): the normalization and
voxel size it was trained with, and the output activation of its task. Files too big for memory are normalised
and written block by block (bounded memory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.inference.tiling import (
    DEFAULT_BLOCK_VOXELS,
    default_roi_size,
    gaussian_weights,
    model_divisor,
    predict_array,
)
from stainfree.inference.windows import DEFAULT_OVERLAP
from stainfree.types import ImageMeta

__all__ = [
    "DEFAULT_BLOCK_VOXELS",
    "DEFAULT_OVERLAP",
    "default_roi_size",
    "gaussian_weights",
    "model_divisor",
    "predict_array",
    "predict_file",
    "predict_with_bundle",
]


# ----- bundles --------------------------------------------------------------------------------------------


def _load(bundle: Any) -> Any:
    """A loaded bundle from a bundle or a bundle path."""
    if hasattr(bundle, "model") and hasattr(bundle, "config"):
        return bundle
    from stainfree.models.bundle import load_bundle

    return load_bundle(bundle)


def output_channel_names(config: Any, *, uncertainty: bool = False) -> list[str]:
    """Names of a bundle's output channels: target channel names (regression) or class names
    (segmentation); with ``uncertainty``, followed by ``<name>_tta_spread`` for each."""
    names = _output_names(config)
    return names + [f"{n}_tta_spread" for n in names] if uncertainty else names


def _output_names(config: Any) -> list[str]:
    n = int(config.model.out_channels)
    if config.task == "regression":
        names = [str(c) for c in (config.target_channels or [])]
        if len(names) == n and not any(c.lstrip("-").isdigit() for c in names):
            return names
        return [f"{config.name}_{i}" if n > 1 else str(config.name) for i in range(n)]
    names = [str(c) for c in (config.class_names or [])]
    if len(names) == n:
        return names
    return [f"class_{i}" for i in range(n)]


def apply_activation(pred: np.ndarray, task: str) -> np.ndarray:
    """Output activation of a task on (C, ...) logits: none (regression), sigmoid (binary), softmax over C."""
    from scipy.special import expit, softmax

    if task == "binary":
        return expit(pred).astype(np.float32, copy=False)
    if task == "multiclass":
        return softmax(pred, axis=0).astype(np.float32, copy=False)
    return pred


def _guess_axes(ndim: int) -> str:
    return {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}.get(ndim, "")


def default_bundle_roi(config: Any) -> tuple[int, ...]:
    """Prediction tile of a bundle: at least the training patch, at least :func:`default_roi_size`."""
    dims = int(config.spatial_dims)
    base = default_roi_size(dims)
    patch = [int(p) for p in (config.patch_shape or [])][-dims:]
    if len(patch) != dims:
        return base
    return tuple(max(p, b) for p, b in zip(patch, base, strict=True))


def predict_with_bundle(
    bundle: Any,
    image: Any,
    meta: ImageMeta | None = None,
    *,
    roi_size: Sequence[int] | int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    progress: bool = False,
    tta: bool = False,
    uncertainty: bool = False,
    compile: bool = False,
) -> tuple[np.ndarray, ImageMeta]:
    """Predict an image with a model bundle, exactly as the model saw its training data.

    The input goes through the training helper's ``prepare_input`` (channel selection, input transform,
    resampling to the bundle's voxel size, normalization with the stored method or statistics); the network
    runs tile by tile (:func:`predict_array`); the task's activation is applied (none / sigmoid / softmax) and
    the result is resampled back onto the input grid.

    Parameters
    ----------
    bundle : Bundle or path
        A loaded bundle or a bundle folder.
    image : ndarray
        Image in the order of ``meta.axes`` (``(T)(C)(Z)YX``); without ``meta`` a 2-5 D array is read as
        ``YX``, ``ZYX``, ``CZYX``, ``TCZYX``.
    meta : ImageMeta, optional
        Axes, channel names (for channel selection by name) and voxel size (for resampling).
    roi_size, overlap, sw_batch_size, bf16, device, progress, tta, uncertainty, compile
        See :func:`predict_array`; the tile defaults to :func:`default_bundle_roi`.

    Returns
    -------
    prediction : ndarray of float32
        ``([T,] C_out, [Z,] Y, X)``: Z present when the input had it (and the model is not ``zstack_to_2d``).
        Regression in the bundle's target units (normalized), segmentation as probabilities. With
        ``uncertainty`` (and ``tta``), ``C_out`` more channels: the spread of the views (regression units, or
        logits for segmentation).
    meta : ImageMeta
        Axes, shape, voxel size of the input and the output channel names.
    """
    b = _load(bundle)
    cfg = b.config
    image_shape = tuple(image.shape)
    axes = meta.axes if meta is not None else _guess_axes(len(image_shape))
    if len(axes) != len(image_shape) or not axes.endswith("YX"):
        raise InputError(
            getattr(meta, "path", "") or "image",
            f"cannot read axes {axes!r} for an array of shape {image_shape}",
        )
    has_t = "T" in axes
    frames = range(image_shape[0]) if has_t else [None]
    results = []
    for t in frames:
        frame = image[t] if t is not None else image
        frame_axes = axes.replace("T", "")
        index = tuple(slice(None) if a in frame_axes else None for a in "CZYX")
        czyx = np.asarray(frame)[index]
        results.append(
            _predict_czyx(
                b,
                czyx,
                meta,
                roi_size=roi_size,
                overlap=overlap,
                sw_batch_size=sw_batch_size,
                bf16=bf16,
                device=device,
                progress=progress,
                tta=tta,
                uncertainty=uncertainty and tta,
                compile=compile,
            )
        )
    pred = np.stack(results) if has_t else results[0]
    keep_z = "Z" in axes and cfg.input_mode != "zstack_to_2d"
    if not keep_z:
        pred = pred[..., 0, :, :]
    out_axes = ("T" if has_t else "") + "C" + ("Z" if keep_z else "") + "YX"
    out_meta = ImageMeta(
        axes=out_axes,
        shape=tuple(pred.shape),
        dtype=str(pred.dtype),
        voxel_size_um=meta.voxel_size_um if meta is not None else (None, None, None),
        channel_names=tuple(output_channel_names(cfg, uncertainty=uncertainty and tta)),
        path="",
        extra={"task": cfg.task, "model": cfg.name},
    )
    return pred, out_meta


def _predict_czyx(b: Any, czyx: np.ndarray, meta: ImageMeta | None, **kwargs: Any) -> np.ndarray:
    """(C, Z, Y, X) image -> (C_out, Z, Y, X) activated prediction on the same grid."""
    from stainfree.data.preprocess import prepare_input, restore_output

    cfg = b.config
    x = prepare_input(czyx, cfg, meta)
    mode = cfg.input_mode
    dims = 2 if mode in ("2d", "zstack_to_2d") else 3
    if int(cfg.spatial_dims) != dims:
        raise InputError(
            str(getattr(b, "path", "") or "bundle"), f"input_mode {mode!r} needs a {dims}D network"
        )
    roi = kwargs.pop("roi_size") or default_bundle_roi(cfg)
    if not isinstance(roi, int) and len(roi) > dims:  # a Z Y X tile for a 2D model: its Y X
        roi = tuple(roi)[-dims:]
    common = {"spatial_dims": dims, "roi_size": roi, "divisor": 2 ** int(cfg.model.depth), **kwargs}
    if mode == "zstack_to_2d":
        pred = predict_array(b.model, x[:, 0], **common)[:, None]
        shape = (1, *czyx.shape[2:])
    else:
        pred = predict_array(b.model, x, **common)
        shape = czyx.shape[1:]
    pred = np.asarray(pred, dtype=np.float32)
    n_out = int(cfg.model.out_channels)
    # with an uncertainty channel per output (after the outputs), only the outputs are activated
    pred = np.concatenate([apply_activation(pred[:n_out], cfg.task), pred[n_out:]])
    return restore_output(pred, shape).astype(np.float32, copy=False)


# ----- files ----------------------------------------------------------------------------------------------


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True when a path names a Zarr store (ends with ``.zarr``)."""
    return str(path).rstrip("/").lower().endswith(".zarr")


def write_prediction(
    path: str | os.PathLike, array: np.ndarray, meta: ImageMeta, *, zarr_above_voxels: int = 1 << 30
) -> Path:
    """Write a prediction as OME-TIFF (``.ome.tif``) or OME-Zarr (``.zarr``), atomically.

    A ``.tif`` path for an output of more than ``zarr_above_voxels`` voxels is written as OME-Zarr beside it
    (``<stem>.ome.zarr``), since such files are impractical as TIFF; the returned path says where.
    """
    from stainfree.io.writers import write_ome_tiff, write_ome_zarr

    path = Path(path)
    kwargs: dict[str, Any] = {"voxel_size_um": meta.voxel_size_um, "channel_names": list(meta.channel_names)}
    if not is_zarr_path(path) and int(np.prod(array.shape)) > zarr_above_voxels:
        stem = path.name.split(".")[0]
        path = path.with_name(f"{stem}.ome.zarr")
    if is_zarr_path(path):
        return write_ome_zarr(path, array, meta.axes, **kwargs)
    return write_ome_tiff(path, array, meta.axes, **kwargs)


def predict_file(
    bundle_path: str | os.PathLike | Any,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    roi_size: Sequence[int] | int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    progress: bool = True,
    stream_above_voxels: int = 1 << 26,
    tta: bool = False,
    uncertainty: bool = False,
    compile: bool = False,
) -> Path:
    """Predict an image file with a bundle and write the result (OME-TIFF, or OME-Zarr for ``.zarr`` / huge).

    Images above ``stream_above_voxels`` voxels that need no resampling and no input transform are predicted
    in bounded memory: read lazily block by block, normalized on the fly with statistics computed in one
    streaming pass (z-score exactly; percentiles on a regular subsample of at most 16 Mi voxels) or stored in
    the bundle, and written block by block (OME-Zarr; an OME-TIFF output goes through a memory-mapped file).

    Parameters
    ----------
    bundle_path : path or Bundle
        The model bundle.
    input_path : path
        Any image :func:`stainfree.io.readers.read_image` reads.
    output_path : path
        ``.ome.tif`` or ``.ome.zarr``; must differ from the input (inputs are never overwritten).
    roi_size, overlap, sw_batch_size, bf16, device, progress, tta, uncertainty, compile
        See :func:`predict_array`.
    stream_above_voxels : int
        Size above which the bounded-memory path is taken.

    Returns
    -------
    Path
        The written file.
    """
    from stainfree.io.readers import read_image

    if Path(output_path).resolve() == Path(input_path).resolve():
        raise InputError(output_path, "the output would overwrite the input image; choose another path")
    bundle = _load(bundle_path)
    image, meta = read_image(input_path, lazy=True, intensities=True)
    if int(np.prod(image.shape)) > stream_above_voxels and _streamable(bundle.config, meta):
        return _predict_streaming(
            bundle,
            image,
            meta,
            output_path,
            roi_size=roi_size,
            overlap=overlap,
            sw_batch_size=sw_batch_size,
            bf16=bf16,
            device=device,
            progress=progress,
            tta=tta,
            uncertainty=uncertainty and tta,
            compile=compile,
        )
    image = np.asarray(image.compute() if hasattr(image, "compute") else image)
    pred, out_meta = predict_with_bundle(
        bundle,
        image,
        meta,
        roi_size=roi_size,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        bf16=bf16,
        device=device,
        progress=progress,
        tta=tta,
        uncertainty=uncertainty,
        compile=compile,
    )
    return write_prediction(output_path, pred, out_meta)


# ----- bounded-memory path for big files ------------------------------------------------------------------


def _streamable(cfg: Any, meta: ImageMeta) -> bool:
    """True when an image can be predicted block by block: no resampling or input transform, one frame."""
    if "T" in meta.axes or cfg.input_transform != "none" or cfg.input_mode == "zstack_to_2d":
        return False
    return not needs_resampling(cfg, meta)


def needs_resampling(cfg: Any, meta: ImageMeta) -> bool:
    """True when a bundle resamples an image of this metadata to its own voxel size before predicting."""
    from stainfree.data.preprocess import zoom_factors

    if cfg.voxel_size_um is None:
        return False
    shape = meta.shape[-3:] if "Z" in meta.axes else (1, *meta.shape[-2:])
    zoom = zoom_factors(meta.voxel_size_um, cfg.voxel_size_um, shape, resample_z=cfg.input_mode == "3d")
    return zoom is not None


def _streaming_stats(x: NormalizedView, cfg: Any) -> list[dict[str, Any]]:
    """Per-channel normalization statistics of a lazy (C, Z, Y, X) image, read chunk by chunk."""
    from stainfree.data.preprocess import normalize

    if cfg.normalization_scope == "dataset" and cfg.normalization_stats:
        return [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in cfg.normalization_stats]
    stats = []
    for c in range(x.shape[0]):
        channel = x.source[x.channels[c]]  # lazy: one channel, read plane by plane (x[c] would read them all)
        if cfg.normalization == "zscore":
            total, total_sq, n = 0.0, 0.0, 0
            for z in range(channel.shape[0]):
                plane = np.asarray(_read(channel[z]), dtype=np.float64)
                total += float(plane.sum())
                total_sq += float(np.square(plane).sum())
                n += plane.size
            mean = total / n
            stats.append(
                {"method": "zscore", "mean": mean, "std": float(np.sqrt(max(total_sq / n - mean**2, 0.0)))}
            )
        elif cfg.normalization == "percentile":
            step = max(1, int(np.ceil((np.prod(channel.shape) / (1 << 24)) ** (1 / 3))))
            sample = np.asarray(_read(channel[::step, ::step, ::step]), dtype=np.float32)
            low, high = cfg.percentile_range
            stats.append(normalize(sample, "percentile", low=low, high=high)[1])
        else:
            stats.append({"method": "none"})
    return stats


def read_array(a: Any) -> np.ndarray:
    """A numpy array from an array or a lazy (dask) one."""
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


_read = read_array


class NormalizedView:
    """A lazy (C, Z, Y, X) view that selects channels and normalizes whatever block ``[:, z, y, x]`` is read
    from it (``stats``: one normalization per selected channel)."""

    def __init__(self, source: Any, channels: list[int], stats: list[dict[str, Any]]) -> None:
        self.source, self.channels, self.stats = source, channels, stats
        self.shape = (len(channels), *source.shape[1:])

    def __getitem__(self, index: tuple) -> np.ndarray:
        from stainfree.data.preprocess import apply_normalization

        rest = index[1:] if isinstance(index, tuple) else ()
        block = [_read(self.source[(c, *rest)]) for c in self.channels]
        return np.stack([apply_normalization(b, s) for b, s in zip(block, self.stats, strict=True)])


class _Activated:
    """Writes blended logits into an array after the task's activation (applied over all channels at once).

    With ``squeeze_z`` the target array has no Z axis: it looks like (C, 1, Y, X) to the writer and the z
    index is dropped on the way in.
    """

    def __init__(self, array: Any, task: str, squeeze_z: bool, n_activated: int | None = None) -> None:
        self.array, self.task, self.squeeze_z = array, task, squeeze_z
        self.n_activated = n_activated  # channels after these (uncertainty) are written as they are
        self.shape = (array.shape[0], 1, *array.shape[1:]) if squeeze_z else tuple(array.shape)

    def __setitem__(self, index: tuple, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.float32)
        k = value.shape[0] if self.n_activated is None else self.n_activated
        value = np.concatenate([apply_activation(value[:k], self.task), value[k:]])
        if self.squeeze_z:
            if isinstance(index[1], slice):  # a (C, 1, y, x) block from a 3D network
                value = value[:, 0]
            index = (index[0], *index[2:])
        self.array[index] = value


def _predict_streaming(
    bundle: Any, image: Any, meta: ImageMeta, output_path: str | os.PathLike, **kwargs: Any
) -> Path:
    """Predict a big image block by block into an OME-Zarr store or a memory-mapped OME-TIFF."""
    import tempfile

    from stainfree.io.arrays import channel_indices
    from stainfree.io.writers import create_ome_zarr, write_ome_tiff

    cfg = bundle.config
    index = tuple(slice(None) if a in meta.axes else None for a in "CZYX")
    czyx = image[index]
    channels = channel_indices(cfg.signal_channels, meta.channel_names, czyx.shape[0], meta.path or "image")
    x = NormalizedView(czyx, channels, [])
    x.stats = _streaming_stats(NormalizedView(czyx, channels, [{"method": "none"}] * len(channels)), cfg)
    dims = 2 if cfg.input_mode == "2d" else 3
    roi = kwargs.pop("roi_size") or default_bundle_roi(cfg)
    if not isinstance(roi, int) and len(roi) > dims:
        roi = tuple(roi)[-dims:]
    keep_z = "Z" in meta.axes
    names = output_channel_names(cfg, uncertainty=bool(kwargs.get("uncertainty")))
    n_out = len(names)
    n_act = int(cfg.model.out_channels)
    spatial = tuple(czyx.shape[1:]) if keep_z else tuple(czyx.shape[2:])
    axes = "C" + ("Z" if keep_z else "") + "YX"
    out_path = Path(output_path)
    common = {"spatial_dims": dims, "roi_size": roi, "divisor": 2 ** int(cfg.model.depth), **kwargs}
    if is_zarr_path(out_path):
        writer = create_ome_zarr(out_path, (n_out, *spatial), np.float32, axes, meta.voxel_size_um, names)
        try:
            predict_array(
                bundle.model, x, out=_Activated(writer.array, cfg.task, not keep_z, n_act), **common
            )
        except BaseException as exc:
            writer.abort(exc)
            raise
        return writer.finalize()
    with tempfile.TemporaryDirectory(dir=out_path.parent if out_path.parent.exists() else None) as tmp:
        mm = np.lib.format.open_memmap(
            Path(tmp) / "pred.npy", mode="w+", dtype=np.float32, shape=(n_out, *spatial)
        )
        predict_array(bundle.model, x, out=_Activated(mm, cfg.task, not keep_z, n_act), **common)
        mm.flush()
        return write_ome_tiff(out_path, mm, axes, meta.voxel_size_um, names)


def streamable(cfg: Any, meta: ImageMeta) -> bool:
    """True when a bundle can predict an image block by block in bounded memory (no resampling, no input
    transform, one frame): the condition of :func:`predict_file`'s streaming path and of the block engine."""
    return _streamable(cfg, meta)
