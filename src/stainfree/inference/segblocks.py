"""The catalog segmentation of one block: every bundle's blended probabilities on the block core (with the
halo the blending needs), thresholded and merged into the 15 masks and the label map, exactly as
:func:`stainfree.inference.segment.segment` does for the whole image.

A ratiometric bundle reads its input through :class:`RatiometricView`: red is moved onto yellow with the
whole image's shift, and intensity and ratio are formed with the whole image's numbers
(:class:`stainfree.data.ratioblocks.RatioPreconditions`), so that any region of it equals that region of the
single-process input. The Dask side (which blocks, where, resume)
is :mod:`stainfree.execute.segment_blocks` (on :mod:`stainfree.execute.blocks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from stainfree.data.ratioblocks import RatioPreconditions, block_input
from stainfree.inference.predict import needs_resampling, read_array

__all__ = [
    "RATIO_TRANSFORMS",
    "RatiometricView",
    "ratio_slabs",
    "segment_block",
    "segmentable_as_blocks",
]

#: Input transforms a block can form from whole-image preconditions.
RATIO_TRANSFORMS = ("ratiometric", "intensity_only")


def segmentable_as_blocks(cfg: Any, meta: Any) -> bool:
    """True when a segmentation bundle can run on an image block by block: one frame, no resampling, no
    z-stack-to-2D input, an input transform of :data:`RATIO_TRANSFORMS` or none."""
    if "T" in meta.axes or cfg.input_mode == "zstack_to_2d" or cfg.task not in ("binary", "multiclass"):
        return False
    if cfg.input_transform not in ("none", *RATIO_TRANSFORMS):
        return False
    return not needs_resampling(cfg, meta)


def _bounds(index: tuple, shape: Sequence[int]) -> list[tuple[int, int]]:
    out = []
    for s, n in zip(index, shape, strict=True):
        a, b, _ = s.indices(int(n)) if isinstance(s, slice) else (int(s), int(s) + 1, 1)
        out.append((a, b))
    return out


class RatiometricView:
    """A lazy (C, Z, Y, X) network input of a ratiometric bundle over a lazy (C, Z, Y, X) Nile Red image:
    reading ``[:, z, y, x]`` reads yellow and red there (red with the halo its shift needs) and forms the
    normalized intensity (and ratio) with the whole image's ``pre``."""

    def __init__(
        self, source: Any, yellow: int, red: int, shift_px: Sequence[float], pre: RatioPreconditions
    ) -> None:
        self.source, self.yellow, self.red = source, int(yellow), int(red)
        self.shift_px = tuple(float(s) for s in shift_px)
        self.pre = pre
        self.shape = (1 if pre.transform == "intensity_only" else 2, *(int(s) for s in source.shape[1:]))

    def __getitem__(self, index: tuple) -> np.ndarray:
        from stainfree.data.align import shift_region

        rest = tuple(index[1:]) if isinstance(index, tuple) else ()
        rest = rest + (slice(None),) * (3 - len(rest))
        region = _bounds(rest, self.shape[1:])
        slices = tuple(slice(a, b) for a, b in region)
        y = read_array(self.source[(self.yellow, *slices)])
        r = shift_region(
            lambda sl: read_array(self.source[(self.red, *sl)]), region, self.shape[1:], self.shift_px
        )
        return block_input(y, r, self.pre)


def ratio_slabs(
    source: Any, yellow: int, red: int, shift_px: Sequence[float], max_voxels: int = 1 << 22
) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Z slabs ``(yellow, aligned red)`` of a lazy (C, Z, Y, X) image, at most ~``max_voxels`` per slab, for
    :func:`stainfree.data.ratioblocks.stream_preconditions`."""
    from stainfree.data.align import shift_region

    shape = tuple(int(s) for s in source.shape[1:])
    step = max(1, max_voxels // max(1, shape[1] * shape[2]))

    def slabs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for z in range(0, shape[0], step):
            region = [(z, min(z + step, shape[0])), (0, shape[1]), (0, shape[2])]
            y = read_array(source[yellow, z : region[0][1]])
            r = shift_region(lambda sl: read_array(source[(red, *sl)]), region, shape, shift_px)
            yield y, r

    return slabs


def segment_block(
    nets: Sequence[tuple[Any, Any, Any, Callable[[np.ndarray], np.ndarray]]],
    core: Sequence[tuple[int, int]],
    *,
    threshold: float | None = None,
    priority: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The 15 masks and the label map of one block core.

    Parameters
    ----------
    nets : sequence of (bundle config, input view, BlockPlan, window runner)
        Every bundle with its (C, Z, Y, X) input (a :class:`RatiometricView` or a normalizing view), its
        own plan (tile, halo, divisor; the caller's cores are the same for all) and
        :func:`stainfree.inference.blockplan.window_runner`.
    core : sequence of (start, stop)
        The (Z, Y, X) core.
    threshold, priority
        As :func:`stainfree.inference.segment.segment` (None: each bundle's own / the catalog's priority).

    Returns
    -------
    masks : ndarray of uint8, (15, *core)
    labels : ndarray of uint8, core shape
    """
    from stainfree.inference.blockplan import predict_block
    from stainfree.inference.predict import apply_activation
    from stainfree.inference.segment import bundle_threshold, label_map_from_masks, masks_from_output
    from stainfree.types import COMPARTMENTS, compartment_id

    shape = tuple(b - a for a, b in core)
    masks = np.zeros((len(COMPARTMENTS), *shape), dtype=np.uint8)
    for cfg, view, plan, runner in nets:
        pred = predict_block(runner, view, plan, core)
        n_out = int(cfg.model.out_channels)
        probs = apply_activation(np.asarray(pred[:n_out], dtype=np.float32), cfg.task)
        names = list(cfg.class_names or [])
        for name, mask in masks_from_output(probs, cfg.task, names, bundle_threshold(cfg, threshold)).items():
            masks[compartment_id(name) - 1] |= mask.reshape(shape)
    return masks, label_map_from_masks(masks, priority)
