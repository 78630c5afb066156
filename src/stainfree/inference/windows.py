"""Window plans and cross-fade weights for tiled prediction, and the network preparation for inference.

A block of an image is covered by as few windows as the tile size allows, each grown so that neighbours
share at least the requested overlap: a 528-voxel axis (512 plus a mirrored margin) with a 256 tile and a
3/16 overlap becomes two windows of 288, not three or more. Overlapping windows are blended with
raised-cosine ramps that sum to one across each overlap (a partition of unity), so the network processes
close to 1x the image's voxels and no seam shows.

:func:`window_runner` runs such a plan over one block; :func:`prepare_model` readies a network for it (batch
norms folded into the convolutions, optionally ``torch.compile``); :func:`native_bf16` says whether a device
computes bfloat16 natively.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Fraction of a tile shared with its neighbours by default (the seam test on a trained bundle: r 0.99999).
DEFAULT_OVERLAP = 3 / 16


def _round_up(n: int, m: int) -> int:
    return int(math.ceil(n / m) * m)


def axis_plan(length: int, tile: int, overlap: float, divisor: int = 1) -> tuple[int, list[int]]:
    """Windows along one axis: their common size and their starts.

    Windows of ``tile`` to ``tile + ceil(overlap * tile)`` voxels (multiples of ``divisor``) that share at
    least ``ceil(overlap * tile)`` voxels with each neighbour, evenly spaced from 0 to ``length`` rounded up
    to ``divisor`` (the last flush with that end), on multiples of ``divisor`` where that keeps the overlap;
    the size whose windows process the fewest voxels in all is chosen (on a tie: one that needs no padding,
    then the larger). An axis no longer than one window gets one window of ``length`` rounded up to
    ``divisor``. Where ``length`` is not a multiple of ``divisor`` the windows reach beyond it and the caller
    pads the axis at its end: every window's pooling grid then lines up with its neighbours' and with that
    of one pass over the whole padded axis, the last window's included.

    Parameters
    ----------
    length : int
        Voxels along the axis.
    tile : int
        Requested window size (a multiple of ``divisor``).
    overlap : float
        Fraction of ``tile`` shared by neighbouring windows, in [0, 1).
    divisor : int
        Size the network needs windows to be a multiple of.

    Returns
    -------
    size : int
        Window size.
    starts : list of int
        Start of every window, evenly spaced.
    """
    tile = max(_round_up(tile, divisor), divisor)
    padded = _round_up(length, divisor)
    if padded <= tile:
        return padded, [0]
    shared = int(math.ceil(overlap * tile))
    best: tuple[int, bool, int, int] | None = None  # (voxels processed, padded, -size, count)
    for size in range(tile, _round_up(tile + shared, divisor) + 1, divisor):
        if size <= shared:
            continue
        count = max(2, int(math.ceil((padded - shared) / (size - shared))))
        if size >= padded:
            count = 1
        key = (count * size, size > padded, -size, count)
        if best is None or key < best:
            best = key
    assert best is not None
    size, count = -best[2], best[3]
    if count == 1:
        return padded, [0]
    span = padded - size  # a multiple of the divisor, as the size is
    # starts on multiples of the divisor (the last flush with the padded end): a U-Net that halves every axis
    # computes the same function on a window only when its pooling grid lines up with its neighbours'; one
    # more window where rounding would leave neighbours sharing less than the overlap
    for n in range(count, count + 4):
        starts = [int(round(i * span / (n - 1) / divisor)) * divisor for i in range(n - 1)] + [span]
        if all(a + size - b >= min(shared, size // 2) for a, b in itertools.pairwise(starts)):
            return size, starts
    return size, [int(round(i * span / (count - 1))) for i in range(count)]


def crossfade_ramp(shared: int) -> np.ndarray:
    """Weights of the window that enters an overlap of ``shared`` voxels (the one leaving gets the reverse).

    The first and last quarter (rounded up) of the overlap are left to one window alone, since a network's
    output is least reliable at a window's edge; a raised cosine ``sin^2`` crosses over in between. The
    ramp and its reverse sum to one at every voxel.
    """
    u = np.arange(shared, dtype=np.float64)
    edge = int(math.ceil(shared / 4))
    width = shared - 2 * edge
    if width <= 0:
        middle = (shared - 1) / 2
        return np.where(u < middle, 0.0, np.where(u > middle, 1.0, 0.5))
    return np.sin(0.5 * np.pi * np.clip((u - edge + 0.5) / width, 0.0, 1.0)) ** 2


def crossfade_weights(size: int, starts: Sequence[int]) -> list[np.ndarray]:
    """Per-window 1D weights along one axis: one in the middle, cross-fade ramps across each overlap.

    Where two neighbouring windows overlap, one ramps down as the other ramps up (:func:`crossfade_ramp`),
    so the weights of the windows sum to one at every voxel where at most two windows meet; the outer edge of
    the first and last window keeps weight one. Weights are floored at 1e-6, so that their sum is positive
    everywhere.
    """
    weights = []
    for i, start in enumerate(starts):
        w = np.ones(size, dtype=np.float64)
        if i > 0:
            shared = min(starts[i - 1] + size - start, size)
            if shared > 0:
                w[:shared] *= crossfade_ramp(shared)
        if i + 1 < len(starts):
            shared = min(start + size - starts[i + 1], size)
            if shared > 0:
                w[size - shared :] *= crossfade_ramp(shared)[::-1]
        weights.append(np.maximum(w, 1e-6).astype(np.float32))
    return weights


def _axes_plan(
    shape: Sequence[int], tile: Sequence[int], overlap: float, divisor: Sequence[int]
) -> tuple[tuple[int, ...], list[list[int]]]:
    plans = [axis_plan(int(n), int(t), overlap, int(d)) for n, t, d in zip(shape, tile, divisor, strict=True)]
    return tuple(size for size, _ in plans), [starts for _, starts in plans]


#: What one more window costs when a block's windows are made smaller, in voxels processed (a heuristic).
WINDOW_COST_VOXELS = 1 << 18


def budget_tile(
    shape: Sequence[int],
    tile: Sequence[int],
    overlap: float,
    divisor: Sequence[int],
    max_window_voxels: int | None,
) -> tuple[int, ...]:
    """The tile to plan a block's windows with so that no window exceeds ``max_window_voxels`` voxels.

    ``tile`` itself where its windows fit (or without a limit); otherwise, among the tiles halved any number
    of times per axis (down to the divisor), the one whose windows fit and whose plan costs least: the voxels
    processed in all plus :data:`WINDOW_COST_VOXELS` a window (so that a plan of many thin windows, each
    with its own borders, loses to one of a few near the limit; on a tie: the larger windows). Where no
    tile fits, the one with the smallest windows.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the block.
    tile, overlap, divisor
        As for :func:`tile_plan`.
    max_window_voxels : int or None
        Most voxels a window may hold; None: no limit.

    Returns
    -------
    tuple of int
        The tile to give :func:`tile_plan`.
    """
    tile = tuple(int(t) for t in tile)
    if max_window_voxels is None:
        return tile
    size, _ = _axes_plan(shape, tile, overlap, divisor)
    if int(np.prod(size)) <= max_window_voxels:
        return tile
    options = []
    for t, d in zip(tile, divisor, strict=True):
        values = {max(_round_up(t, d), d)}
        while (v := max(_round_up(min(values) // 2, d), d)) < min(values):
            values.add(v)
        options.append(sorted(values, reverse=True))
    best: tuple[tuple[bool, int, int], tuple[int, ...]] | None = None
    for candidate in itertools.product(*options):
        size, starts = _axes_plan(shape, candidate, overlap, divisor)
        window = int(np.prod(size))
        total = window * int(np.prod([len(s) for s in starts]))
        cost = total + WINDOW_COST_VOXELS * (total // window)
        fits = window <= max_window_voxels
        key = (not fits, cost if fits else window, -window if fits else cost)
        if best is None or key < best[0]:
            best = (key, tuple(candidate))
    assert best is not None
    return best[1]


def tile_plan(
    shape: Sequence[int],
    tile: Sequence[int],
    overlap: float,
    divisor: Sequence[int],
    max_window_voxels: int | None = None,
) -> tuple[tuple[int, ...], list[list[int]], list[list[np.ndarray]]]:
    """The window plan of a block: window shape, starts per axis and 1D cross-fade weights per axis.

    See :func:`axis_plan` and :func:`crossfade_weights`; the windows are the product of the axes' starts.
    With ``max_window_voxels`` the tile is first shrunk where its windows would be larger
    (:func:`budget_tile`).
    """
    tile = budget_tile(shape, tile, overlap, divisor, max_window_voxels)
    sizes, starts = _axes_plan(shape, tile, overlap, divisor)
    weights = [crossfade_weights(size, s) for size, s in zip(sizes, starts, strict=True)]
    return sizes, starts, weights


def processed_fraction(
    shape: Sequence[int], tile: Sequence[int], overlap: float, divisor: Sequence[int]
) -> float:
    """Voxels the network processes over a block of ``shape`` per voxel of the block (1.0 = no redundancy)."""
    size, starts, _ = tile_plan(shape, tile, overlap, divisor)
    windows = int(np.prod([len(s) for s in starts]))
    return windows * float(np.prod(size)) / float(np.prod(shape))


# ----- the network ----------------------------------------------------------------------------------------

#: Memory the activations of one forward pass may take by default (:func:`window_voxel_budget`).
DEFAULT_WINDOW_MEMORY = 768 << 20

#: Activations of a window alive at once at a U-Net's peak, in tensors as wide as its first level: the
#: full-resolution skip, the concatenation (2x) and a convolution's output, plus what the allocator keeps
#: (measured: ~415 bytes a voxel at 32 channels in bf16, a process that keeps freed memory, 32 x 288 x 288).
ACTIVATION_COPIES = 6


def network_width(model: Any) -> int | None:
    """Output channels of a network's first convolution (the width of a U-Net's full-resolution level);
    None for a callable that is not a ``torch.nn.Module`` or has no convolution."""
    from torch import nn

    if not isinstance(model, nn.Module):
        return None
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.out_channels)
    return None


def window_voxel_budget(model: Any, *, bf16: bool, memory: int | None = DEFAULT_WINDOW_MEMORY) -> int | None:
    """Most voxels one forward pass may hold so that its activations stay within ``memory`` bytes.

    Estimated as :data:`ACTIVATION_COPIES` tensors of the network's first-level width
    (:func:`network_width`), 2 bytes a value in bf16 and 4 otherwise. For the fnet-size U-Net (32 channels)
    and the default 768 MiB: 2.1 M voxels in bf16 (windows of 32 x 288 x 160 for a 512 x 512 plane), 1.0 M
    in float32.

    Parameters
    ----------
    model : torch.nn.Module or callable
        The network.
    bf16 : bool
        Whether it runs under bfloat16 autocast.
    memory : int or None
        Bytes; None: no limit.

    Returns
    -------
    int or None
        Voxels (of all windows of a forward pass together), or None where there is no limit or the width of
        the network is not known.
    """
    width = network_width(model) if memory is not None else None
    if memory is None or width is None:
        return None
    per_voxel = ACTIVATION_COPIES * width * (2 if bf16 else 4)
    return max(1, int(memory) // per_voxel)


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (a CUDA card that supports it; a CPU with AVX512-BF16 or
    AMX that oneDNN uses), so that bf16 autocast speeds the network up rather than emulating it."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        )
    except (AttributeError, RuntimeError):
        return False


def fold_batch_norms(model: Any) -> Any:
    """A copy of an eval-mode network with every batch norm that directly follows a convolution (inside an
    ``nn.Sequential``) folded into that convolution's weights and bias; the model itself is left alone.

    Other modules are returned as they are. The folded network computes the same function (to float
    rounding) with one pass less over every activation.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not isinstance(model, nn.Module):
        return model
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    transposed = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    has_pair = any(
        isinstance(m, nn.Sequential)
        and any(
            isinstance(a, convs + transposed) and isinstance(b, norms)
            for a, b in itertools.pairwise(m.children())
        )
        for m in model.modules()
    )
    if not has_pair:
        return model
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for seq in folded.modules():
            if not isinstance(seq, nn.Sequential):
                continue
            names = list(seq._modules)
            for a, b in itertools.pairwise(names):
                conv, norm = seq._modules[a], seq._modules[b]
                if (
                    isinstance(conv, convs + transposed)
                    and isinstance(norm, norms)
                    and norm.track_running_stats
                    and norm.running_mean is not None
                ):
                    fused = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, transposed))
                    seq._modules[a] = fused
                    seq._modules[b] = nn.Identity()
    return folded


def prepare_model(model: Any, *, device: str, compile: bool = False, fold: bool = True) -> Any:
    """A network ready for inference: eval mode on ``device``, batch norms folded (:func:`fold_batch_norms`),
    and with ``compile`` wrapped by ``torch.compile`` (falling back to eager on the first failure)."""
    import torch

    if isinstance(model, torch.nn.Module):
        model = model.eval().to(device)
        if fold:
            model = fold_batch_norms(model)
    if not compile:
        return model
    try:
        compiled = torch.compile(model, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - any failure of the compiler means eager
        log.warning("torch.compile unavailable (%s); running eagerly", exc)
        return model
    state = {"fn": compiled}

    def run(x: Any) -> Any:
        try:
            return state["fn"](x)
        except Exception as exc:  # noqa: BLE001 - a compiler failure at the first call: eager from now on
            if state["fn"] is model:
                raise
            log.warning("torch.compile failed (%s); running eagerly", str(exc).splitlines()[0][:200])
            state["fn"] = model
            return model(x)

    return run


# ----- running a plan over one block ----------------------------------------------------------------------


def run_windows(
    predict: Callable[[Any], Any],
    tensor: Any,
    *,
    tile: Sequence[int],
    overlap: float,
    divisor: Sequence[int],
    batch: int,
    max_voxels: int | None = None,
) -> Any:
    """Blend a network's outputs over the window plan of a (N, C, *spatial) float tensor.

    ``predict`` maps (B, C, *window) to (B, C_out, *window) float32. Windows go through it ``batch`` at a
    time (for N > 1, the N images of a window count towards the batch); returns (N, C_out, *spatial).
    ``max_voxels``: most voxels of one forward pass (``batch`` windows together); windows are made smaller
    where they would exceed it (:func:`budget_tile`).
    """
    import torch

    spatial = tuple(int(s) for s in tensor.shape[2:])
    per_window = None if max_voxels is None else max(1, int(max_voxels) // max(1, int(batch)))
    size, starts, weights = tile_plan(spatial, tile, overlap, divisor, per_window)
    pad = [max(st[-1] + s - n, 0) for st, s, n in zip(starts, size, spatial, strict=True)]
    # the windows reach beyond the block where an axis is shorter than the tile or not a multiple of the
    # divisor: the block is extended at its end, in the plane (the last two axes) by mirroring it (reflect
    # where possible), as at the image border; along Z likewise where the axis is shorter than the tile (a
    # short stack fills its one window), otherwise with zeros, what a network's own convolutions see beyond
    # a window (a focus series is not mirror-symmetric, and the planes next to the end are real image)
    if any(pad):
        arr = tensor.numpy()
        for ax, p in enumerate(pad):
            if p:
                width = [(0, 0)] * arr.ndim
                width[ax + 2] = (0, p)
                n = arr.shape[ax + 2]
                if ax < len(pad) - 2 and n >= int(tile[ax]):
                    arr = np.pad(arr, width, mode="constant")
                else:
                    arr = np.pad(arr, width, mode="reflect" if n > 1 and p < n else "symmetric")
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    full = tuple(s + p for s, p in zip(spatial, pad, strict=True))
    n_images = int(tensor.shape[0])
    out: Any = None
    total = torch.zeros(full, dtype=torch.float32)
    positions = list(itertools.product(*[list(enumerate(s)) for s in starts]))
    per_pass = max(1, batch // n_images) if n_images <= batch else 1
    for group_start in range(0, len(positions), per_pass):
        group = positions[group_start : group_start + per_pass]
        slices = [tuple(slice(st, st + sz) for (_, st), sz in zip(pos, size, strict=True)) for pos in group]
        windows = torch.cat([tensor[(slice(None), slice(None), *sl)] for sl in slices])
        results = [predict(windows[i : i + batch]) for i in range(0, windows.shape[0], batch)]
        result = torch.cat(results) if len(results) > 1 else results[0]
        if out is None:
            out = torch.zeros((n_images, int(result.shape[1]), *full), dtype=torch.float32)
        for k, (pos, sl) in enumerate(zip(group, slices, strict=True)):
            w = torch.ones((), dtype=torch.float32)
            for ax, (i, _) in enumerate(pos):
                shape = [1] * len(size)
                shape[ax] = size[ax]
                w = w * torch.from_numpy(weights[ax][i]).reshape(shape)
            piece = result[k * n_images : (k + 1) * n_images]
            out[(slice(None), slice(None), *sl)].add_(piece * w)
            total[sl].add_(w)
    out /= total
    crop = tuple(slice(0, n) for n in spatial)
    return out[(slice(None), slice(None), *crop)]
