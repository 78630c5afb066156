"""Predict an image of any size with a network: sliding window, Gaussian blending, bounded memory.

The core, :func:`predict_array`, takes a plain ``torch.nn.Module`` and a normalised array. Big images are cut
into blocks of a few tiles plus a halo of context; each block is read on its own (so a lazy dask array is only
read block by block), run through MONAI's ``sliding_window_inference`` with Gaussian weights on every axis,
and its core is written into the output (an in-memory array, a numpy memmap or a zarr array). Peak memory is
therefore set by the block, not by the image.

:func:`predict_with_bundle` and :func:`predict_file` add what a saved model bundle knows: the normalization
and voxel size it was trained with, and the output activation of its task.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.types import ImageMeta

#: Default largest block, in voxels of one channel including its halo (64 Mi voxels = 256 MB of float32).
DEFAULT_BLOCK_VOXELS = 1 << 24

OutSpec = Any  # an array-like with __setitem__, or a callable (shape, dtype) -> such an array

__all__ = [
    "DEFAULT_BLOCK_VOXELS",
    "default_roi_size",
    "gaussian_weights",
    "model_divisor",
    "predict_array",
    "predict_file",
    "predict_with_bundle",
]


# ----- pure helpers ---------------------------------------------------------------------------------------


def _round_up(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)


def model_divisor(model: Any, spatial_dims: int) -> tuple[int, ...]:
    """Per-axis size a network's input must be a multiple of.

    Read from a ``divisor`` (or ``size_divisor``) attribute of the model when it has one (an int or one int
    per axis), else ``2 ** model.depth`` (stainfree's U-Net) or the product of ``model.strides`` (MONAI
    U-Nets); otherwise 16, right for U-Nets of depth <= 4 that halve every axis.
    """
    for name in ("divisor", "size_divisor", "required_divisor"):
        value = getattr(model, name, None)
        if callable(value):
            value = value()
        if value is not None:
            if isinstance(value, int):
                return (int(value),) * spatial_dims
            value = tuple(int(v) for v in value)
            return value[-spatial_dims:] if len(value) >= spatial_dims else (value[0],) * spatial_dims
    depth = getattr(model, "depth", None)
    if isinstance(depth, int) and depth >= 0:
        return (2**depth,) * spatial_dims
    strides = getattr(model, "strides", None)
    if isinstance(strides, (tuple, list)) and strides and all(isinstance(v, int) for v in strides):
        return (int(np.prod(strides)),) * spatial_dims
    return (16,) * spatial_dims


def default_roi_size(spatial_dims: int) -> tuple[int, ...]:
    """Tile shape used when none is given: (32, 128, 128) in 3D, (256, 256) in 2D."""
    return (32, 128, 128) if spatial_dims == 3 else (256, 256)


def _effective_roi(
    roi_size: Sequence[int] | int, shape: Sequence[int], divisor: Sequence[int]
) -> tuple[int, ...]:
    """Tile shape: a multiple of the divisor on every axis, never larger than the (rounded-up) image."""
    roi = (roi_size,) * len(shape) if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    if len(roi) != len(shape):
        raise InputError("roi_size", f"needs {len(shape)} values for this image, got {len(roi)}")
    if any(r < 1 for r in roi):
        raise InputError("roi_size", f"tile sizes must be positive, got {roi}")
    return tuple(min(_round_up(r, d), _round_up(s, d)) for r, s, d in zip(roi, shape, divisor, strict=True))


def _block_grid(
    shape: Sequence[int], roi: Sequence[int], halo: Sequence[int], max_block_voxels: int
) -> tuple[tuple[int, ...], list[tuple[tuple[int, int], ...]]]:
    """Split an image into blocks (multiples of the tile) whose size with halo stays under
    ``max_block_voxels``.

    Returns the block shape and, for every block, its core ``(start, stop)`` per axis.
    """
    block = [_round_up(s, r) for s, r in zip(shape, roi, strict=True)]

    def voxels(b: Sequence[int]) -> int:
        return int(np.prod([min(bb + 2 * h, s + 2 * h) for bb, h, s in zip(b, halo, shape, strict=True)]))

    while voxels(block) > max_block_voxels:
        # shrink the axis with the most tiles in the block; stop at one tile per axis
        tiles = [b // r for b, r in zip(block, roi, strict=True)]
        axis = int(np.argmax(tiles))
        if tiles[axis] <= 1:
            break
        block[axis] = max(roi[axis], _round_up(block[axis] // 2, roi[axis]))
    block = [min(b, s) for b, s in zip(block, shape, strict=True)]
    ranges = [[(a, min(a + b, s)) for a in range(0, s, b)] for s, b in zip(shape, block, strict=True)]
    return tuple(block), list(itertools.product(*ranges))


def _extent(start: int, stop: int, halo: int, roi: int, size: int) -> tuple[int, int]:
    """Core plus halo, clipped to the image and grown to at least one tile where the image allows."""
    a, b = max(start - halo, 0), min(stop + halo, size)
    short = min(roi, size) - (b - a)
    if short > 0:
        a = max(a - short, 0)
        b = min(a + max(roi, b - a), size)
    return a, b


def _pad_to(block: np.ndarray, minimum: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad the last ``len(minimum)`` axes at the end to at least ``minimum``; return the crop back."""
    lead = block.ndim - len(minimum)
    spatial = block.shape[lead:]
    pads = [(0, max(m - s, 0)) for s, m in zip(spatial, minimum, strict=True)]
    crop = tuple(slice(0, s) for s in spatial)
    if not any(p[1] for p in pads):
        return block, crop
    out = block
    for ax, (p, s) in enumerate(zip(pads, spatial, strict=True), start=lead):
        if p[1]:
            width = [(0, 0)] * block.ndim
            width[ax] = p
            out = np.pad(out, width, mode="reflect" if s > 1 and p[1] < s else "symmetric")
    return out, crop


# ----- the core -------------------------------------------------------------------------------------------


def gaussian_weights(roi: Sequence[int], sigma_scale: float = 0.125, floor: float = 1e-3) -> np.ndarray:
    """Separable Gaussian tile weights (max 1), floored per axis so that no product ever reaches zero.

    Flooring each axis (rather than the product, as MONAI's default map does) keeps a voxel at a tile's edge
    weighted ~``floor`` times less than one near another tile's centre on *every* axis, so the padded edges of
    a tile never leak into the blend near image corners.
    """
    weights = np.ones((), dtype=np.float64)
    for r in roi:
        pos = np.arange(r, dtype=np.float64) - (r - 1) / 2.0
        g = np.maximum(np.exp(-(pos**2) / (2.0 * (sigma_scale * r) ** 2)), floor)
        weights = np.multiply.outer(weights, g)
    return weights.astype(np.float32)


def _window_runner(
    model: Any,
    *,
    roi: tuple[int, ...],
    overlap: float,
    sw_batch_size: int,
    blend: str,
    bf16: bool,
    device: str,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function running sliding-window inference on one (C, *spatial) float32 block."""
    import torch
    from monai.inferers import sliding_window_inference

    weight_map = None
    if blend == "gaussian":
        weight_map = torch.from_numpy(gaussian_weights(roi))[None, None]

    def run(block: np.ndarray) -> np.ndarray:
        # (C, *spatial) -> (C_out, *spatial); a batch (N, C, *spatial) of planes -> (N, C_out, *spatial)
        batched = block.ndim == len(roi) + 2
        padded, crop = _pad_to(block, roi)
        tensor = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
        if not batched:
            tensor = tensor[None]

        def predictor(window: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                return model(window).float()

        with torch.inference_mode():
            result = sliding_window_inference(
                tensor,
                roi_size=roi,
                sw_batch_size=sw_batch_size,
                predictor=predictor,
                overlap=overlap,
                mode=blend,
                roi_weight_map=weight_map,
                sw_device=device,
                device="cpu",
            )
        out = result.float().numpy()[(slice(None), slice(None), *crop)]
        return out if batched else out[0]

    return run


def border_margin(roi: Sequence[int]) -> tuple[int, ...]:
    """Voxels of mirrored context beyond the image border per axis: 1/8 of the tile in Y and X, none in Z.

    Mirroring is sound in the plane, where content is translation-invariant; not along Z, where a
    bright-field stack changes focus plane by plane and a network may have learned the whole stack.
    """
    in_plane = [0 if r <= 1 else max(1, int(r) // 8) for r in roi[-2:]]
    return (*([0] * (len(roi) - 2)), *in_plane)


def _predict_spatial(
    runner: Callable[[np.ndarray], np.ndarray],
    x: Any,
    *,
    roi: tuple[int, ...],
    halo: tuple[int, ...],
    max_block_voxels: int,
    get_out: Callable[[int], Any],
    out_index: tuple,
    on_block: Callable[[], None] | None,
    planes: bool = False,
    margin: tuple[int, ...] | None = None,
) -> None:
    """Predict one (C, *spatial) image block by block, writing cores into ``get_out(n_channels)[out_index]``.

    With ``planes`` the image is (C, Z, Y, X) for a 2D network: a block holds several planes, run as one batch
    (no halo along Z). ``margin``: voxels of mirrored image beyond its border, per axis of the network
    (default :func:`border_margin` of ``roi``).
    """
    margin = border_margin(roi) if margin is None else tuple(margin)
    if planes:
        roi, halo, margin = (1, *roi), (0, *halo), (0, *margin)
    shape = tuple(x.shape[1:])
    _, blocks = _block_grid(shape, roi, halo, max_block_voxels)
    for core in blocks:
        ext = tuple(_extent(a, b, h, r, s) for (a, b), h, r, s in zip(core, halo, roi, shape, strict=True))
        read = x[(slice(None), *(slice(a, b) for a, b in ext))]
        block = np.asarray(read.compute() if hasattr(read, "compute") else read, dtype=np.float32)
        # where the block meets the image border, mirror the image outwards: no output voxel then sits at the
        # network's zero-padded edge (a net trained on patches can paint a line along the border)
        pads = [
            (min(m if a == 0 else 0, b - a - 1), min(m if b == s else 0, b - a - 1))
            for (a, b), m, s in zip(ext, margin, shape, strict=True)
        ]
        if any(p for pair in pads for p in pair):
            block = np.pad(block, [(0, 0), *pads], mode="reflect")
        if planes:
            pred = np.moveaxis(runner(np.moveaxis(block, 1, 0)), 0, 1)
        else:
            pred = runner(block)
        keep = tuple(slice(p0, p0 + b - a) for (p0, _), (a, b) in zip(pads, ext, strict=True))
        pred = pred[(slice(None), *keep)]
        inner = tuple(slice(a - ea, b - ea) for (a, b), (ea, _) in zip(core, ext, strict=True))
        out = get_out(pred.shape[0])
        out[(*out_index, slice(None), *(slice(a, b) for a, b in core))] = pred[(slice(None), *inner)]
        if on_block is not None:
            on_block()


def _count_blocks(
    shape: Sequence[int], roi: tuple[int, ...], halo: tuple[int, ...], max_block_voxels: int
) -> int:
    return len(_block_grid(shape, roi, halo, max_block_voxels)[1])


def predict_array(
    model: Any,
    x: Any,
    *,
    spatial_dims: int,
    roi_size: Sequence[int] | int | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    blend: str = "gaussian",
    bf16: bool = False,
    device: str = "cpu",
    axes: str | None = None,
    out: OutSpec | None = None,
    max_block_voxels: int = DEFAULT_BLOCK_VOXELS,
    divisor: int | Sequence[int] | None = None,
    progress: bool = False,
) -> Any:
    """Run a network over a normalised image of any size, tile by tile, with blended overlaps.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps a (N, C_in, *tile) float tensor to (N, C_out, *tile). It is put in eval mode and moved to
        ``device``.
    x : ndarray or dask array
        Normalised input ``(C, [Z,] Y, X)``; also ``(C, Z, Y, X)`` for a 2D model (predicted slice by slice)
        and ``(T, C, [Z,] Y, X)`` for a time-lapse (predicted frame by frame). Any size: it is padded
        internally to what the network needs and the result is cropped back. A lazy array is read one block at
        a time.
    spatial_dims : int
        2 or 3: the dimensionality of the network.
    roi_size : int or sequence of int, optional
        Tile shape (rounded up to what the network needs, capped by the image); default
        :func:`default_roi_size`.
    overlap : float
        Fraction of a tile shared with its neighbours, in [0, 1).
    sw_batch_size : int
        Tiles per forward pass.
    blend : {"gaussian", "constant"}
        Weights of overlapping tiles; Gaussian weights on every axis hide tile seams.
    bf16 : bool
        Run the network under bfloat16 autocast (output stays float32).
    device : str
        Torch device of the network (``"cpu"``, ``"cuda"``); blending and output stay on the CPU.
    axes : str, optional
        Axis letters of ``x`` (e.g. ``"TCYX"``) when its number of dimensions is ambiguous; by default a 4-D
        input to a 2D network is ``"CZYX"`` and a 5-D input is ``"TCZYX"``.
    out : array-like or callable, optional
        Where to write: an array of the output shape, or ``callable(shape, dtype) -> array`` (e.g. a numpy
        memmap or a zarr array) called once the number of output channels is known. Default: a new numpy
        array.
    max_block_voxels : int
        Largest block (per channel, with its halo) held in memory at once.
    divisor : int or sequence of int, optional
        Size the network needs every tile axis to be a multiple of; normally found on the model
        (:func:`model_divisor`).
    progress : bool
        Show a rich progress bar over blocks.

    Returns
    -------
    array
        float32 prediction ``([T,] C_out, [Z,] Y, X)``: the same spatial shape as ``x`` (the object given or
        made by ``out``).
    """
    import torch

    if spatial_dims not in (2, 3):
        raise InputError("model", f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not 0.0 <= overlap < 1.0:
        raise InputError("overlap", f"must be in [0, 1), got {overlap}")
    if blend not in ("gaussian", "constant"):
        raise InputError("blend", f"must be 'gaussian' or 'constant', got {blend!r}")
    ndim = len(x.shape)
    if axes is None:
        axes = {
            (2, 3): "CYX",
            (2, 4): "CZYX",
            (2, 5): "TCZYX",
            (3, 4): "CZYX",
            (3, 5): "TCZYX",
        }.get((spatial_dims, ndim), "")
    if (
        len(axes) != ndim
        or axes.lstrip("T") not in ("CYX", "CZYX")
        or (spatial_dims == 3 and "Z" not in axes)
    ):
        raise InputError(
            "input",
            f"a {spatial_dims}D network needs (C, {'Z, ' if spatial_dims == 3 else '[Z,] '}Y, X) or a "
            f"time-lapse of those; got an array of shape {tuple(x.shape)}",
        )
    if min(x.shape) < 1:
        raise InputError("input", f"empty image of shape {tuple(x.shape)}")

    if isinstance(model, torch.nn.Module):
        model = model.eval().to(device)
    spatial_shape = tuple(x.shape[axes.index("C") + 1 :])
    net_shape = spatial_shape[-spatial_dims:]
    if divisor is None:
        divisor = model_divisor(model, spatial_dims)
    elif isinstance(divisor, int):
        divisor = (divisor,) * spatial_dims
    requested = roi_size or default_roi_size(spatial_dims)
    # mirrored context beyond the image border; the tile may grow by it where the image is smaller than a
    # tile, so that the margin does not cost a second row of tiles
    margin = border_margin(_effective_roi(requested, net_shape, divisor))
    roi = _effective_roi(requested, [s + 2 * m for s, m in zip(net_shape, margin, strict=True)], divisor)
    # context around each block: half a tile, so that every voxel of a block core is covered by tiles as
    # in one pass over the whole image (a thinner halo crowds the tiles near block borders)
    halo = tuple(max(r // 2, int(math.ceil(overlap * r))) for r in roi)

    # frames (T) are predicted one after the other; a 2D network on a volume sees batches of planes
    outer_shape = (x.shape[0],) if axes.startswith("T") else ()
    slice_z = spatial_dims == 2 and "Z" in axes
    holder: dict[str, Any] = {}

    def get_out(n_channels: int) -> Any:
        if "out" not in holder:
            shape = (*outer_shape, n_channels, *spatial_shape)
            if out is None:
                holder["out"] = np.zeros(shape, dtype=np.float32)
            elif callable(out) and not hasattr(out, "__setitem__"):
                holder["out"] = out(shape, np.float32)
            else:
                if tuple(out.shape) != shape:
                    raise InputError("out", f"has shape {tuple(out.shape)}, the prediction needs {shape}")
                holder["out"] = out
        return holder["out"]

    runner = _window_runner(
        model,
        roi=roi,
        overlap=overlap,
        sw_batch_size=sw_batch_size * (8 if slice_z else 1),  # planes of a 2D network share forward passes
        blend=blend,
        bf16=bf16,
        device=device,
    )
    frames = [(t,) for t in range(outer_shape[0])] if outer_shape else [()]
    grid_roi, grid_halo = ((1, *roi), (0, *halo)) if slice_z else (roi, halo)
    n_blocks = _count_blocks(spatial_shape, grid_roi, grid_halo, max_block_voxels) * len(frames)

    def iterate(on_block: Callable[[], None] | None) -> None:
        for t_idx in frames:
            _predict_spatial(
                runner,
                x[t_idx] if t_idx else x,
                roi=roi,
                halo=halo,
                max_block_voxels=max_block_voxels,
                get_out=get_out,
                out_index=t_idx,
                on_block=on_block,
                planes=slice_z,
                margin=margin,
            )

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("predicting", total=n_blocks)
            iterate(lambda: bar.advance(task))
    else:
        iterate(None)
    return holder["out"]


# ----- bundles --------------------------------------------------------------------------------------------


def _load(bundle: Any) -> Any:
    """A loaded bundle from a bundle or a bundle path."""
    if hasattr(bundle, "model") and hasattr(bundle, "config"):
        return bundle
    from stainfree.models.bundle import load_bundle

    return load_bundle(bundle)


def output_channel_names(config: Any) -> list[str]:
    """Names of a bundle's output channels: target channel names (regression) or class names
    (segmentation)."""
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
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    progress: bool = False,
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
    roi_size, overlap, sw_batch_size, bf16, device, progress
        See :func:`predict_array`; the tile defaults to :func:`default_bundle_roi`.

    Returns
    -------
    prediction : ndarray of float32
        ``([T,] C_out, [Z,] Y, X)``: Z present when the input had it (and the model is not ``zstack_to_2d``).
        Regression in the bundle's target units (normalized), segmentation as probabilities.
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
        channel_names=tuple(output_channel_names(cfg)),
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
    pred = apply_activation(np.asarray(pred, dtype=np.float32), cfg.task)
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
    kwargs = {"voxel_size_um": meta.voxel_size_um, "channel_names": list(meta.channel_names)}
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
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    bf16: bool = False,
    device: str = "cpu",
    progress: bool = True,
    stream_above_voxels: int = 1 << 26,
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
    roi_size, overlap, sw_batch_size, bf16, device, progress
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
    image, meta = read_image(input_path, lazy=True)
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
    )
    return write_prediction(output_path, pred, out_meta)


# ----- bounded-memory path for big files ------------------------------------------------------------------


def _streamable(cfg: Any, meta: ImageMeta) -> bool:
    """True when an image can be predicted block by block: no resampling or input transform, one frame."""
    from stainfree.data.preprocess import zoom_factors

    if "T" in meta.axes or cfg.input_transform != "none" or cfg.input_mode == "zstack_to_2d":
        return False
    if cfg.voxel_size_um is None:
        return True
    shape = meta.shape[-3:] if "Z" in meta.axes else (1, *meta.shape[-2:])
    return (
        zoom_factors(meta.voxel_size_um, cfg.voxel_size_um, shape, resample_z=cfg.input_mode == "3d") is None
    )


def _streaming_stats(x: Any, cfg: Any) -> list[dict[str, Any]]:
    """Per-channel normalization statistics of a lazy (C, Z, Y, X) image, read chunk by chunk."""
    from stainfree.data.preprocess import normalize

    if cfg.normalization_scope == "dataset" and cfg.normalization_stats:
        return [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in cfg.normalization_stats]
    stats = []
    for c in range(x.shape[0]):
        channel = x[c]
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


def _read(a: Any) -> np.ndarray:
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


class _Normalized:
    """A lazy (C, Z, Y, X) view that selects channels and normalizes whatever block is read from it."""

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

    def __init__(self, array: Any, task: str, squeeze_z: bool) -> None:
        self.array, self.task, self.squeeze_z = array, task, squeeze_z
        self.shape = (array.shape[0], 1, *array.shape[1:]) if squeeze_z else tuple(array.shape)

    def __setitem__(self, index: tuple, value: np.ndarray) -> None:
        value = apply_activation(np.asarray(value, dtype=np.float32), self.task)
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
    x = _Normalized(czyx, channels, [])
    x.stats = _streaming_stats(_Normalized(czyx, channels, [{"method": "none"}] * len(channels)), cfg)
    dims = 2 if cfg.input_mode == "2d" else 3
    roi = kwargs.pop("roi_size") or default_bundle_roi(cfg)
    if not isinstance(roi, int) and len(roi) > dims:
        roi = tuple(roi)[-dims:]
    keep_z = "Z" in meta.axes
    names = output_channel_names(cfg)
    n_out = len(names)
    spatial = tuple(czyx.shape[1:]) if keep_z else tuple(czyx.shape[2:])
    axes = "C" + ("Z" if keep_z else "") + "YX"
    out_path = Path(output_path)
    common = {"spatial_dims": dims, "roi_size": roi, "divisor": 2 ** int(cfg.model.depth), **kwargs}
    if is_zarr_path(out_path):
        writer = create_ome_zarr(out_path, (n_out, *spatial), np.float32, axes, meta.voxel_size_um, names)
        try:
            predict_array(bundle.model, x, out=_Activated(writer.array, cfg.task, not keep_z), **common)
        except BaseException as exc:
            writer.abort(exc)
            raise
        return writer.finalize()
    with tempfile.TemporaryDirectory(dir=out_path.parent if out_path.parent.exists() else None) as tmp:
        mm = np.lib.format.open_memmap(
            Path(tmp) / "pred.npy", mode="w+", dtype=np.float32, shape=(n_out, *spatial)
        )
        predict_array(bundle.model, x, out=_Activated(mm, cfg.task, not keep_z), **common)
        mm.flush()
        return write_ome_tiff(out_path, mm, axes, meta.voxel_size_um, names)
