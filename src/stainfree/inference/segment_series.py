"""Time-lapse segmentation: the catalog networks on one frame at a time (bounded memory).

:func:`segment_frame` is the per-frame core (one (C, Z, Y, X) frame -> 15 masks + label map; bundles loaded
once by the caller), which a distributed engine can map over time points. :func:`segment_series` reads,
segments and writes frame by frame through two callables, so only one frame is in memory at a time;
:func:`segment_frames` is the in-memory convenience for a small (T, C, Z, Y, X) array.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.inference.segment import nilered_channel_names, segment
from stainfree.types import COMPARTMENTS, ImageMeta

__all__ = ["segment_frame", "segment_frames", "segment_series"]


def segment_frame(
    bundles: Sequence[Any],
    frame: np.ndarray,
    meta: ImageMeta,
    *,
    catalog: str | os.PathLike | None = None,
    threshold: float | None = None,
    tta: bool = False,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment one time point.

    Parameters
    ----------
    bundles : sequence of Bundle
        Loaded bundles (:func:`stainfree.inference.segment.find_bundles`).
    frame : ndarray
        (C, Z, Y, X) Nile Red frame.
    meta : ImageMeta
        Axes ``"CZYX"``, channel names, voxel size.
    catalog, threshold, tta, quiet : as :func:`stainfree.inference.segment.segment`.

    Returns
    -------
    masks : ndarray of uint8, (15, Z, Y, X)
    labels : ndarray of uint8, (Z, Y, X)
    """
    return segment(list(bundles), frame, meta, catalog=catalog, threshold=threshold, tta=tta, quiet=quiet)


def segment_series(
    bundles: Sequence[Any],
    read_frame: Callable[[int], np.ndarray],
    n_frames: int,
    meta: ImageMeta,
    write_frame: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None],
    *,
    catalog: str | os.PathLike | None = None,
    threshold: float | None = None,
    tta: bool = False,
    source: str | os.PathLike = "time-lapse",
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Read, segment and write a time-lapse one frame at a time.

    Parameters
    ----------
    bundles : sequence of Bundle
        Loaded bundles.
    read_frame : callable
        ``read_frame(t)`` -> (C, Z, Y, X) frame ``t``.
    n_frames : int
        Number of time points.
    meta : ImageMeta
        Of one frame (axes ``"CZYX"``).
    write_frame : callable
        ``write_frame(t, frame, masks, labels)``, called after frame ``t`` is segmented, before frame
        ``t + 1`` is read.
    catalog, threshold, tta : as :func:`segment_frame`.
    source : str or path
        Named in errors.
    progress : callable, optional
        ``progress(done, total)`` after every frame.

    Raises
    ------
    InputError
        A frame with NaN or infinite values (one line naming the time point).
    """
    for t in range(n_frames):
        frame = np.asarray(read_frame(t))
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise InputError(source, f"time point {t}: NaN or infinite values")
        masks, labels = segment_frame(  # compartments no bundle covers: said once, for the first frame
            bundles, frame, meta, catalog=catalog, threshold=threshold, tta=tta, quiet=t > 0
        )
        write_frame(t, frame, masks, labels)
        if progress is not None:
            progress(t + 1, n_frames)


def segment_frames(
    bundles: Sequence[Any],
    image: np.ndarray,
    *,
    channel_names: Sequence[str] = ("yellow", "red"),
    voxel_size_um: tuple[float | None, float | None, float | None] = (None, None, None),
    catalog: str | os.PathLike | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment every frame of a (T, C, Z, Y, X) array in memory.

    Returns
    -------
    masks : ndarray of uint8, (T, 15, Z, Y, X)
    labels : ndarray of uint8, (T, Z, Y, X)
    """
    arr = np.asarray(image)
    if arr.ndim != 5:
        raise InputError("time-lapse", f"expected (T, C, Z, Y, X), got shape {arr.shape}")
    names = tuple(nilered_channel_names(channel_names, arr.shape[1]))
    meta = ImageMeta(
        axes="CZYX",
        shape=arr.shape[1:],
        dtype=str(arr.dtype),
        channel_names=names,
        voxel_size_um=voxel_size_um,
    )
    masks = np.zeros((arr.shape[0], len(COMPARTMENTS), *arr.shape[2:]), np.uint8)
    labels = np.zeros((arr.shape[0], *arr.shape[2:]), np.uint8)

    def keep(t: int, _frame: np.ndarray, m: np.ndarray, lab: np.ndarray) -> None:
        masks[t], labels[t] = m, lab

    segment_series(bundles, lambda t: arr[t], arr.shape[0], meta, keep, catalog=catalog, threshold=threshold)
    return masks, labels
