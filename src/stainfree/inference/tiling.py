"""Tiled prediction of an array of any size: sliding window, Gaussian blending, bounded memory.

The core, :func:`predict_array`, takes a plain ``torch.nn.Module`` and a normalised array. Big images are cut
into blocks of a few tiles plus a halo of context; each block is read on its own (so a lazy dask array is only
read block by block), run through MONAI's ``sliding_window_inference`` with Gaussian weights on every axis,
and its core is written into the output (an in-memory array, a numpy memmap or a zarr array). Peak memory is
therefore set by the block, not by the image.

:mod:`stainfree.inference.predict` adds what a saved model bundle and an image file know.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW_MEMORY

#: Default largest block, in voxels of one channel including its halo (16 Mi voxels = 64 MB of float32).
DEFAULT_BLOCK_VOXELS = 1 << 24

OutSpec = Any  # an array-like with __setitem__, or a callable (shape, dtype) -> such an array


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
    """Tile shape used when none is given: (32, 256, 256) in 3D, (256, 256) in 2D (windows grow by up to the
    overlap so that they cover a block exactly, see :func:`~stainfree.inference.windows.axis_plan`)."""
    return (32, 256, 256) if spatial_dims == 3 else (256, 256)


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
        # a block's extent is clipped to the image: a block that spans an axis needs no halo along it
        return int(np.prod([min(bb + 2 * h, s) for bb, h, s in zip(b, halo, shape, strict=True)]))

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


def dihedral_views(square: bool) -> list[tuple[int, bool]]:
    """The lossless views of a Y-X window for test-time augmentation: (quarter turns, mirrored) pairs; the
    8 of the square's symmetry group for square windows, the 4 that keep the shape otherwise."""
    turns = (0, 1, 2, 3) if square else (0, 2)
    return [(k, flip) for k in turns for flip in (False, True)]


def tta_predictor(model: Callable[[Any], Any], *, square: bool, spread: bool) -> Callable[[Any], Any]:
    """Wrap ``model`` (a batch of windows -> outputs) so that it averages its outputs over the dihedral views
    of each window (each view turned back first); with ``spread`` the per-voxel standard deviation over the
    views follows as extra channels (``C_out`` means, then ``C_out`` spreads)."""
    import torch

    views = dihedral_views(square)

    def run(window: Any) -> Any:
        outs = []
        for k, flip in views:
            v = torch.rot90(window, k, dims=(-2, -1)) if k else window
            v = torch.flip(v, dims=(-1,)) if flip else v
            y = model(v.contiguous())
            y = torch.flip(y, dims=(-1,)) if flip else y
            outs.append(torch.rot90(y, -k, dims=(-2, -1)) if k else y)
        stack = torch.stack(outs)
        mean = stack.mean(dim=0)
        return torch.cat([mean, stack.std(dim=0, unbiased=False)], dim=1) if spread else mean

    return run


def _window_runner(
    model: Any,
    *,
    roi: tuple[int, ...],
    overlap: float,
    sw_batch_size: int,
    blend: str,
    bf16: bool,
    device: str,
    tta: bool = False,
    uncertainty: bool = False,
    divisor: Sequence[int] | None = None,
    compile: bool = False,
    window_memory: int | None = DEFAULT_WINDOW_MEMORY,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function running windowed inference on one (C, *spatial) float32 block, or a batch (N, C, *spatial)
    of planes.

    ``blend="crossfade"`` covers the block with the window plan of
    :func:`~stainfree.inference.windows.tile_plan` (windows of about ``roi``, raised-cosine cross-fades);
    ``"gaussian"`` / ``"constant"`` run MONAI's sliding window with ``roi`` tiles and those weights. The
    network is prepared once (:func:`~stainfree.inference.windows.prepare_model`: batch norms folded,
    optional ``torch.compile``) and runs in inference mode, under bf16 autocast with ``bf16``, in
    channels-last memory on the CPU; with ``tta``
    each window is averaged over its dihedral views (:func:`tta_predictor`). With cross-fades, windows are
    made smaller where one forward pass would hold more activations than ``window_memory`` bytes
    (:func:`~stainfree.inference.windows.window_voxel_budget`).
    """
    import torch

    from stainfree.inference.windows import prepare_model, run_windows, window_voxel_budget

    if divisor is None:
        divisor = model_divisor(model, len(roi))
    divisor = tuple(int(d) for d in divisor)
    max_voxels = window_voxel_budget(model, bf16=bf16, memory=window_memory)
    device_type = torch.device(device).type
    channels_last = isinstance(model, torch.nn.Module) and device_type == "cpu" and len(roi) in (2, 3)
    net = prepare_model(model, device=device, compile=compile)
    memory_format = torch.channels_last_3d if len(roi) == 3 else torch.channels_last
    if channels_last and isinstance(net, torch.nn.Module):
        # ~1.4x in fp32 here, ~2x and a third less memory in bf16 (oneDNN reorders no activation)
        net = net.to(memory_format=memory_format)  # type: ignore[call-overload]

    def forward(window: torch.Tensor) -> torch.Tensor:
        window = window.to(device)
        if channels_last:
            window = window.contiguous(memory_format=memory_format)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
            return net(window).float().cpu().contiguous()

    predictor = tta_predictor(forward, square=roi[-1] == roi[-2], spread=uncertainty) if tta else forward

    def run(block: np.ndarray) -> np.ndarray:
        # (C, *spatial) -> (C_out, *spatial); a batch (N, C, *spatial) of planes -> (N, C_out, *spatial)
        batched = block.ndim == len(roi) + 2
        tensor = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        if not batched:
            tensor = tensor[None]
        with torch.inference_mode():
            if blend == "crossfade":
                result = run_windows(
                    predictor,
                    tensor,
                    tile=roi,
                    overlap=overlap,
                    divisor=divisor,
                    batch=sw_batch_size,
                    max_voxels=max_voxels,
                )
                out = result.numpy()
            else:
                from monai.inferers import sliding_window_inference

                padded, crop = _pad_to(tensor.numpy(), roi)
                weight_map = (
                    torch.from_numpy(gaussian_weights(roi))[None, None] if blend == "gaussian" else None
                )
                mres = sliding_window_inference(
                    torch.from_numpy(np.ascontiguousarray(padded)),
                    roi_size=roi,
                    sw_batch_size=sw_batch_size,
                    predictor=predictor,
                    overlap=overlap,
                    mode=blend,
                    roi_weight_map=weight_map,
                    sw_device="cpu",
                    device="cpu",
                )
                assert isinstance(mres, torch.Tensor)  # the predictor returns a tensor, so MONAI does too
                out = mres.float().numpy()[(slice(None), slice(None), *crop)]
        return out if batched else out[0]

    return run


#: Largest mirrored margin beyond the image border, in voxels (see :func:`border_margin`).
MAX_BORDER_MARGIN = 8


def border_margin(roi: Sequence[int]) -> tuple[int, ...]:
    """Voxels of mirrored context beyond the image border per axis: 1/8 of the tile in Y and X, at most
    :data:`MAX_BORDER_MARGIN` (so that a 512-voxel axis stays two windows), none in Z.

    Mirroring is sound in the plane, where content is translation-invariant; not along Z, where a
    bright-field stack changes focus plane by plane and a network may have learned the whole stack.
    """
    in_plane = [0 if r <= 1 else min(MAX_BORDER_MARGIN, max(1, int(r) // 8)) for r in roi[-2:]]
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
    extents = [_block_extent(core, halo, roi, shape) for core in blocks]

    # the next block is read in a background thread while the network runs on the current one
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(_read_block, x, extents[0]) if extents else None
        for n, (core, ext) in enumerate(zip(blocks, extents, strict=True)):
            assert pending is not None
            block = pending.result()
            pending = reader.submit(_read_block, x, extents[n + 1]) if n + 1 < len(extents) else None
            pred, inner = _block_prediction(
                runner, block, core, ext, shape=shape, margin=margin, planes=planes
            )
            out = get_out(pred.shape[0])
            out[(*out_index, slice(None), *(slice(a, b) for a, b in core))] = pred[(slice(None), *inner)]
            if on_block is not None:
                on_block()


def _block_extent(
    core: Sequence[tuple[int, int]], halo: Sequence[int], roi: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[int, int], ...]:
    """What is read for one block: its core plus the halo, within the image."""
    return tuple(_extent(a, b, h, r, s) for (a, b), h, r, s in zip(core, halo, roi, shape, strict=True))


def _read_block(x: Any, ext: Sequence[tuple[int, int]]) -> np.ndarray:
    """Read the ``(C, *spatial)`` region ``ext`` of ``x`` (array, lazy or normalizing view) as float32."""
    read = x[(slice(None), *(slice(a, b) for a, b in ext))]
    return np.asarray(read.compute() if hasattr(read, "compute") else read, dtype=np.float32)


def _block_prediction(
    runner: Callable[[np.ndarray], np.ndarray],
    block: np.ndarray,
    core: Sequence[tuple[int, int]],
    ext: Sequence[tuple[int, int]],
    *,
    shape: Sequence[int],
    margin: Sequence[int],
    planes: bool,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Predict one block read at ``ext``: the prediction of ``ext`` and the slices of ``core`` in it."""
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
    return pred, inner


def _tile_geometry(
    requested: Sequence[int] | int, net_shape: Sequence[int], divisor: Sequence[int], overlap: float
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Tile, block halo and border margin of a network's axes (the same for every block of an image)."""
    # mirrored context beyond the image border; the tile may grow by it where the image is smaller than a
    # tile, so that the margin does not cost a second row of tiles
    margin = border_margin(_effective_roi(requested, net_shape, divisor))
    roi = _effective_roi(requested, [s + 2 * m for s, m in zip(net_shape, margin, strict=True)], divisor)
    # context around each block: half a tile, so that every voxel of a block core is covered by tiles as
    # in one pass over the whole image (a thinner halo crowds the tiles near block borders)
    halo = tuple(max(r // 2, int(math.ceil(overlap * r))) for r in roi)
    return roi, halo, margin


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
    overlap: float = DEFAULT_OVERLAP,
    sw_batch_size: int = 1,
    blend: str = "crossfade",
    bf16: bool = False,
    device: str = "cpu",
    axes: str | None = None,
    out: OutSpec | None = None,
    max_block_voxels: int = DEFAULT_BLOCK_VOXELS,
    divisor: int | Sequence[int] | None = None,
    progress: bool = False,
    tta: bool = False,
    uncertainty: bool = False,
    compile: bool = False,
    window_memory: int | None = DEFAULT_WINDOW_MEMORY,
) -> Any:
    """Run a network over a normalised image of any size, window by window, with blended overlaps.

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
        :func:`default_roi_size`. With cross-fading, windows grow by up to the overlap so that the fewest of
        them cover each block exactly (a 512 x 512 plane: 2 x 2 windows of 288 for a 256 tile).
    overlap : float
        Fraction of a tile shared with its neighbours, in [0, 1); default 3/16.
    sw_batch_size : int
        Windows per forward pass.
    blend : {"crossfade", "gaussian", "constant"}
        How overlapping windows are blended: raised-cosine cross-fades over the window plan of
        :func:`~stainfree.inference.windows.tile_plan` (close to 1x the image's voxels), or MONAI's sliding
        window over ``roi_size`` tiles with Gaussian or constant weights.
    bf16 : bool
        Run the network under bfloat16 autocast (output stays float32); fast where the device computes bf16
        natively (:func:`~stainfree.inference.windows.native_bf16`).
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
    tta : bool
        Test-time augmentation: every tile is predicted in its 8 flipped and turned Y-X views (4 where the
        tile is not square) and the views are averaged (8x the compute).
    uncertainty : bool
        With ``tta``: append the per-voxel standard deviation over the views as ``C_out`` more channels.
    compile : bool
        Run the network through ``torch.compile`` (eager when compiling fails).
    window_memory : int or None
        Bytes the activations of one forward pass may take (estimated from the network's width, see
        :func:`~stainfree.inference.windows.window_voxel_budget`): with cross-fades, windows are split into
        more, smaller ones where they would take more; default 768 MiB, None: no limit.

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
    if blend not in ("crossfade", "gaussian", "constant"):
        raise InputError("blend", f"must be 'crossfade', 'gaussian' or 'constant', got {blend!r}")
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
        model = model.eval()
    spatial_shape = tuple(x.shape[axes.index("C") + 1 :])
    net_shape = spatial_shape[-spatial_dims:]
    if divisor is None:
        divisor = model_divisor(model, spatial_dims)
    elif isinstance(divisor, int):
        divisor = (divisor,) * spatial_dims
    requested = roi_size or default_roi_size(spatial_dims)
    roi, halo, margin = _tile_geometry(requested, net_shape, divisor, overlap)

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
        tta=tta,
        uncertainty=uncertainty and tta,
        divisor=divisor,
        compile=compile,
        window_memory=window_memory,
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
