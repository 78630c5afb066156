"""Workflows on in-memory arrays (for viewers such as the napari plugin): predict, segment, no files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def compartment_colors() -> dict[str, tuple[int, int, int]]:
    """The fixed RGB colour (0-255) of each of the 15 compartments, in label order (id 1..15).

    Returns
    -------
    dict
        Compartment name -> (r, g, b), the colours of segment's overlays and NGFF labels.
    """
    from stainfree.inference.segment import COMPARTMENT_COLORS
    from stainfree.types import COMPARTMENTS

    return {name: COMPARTMENT_COLORS[name] for name in COMPARTMENTS}


def _meta(
    shape: Sequence[int], axes: str, voxel_size_um: Sequence[float | None] | None, names: Sequence[str] | None
) -> Any:
    from stainfree.types import ImageMeta

    n = shape[axes.index("C")] if "C" in axes else 1
    return ImageMeta(
        axes=axes,
        shape=tuple(int(s) for s in shape),
        dtype="float32",
        voxel_size_um=tuple(voxel_size_um) if voxel_size_um else (None, None, None),  # type: ignore[arg-type]
        channel_names=tuple(names) if names and len(names) == n else tuple(f"ch{i}" for i in range(n)),
        path="<array>",
    )


def predict_array(
    bundles: str | Path | Sequence[str | Path],
    image: np.ndarray,
    *,
    axes: str,
    channel_names: Sequence[str] | None = None,
    voxel_size_um: Sequence[float | None] | None = None,
    tta: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, list[str], tuple[float | None, ...]]:
    """Predict an in-memory image with one bundle, or several as a multi-structure collection.

    Parameters
    ----------
    bundles : path or list of paths
        Model bundle folder(s) (``<name>.stainfree``).
    image : ndarray
        Label-free image in the order of ``axes`` (e.g. ``ZYX`` or ``CZYX``).
    axes : str
        Axis letters of ``image`` (subsequence of ``TCZYX``).
    channel_names : list of str, optional
        Names of the input channels (for bundles that select channels by name).
    voxel_size_um : (z, y, x), optional
        Physical voxel size (bundles resample to their own).
    tta : bool
        Test-time augmentation.
    progress : bool
        Show progress bars on the terminal.

    Returns
    -------
    prediction : ndarray of float32
        ``([T,] C, [Z,] Y, X)``, one channel per output.
    names : list of str
        The output channel names.
    voxel_size_um : tuple
        The voxel size of the prediction (the input's).
    """
    import numpy as np

    from stainfree.inference.collection import predict_collection

    arr = np.asarray(image)
    paths = [bundles] if isinstance(bundles, str | Path) else list(bundles)
    meta = _meta(arr.shape, axes, voxel_size_um, channel_names)
    pred, out = predict_collection(paths, arr, meta, progress=progress, tta=tta)
    return pred, list(out.channel_names), tuple(out.voxel_size_um)


def segment_array(
    nilered: np.ndarray,
    bundles: str | Path | Sequence[str | Path],
    *,
    channel_names: Sequence[str] | None = None,
    voxel_size_um: Sequence[float | None] | None = None,
    catalog: str | Path | None = None,
    threshold: float | None = None,
    tta: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment the 15 compartments of an in-memory Nile Red image (as :func:`segment`, writing nothing).

    Parameters
    ----------
    nilered : ndarray
        ``(C, Z, Y, X)`` or ``(C, Y, X)`` with the yellow and red channels (named by ``channel_names``, or
        the first two).
    bundles : path or list of paths
        A folder of catalog bundles or bundle paths.
    channel_names : list of str, optional
        Names of the channels of ``nilered``.
    voxel_size_um : (z, y, x), optional
        Physical voxel size.
    catalog : str or path, optional
        Catalog of the label priority (default ``organelles_v1``).
    threshold : float, optional
        Probability threshold of every binary network; None = each bundle's own (chosen on validation).
    tta : bool
        Test-time augmentation.
    progress : bool
        Show progress bars on the terminal.

    Returns
    -------
    masks : ndarray of uint8
        ``(15, Z, Y, X)``, one mask per compartment in :data:`stainfree.types.COMPARTMENTS` order.
    labels : ndarray of uint8
        ``(Z, Y, X)`` label map (compartment ids 1..15).

    Raises
    ------
    InputError
        When the image has fewer than two channels.
    """
    import numpy as np

    from stainfree.errors import InputError
    from stainfree.inference.segment import nilered_channel_names
    from stainfree.inference.segment import segment as run_segment

    arr = np.asarray(nilered, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise InputError(
            "image", f"needs (C, Z, Y, X) or (C, Y, X) with two Nile Red channels, got {arr.shape}"
        )
    names = nilered_channel_names(channel_names or [], arr.shape[0])
    meta = _meta(arr.shape, "CZYX", voxel_size_um, names)
    masks, labels = run_segment(
        bundles if isinstance(bundles, str | Path) else list(bundles),
        arr,
        meta,
        catalog=catalog,
        threshold=threshold,
        progress=progress,
        tta=tta,
    )
    return np.asarray(masks, dtype=np.uint8), np.asarray(labels, dtype=np.uint8)
