"""Several bundles on one input: one multi-channel image (a named channel per structure) and an RGB merge.

The merge is the view of fnet's Figure 5: every predicted structure in its own fixed colour, each channel
contrast-stretched between two percentiles, the maximum projection and the middle z slice side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.types import ImageMeta

__all__ = [
    "STRUCTURE_COLORS",
    "color_of",
    "merge_rgb",
    "predict_collection",
    "predict_collection_file",
]

#: Fixed colour (RGB, 0-255) of each structure in merges; other names take colours of FALLBACK_COLORS in turn.
STRUCTURE_COLORS: dict[str, tuple[int, int, int]] = {
    "dna": (40, 110, 255),
    "nucleus": (40, 110, 255),
    "membrane": (255, 40, 200),
    "plasma_membrane": (255, 40, 200),
    "mitochondria": (255, 200, 0),
    "er": (0, 220, 60),
    "golgi": (255, 110, 0),
    "lipid_droplet": (255, 255, 120),
    "nuclear_membrane": (0, 220, 220),
    "lysosome": (255, 0, 0),
}
FALLBACK_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 220, 220),
    (255, 0, 0),
    (160, 90, 255),
    (255, 255, 255),
    (120, 255, 120),
)


def color_of(name: str, index: int = 0) -> tuple[int, int, int]:
    """The colour of a structure: fixed for known names, else the ``index``-th fallback colour."""
    return STRUCTURE_COLORS.get(name.lower(), FALLBACK_COLORS[index % len(FALLBACK_COLORS)])


def _stretch(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of a channel to 0 and 1 (clipped); constant gives 0."""
    lo, hi = np.percentile(channel, [low, high])
    if hi <= lo:
        return np.zeros(channel.shape, dtype=np.float32)
    return np.clip((channel - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def merge_rgb(
    channels: np.ndarray,
    names: Sequence[str],
    *,
    low: float = 1.0,
    high: float = 99.8,
    gap: int = 4,
) -> np.ndarray:
    """RGB merge of structures: maximum projection and middle slice side by side.

    Parameters
    ----------
    channels : ndarray
        ``(C, Z, Y, X)`` or ``(C, Y, X)`` predictions, one channel per structure.
    names : sequence of str
        Structure names (pick the colours, see :data:`STRUCTURE_COLORS`).
    low, high : float
        Percentiles mapped to black and full colour, per channel and per view.
    gap : int
        Black pixels between the two views.

    Returns
    -------
    ndarray of uint8
        ``(Y, 2 X + gap, 3)`` for a stack (left: max projection, right: middle slice), ``(Y, X, 3)`` for 2D.
    """
    channels = np.asarray(channels, dtype=np.float32)
    if channels.ndim not in (3, 4) or channels.shape[0] != len(names):
        raise InputError("merge", f"need (C, [Z,] Y, X) with one name per channel, got {channels.shape}")
    if channels.ndim == 4:
        views = [channels.max(axis=1), channels[:, channels.shape[1] // 2]]
    else:
        views = [channels]
    panels = []
    for view in views:
        rgb = np.zeros((*view.shape[1:], 3), dtype=np.float32)
        for i, (name, ch) in enumerate(zip(names, view, strict=True)):
            rgb += _stretch(ch, low, high)[..., None] * (
                np.asarray(color_of(name, i), dtype=np.float32) / 255.0
            )
        panels.append(np.clip(rgb, 0.0, 1.0))
    if len(panels) == 2:
        spacer = np.zeros((panels[0].shape[0], gap, 3), dtype=np.float32)
        merged = np.concatenate([panels[0], spacer, panels[1]], axis=1)
    else:
        merged = panels[0]
    return np.round(merged * 255.0).astype(np.uint8)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def predict_collection(
    bundles: Sequence[Any], image: Any, meta: ImageMeta | None = None, **predict_kwargs: Any
) -> tuple[np.ndarray, ImageMeta]:
    """Run several bundles on one image and stack their outputs as named channels.

    Parameters
    ----------
    bundles : sequence of Bundle or path
        The models (e.g. one per structure: DNA, membrane, mitochondria, ER).
    image : ndarray
        Input image (axes of ``meta``); see :func:`~stainfree.inference.predict.predict_with_bundle`.
    meta : ImageMeta, optional
        Axes, channel names and voxel size of the image.
    **predict_kwargs
        Passed to :func:`~stainfree.inference.predict.predict_with_bundle` (roi_size, overlap, bf16, ...).

    Returns
    -------
    prediction : ndarray of float32
        ``([T,] C, [Z,] Y, X)``: the channels of every bundle in order.
    meta : ImageMeta
        With one channel name per output channel (made unique).
    """
    from stainfree.inference.predict import predict_with_bundle

    if not bundles:
        raise InputError("bundles", "no model bundle given")
    preds: list[np.ndarray] = []
    names: list[str] = []
    out_meta: ImageMeta | None = None
    for b in bundles:
        pred, m = predict_with_bundle(b, image, meta, **predict_kwargs)
        if out_meta is not None and m.axes != out_meta.axes:
            raise InputError(str(b), f"gives {m.axes} outputs, the other bundles {out_meta.axes}")
        preds.append(pred)
        names.extend(m.channel_names)
        out_meta = m
    assert out_meta is not None
    c_axis = out_meta.axes.index("C")
    stacked = np.concatenate(preds, axis=c_axis)
    merged_meta = ImageMeta(
        axes=out_meta.axes,
        shape=tuple(stacked.shape),
        dtype=str(stacked.dtype),
        voxel_size_um=out_meta.voxel_size_um,
        channel_names=tuple(_unique(names)),
    )
    return stacked, merged_meta


def _png_path(output_path: Path) -> Path:
    stem = output_path.name.split(".")[0]
    return output_path.with_name(f"{stem}_merge.png")


def predict_collection_file(
    bundle_paths: Sequence[str | os.PathLike | Any],
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    png_path: str | os.PathLike | None = None,
    **predict_kwargs: Any,
) -> dict[str, Path]:
    """Predict every structure of a collection on one image file; write the image and the merge PNG.

    Parameters
    ----------
    bundle_paths : sequence of path or Bundle
        The models.
    input_path : path
        The label-free image.
    output_path : path
        Multi-channel ``.ome.tif`` (or ``.ome.zarr``) with a named channel per structure.
    png_path : path, optional
        The RGB merge (default: ``<output stem>_merge.png`` beside the output).
    **predict_kwargs
        Passed to :func:`~stainfree.inference.predict.predict_with_bundle`.

    Returns
    -------
    dict
        ``{"image": path, "merge": path}``.
    """
    from stainfree.inference.predict import write_prediction
    from stainfree.io.readers import read_image
    from stainfree.io.writers import write_png

    output_path = Path(output_path)
    if output_path.resolve() == Path(input_path).resolve():
        raise InputError(output_path, "the output would overwrite the input image; choose another path")
    image, meta = read_image(input_path, intensities=True)
    pred, out_meta = predict_collection(bundle_paths, image, meta, **predict_kwargs)
    written = write_prediction(output_path, pred, out_meta)
    view = pred[0] if out_meta.axes.startswith("T") else pred  # merge of the first frame of a time-lapse
    png = write_png(png_path or _png_path(output_path), merge_rgb(view, out_meta.channel_names))
    return {"image": written, "merge": png}
