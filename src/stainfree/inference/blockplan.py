"""The block plan, public: the blocks :func:`~stainfree.inference.tiling.predict_array` cuts an image
into, and the prediction of any one of them alone, exactly as predict_array computes it (the Dask block
engine, :mod:`stainfree.execute.blocks`, runs them on workers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stainfree.inference.tiling import (
    DEFAULT_BLOCK_VOXELS,
    _block_extent,
    _block_grid,
    _block_prediction,
    _read_block,
    _tile_geometry,
    _window_runner,
    default_roi_size,
)
from stainfree.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW_MEMORY

__all__ = ["BlockPlan", "common_grid", "plan_blocks", "predict_block", "window_runner"]


@dataclass(frozen=True)
class BlockPlan:
    """How :func:`predict_array` cuts one ``(C, *spatial)`` image into blocks, and the windows of each block.

    ``shape``: spatial shape (``(Z, Y, X)`` for a 2D network run over planes, ``planes`` True: no halo along
    Z); ``roi``, ``halo``, ``margin``: network window, context read around each block core, mirrored context
    beyond the image border (network axes); ``block_shape``: a block core on the image axes (the last of an
    axis may be shorter: a chunk grid); ``cores``: every core as ``((start, stop), ...)`` per image axis;
    ``divisor``: what the network's spatial sizes must be multiples of (window starts lie on it too).
    """

    shape: tuple[int, ...]
    roi: tuple[int, ...]
    halo: tuple[int, ...]
    margin: tuple[int, ...]
    planes: bool
    block_shape: tuple[int, ...]
    cores: tuple[tuple[tuple[int, int], ...], ...]
    divisor: tuple[int, ...]


def plan_blocks(
    shape: Sequence[int],
    *,
    spatial_dims: int,
    divisor: int | Sequence[int],
    roi_size: Sequence[int] | int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    max_block_voxels: int = DEFAULT_BLOCK_VOXELS,
) -> BlockPlan:
    """The blocks :func:`predict_array` runs for an image of spatial ``shape`` (one frame, no channel axis).

    Parameters
    ----------
    shape : sequence of int
        ``(Z, Y, X)`` or ``(Y, X)``; a 3-axis shape for a 2D network is a stack of planes.
    spatial_dims, divisor, roi_size, overlap, max_block_voxels
        As given to :func:`predict_array` (``divisor`` as from :func:`model_divisor`).

    Returns
    -------
    BlockPlan
        Block cores and window geometry; :func:`predict_block` predicts any one of them, alone, exactly as
        predict_array would.
    """
    shape = tuple(int(s) for s in shape)
    net_shape = shape[-spatial_dims:]
    div = (divisor,) * spatial_dims if isinstance(divisor, int) else tuple(int(d) for d in divisor)
    roi, halo, margin = _tile_geometry(roi_size or default_roi_size(spatial_dims), net_shape, div, overlap)
    planes = len(shape) == spatial_dims + 1
    grid_roi, grid_halo = ((1, *roi), (0, *halo)) if planes else (roi, halo)
    block, cores = _block_grid(shape, grid_roi, grid_halo, max_block_voxels)
    return BlockPlan(shape, roi, halo, margin, planes, block, tuple(cores), div)


def common_grid(plans: Sequence[BlockPlan], max_block_voxels: int = DEFAULT_BLOCK_VOXELS) -> BlockPlan:
    """One block grid for several networks' plans over the same image (tiles, halos or divisors differ).

    The cores are those :func:`plan_blocks` cuts with the largest tile and halo of ``plans`` on every image
    axis, so that each network's core plus its own halo stays within ``max_block_voxels``; each network then
    predicts every core with its own plan (:func:`predict_block` takes any core). The returned plan is the
    first one with these cores. Its prediction of a core equals the whole-image prediction where the core
    spans the axes its windows run along (2D networks over planes: blocks of whole planes); elsewhere windows
    are laid out per block, as in predict_array with this grid.
    """

    def grid(p: BlockPlan) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return ((1, *p.roi), (0, *p.halo)) if p.planes else (p.roi, p.halo)

    rois, halos = zip(*(grid(p) for p in plans), strict=True)
    roi = tuple(max(r) for r in zip(*rois, strict=True))
    halo = tuple(max(h) for h in zip(*halos, strict=True))
    block, cores = _block_grid(plans[0].shape, roi, halo, max_block_voxels)
    return replace(plans[0], block_shape=block, cores=tuple(cores))


def predict_block(
    runner: Callable[[np.ndarray], np.ndarray], x: Any, plan: BlockPlan, core: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Predict one block core of ``plan`` from the ``(C, *spatial)`` image ``x`` (read: core plus halo).

    ``runner`` is a :func:`window_runner` built with ``plan.roi``. Returns the ``(C_out, *core shape)``
    prediction, equal to that region of :func:`predict_array`'s output.
    """
    roi, halo, margin = plan.roi, plan.halo, plan.margin
    if plan.planes:
        roi, halo, margin = (1, *roi), (0, *halo), (0, *margin)
    shape = tuple(x.shape[1:])
    ext = _block_extent(core, halo, roi, shape)
    pred, inner = _block_prediction(
        runner, _read_block(x, ext), core, ext, shape=shape, margin=margin, planes=plan.planes
    )
    return np.ascontiguousarray(pred[(slice(None), *inner)])


def window_runner(
    model: Any,
    plan: BlockPlan,
    *,
    overlap: float = DEFAULT_OVERLAP,
    sw_batch_size: int = 1,
    blend: str = "crossfade",
    bf16: bool = False,
    device: str = "cpu",
    compile: bool = False,
    window_memory: int | None = DEFAULT_WINDOW_MEMORY,
    tta: bool = False,
    uncertainty: bool = False,
) -> Callable[[np.ndarray], np.ndarray]:
    """The windowed inference :func:`predict_array` runs on each block of ``plan`` (same settings; with
    ``tta`` each window averaged over its views, with ``uncertainty`` too their spread as extra channels)."""
    import torch

    if isinstance(model, torch.nn.Module):
        model = model.eval()
    return _window_runner(
        model,
        roi=plan.roi,
        overlap=overlap,
        sw_batch_size=sw_batch_size * (8 if plan.planes else 1),
        blend=blend,
        bf16=bf16,
        device=device,
        divisor=plan.divisor,
        compile=compile,
        window_memory=window_memory,
        tta=tta,
        uncertainty=uncertainty and tta,
    )
