"""Preprocessing shared by training and prediction (numpy only).

One function, :func:`prepare_input`, turns a (C, Z, Y, X) image into network input for both training and
prediction: input transform (ratiometric), channel selection, resampling to the model's voxel size and
normalization. :func:`prepare_target` does the same for training targets, :func:`restore_output` brings a
prediction back onto the grid of the input image.

Arrays returned here are always 4D (C, Z, Y, X) float32: a 2D network (``input_mode="2d"``) is applied to each
plane ``x[:, z]``; for ``input_mode="zstack_to_2d"`` the z planes become channels, so the result is (C*Z, 1,
Y, X) (channel-major: all planes of the first channel, then of the second...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from stainfree.errors import InputError
from stainfree.io.arrays import ChannelRef, channel_indices  # channel selection, re-exported here

log = logging.getLogger(__name__)


# ----- channels ---------------------------------------------------------------------------------------------


def channel_label(refs: Sequence[ChannelRef] | None, channel_names: Sequence[str], n: int) -> list[str]:
    """Human-readable names of the selected channels (their names, or their indices as text)."""
    idx = channel_indices(refs, channel_names, n)
    return [channel_names[i] if i < len(channel_names) else str(i) for i in idx]


# ----- resampling -------------------------------------------------------------------------------------------


def zoom_factors(
    voxel_size_um: Sequence[float | None] | None,
    target_um: Sequence[float] | None,
    shape_zyx: Sequence[int],
    *,
    resample_z: bool = True,
) -> tuple[float, float, float] | None:
    """Zoom factors (z, y, x) from a voxel size to a target voxel size; None when no resampling applies.

    A single plane (Z == 1), or any image when ``resample_z`` is False (2D models), is never resampled along
    z. Returns None when the target is None, when a needed voxel size entry is unknown, or when all factors
    are 1.
    """
    if target_um is None or voxel_size_um is None:
        return None
    factors = []
    for axis, (src, dst, n) in enumerate(zip(voxel_size_um, target_um, shape_zyx, strict=True)):
        if axis == 0 and (n == 1 or not resample_z):
            factors.append(1.0)
            continue
        if src is None or not np.isfinite(src) or src <= 0:
            return None
        factors.append(float(src) / float(dst))
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return None
    return (factors[0], factors[1], factors[2])


def resampled_shape(shape_zyx: Sequence[int], factors: Sequence[float] | None) -> tuple[int, int, int]:
    """Shape (z, y, x) after zooming by ``factors`` (as scipy.ndimage.zoom computes it)."""
    if factors is None:
        return tuple(int(s) for s in shape_zyx)  # type: ignore[return-value]
    return tuple(max(1, int(round(s * f))) for s, f in zip(shape_zyx, factors, strict=True))  # type: ignore[return-value]


def resample(czyx: np.ndarray, factors: Sequence[float] | None, *, order: int = 3) -> np.ndarray:
    """Zoom every channel of a (C, Z, Y, X) array by ``factors`` (z, y, x).

    Parameters
    ----------
    czyx : ndarray
        Image, (C, Z, Y, X).
    factors : sequence of 3 floats or None
        Zoom factors; None returns the input unchanged.
    order : int
        Spline order: 3 for images, 0 for label masks.

    Returns
    -------
    ndarray
        Resampled image (same dtype for order 0, float32 otherwise).
    """
    if factors is None:
        return czyx
    from scipy.ndimage import zoom

    data = czyx if order == 0 else czyx.astype(np.float32, copy=False)
    return np.stack([zoom(c, factors, order=order, mode="nearest", grid_mode=False) for c in data])


def resample_to_shape(czyx: np.ndarray, shape_zyx: Sequence[int], *, order: int = 1) -> np.ndarray:
    """Zoom a (C, Z, Y, X) array to exactly ``shape_zyx`` (z, y, x)."""
    if tuple(czyx.shape[1:]) == tuple(shape_zyx):
        return czyx
    from scipy.ndimage import zoom

    factors = [t / s for t, s in zip(shape_zyx, czyx.shape[1:], strict=True)]
    data = czyx if order == 0 else czyx.astype(np.float32, copy=False)
    out = []
    for c in data:
        z = zoom(c, factors, order=order, mode="nearest", grid_mode=False)
        # zoom rounds the output shape; pad or crop by at most a voxel to hit the requested shape exactly
        z = z[tuple(slice(0, t) for t in shape_zyx)]
        pad = [(0, t - s) for t, s in zip(shape_zyx, z.shape, strict=True)]
        out.append(np.pad(z, pad, mode="edge") if any(p[1] for p in pad) else z)
    return np.stack(out)


# ----- normalization ----------------------------------------------------------------------------------------


def normalize(
    x: np.ndarray, method: str = "zscore", *, low: float = 1.0, high: float = 99.8
) -> tuple[np.ndarray, dict[str, Any]]:
    """Normalize one channel and return the statistics used.

    Parameters
    ----------
    x : ndarray
        One channel, any shape.
    method : {"zscore", "percentile", "none"}
        ``zscore``: (x - mean) / std; ``percentile``: (x - p_low) / (p_high - p_low); ``none``: unchanged.
    low, high : float
        Percentiles of the ``percentile`` method.

    Returns
    -------
    y : ndarray
        Normalized float32 array.
    stats : dict
        ``{"method", "mean", "std"}`` or ``{"method", "low", "high"}`` (values of ``x``), or ``{"method":
        "none"}``; :func:`apply_normalization` with these statistics reproduces ``y``.
    """
    x = np.asarray(x, dtype=np.float32)
    if method == "zscore":
        stats = {
            "method": "zscore",
            "mean": float(x.mean(dtype=np.float64)),
            "std": float(x.std(dtype=np.float64)),
        }
    elif method == "percentile":
        lo, hi = np.percentile(x, [low, high])
        stats = {"method": "percentile", "low": float(lo), "high": float(hi)}
    elif method == "none":
        stats = {"method": "none"}
    else:
        raise ValueError(f"unknown normalization {method!r}")
    return apply_normalization(x, stats), stats


def apply_normalization(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Normalize ``x`` with given statistics (from :func:`normalize`); a zero spread is treated as 1."""
    x = np.asarray(x, dtype=np.float32)
    method = stats.get("method", "none")
    if method == "zscore":
        std = stats["std"] if stats["std"] and stats["std"] > 0 else 1.0
        return ((x - np.float32(stats["mean"])) / np.float32(std)).astype(np.float32, copy=False)
    if method == "percentile":
        span = stats["high"] - stats["low"]
        span = span if span > 0 else 1.0
        return ((x - np.float32(stats["low"])) / np.float32(span)).astype(np.float32, copy=False)
    return x


def invert_normalization(y: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Undo :func:`apply_normalization` (e.g. to express a regression prediction in target units)."""
    y = np.asarray(y, dtype=np.float32)
    method = stats.get("method", "none")
    if method == "zscore":
        std = stats["std"] if stats["std"] and stats["std"] > 0 else 1.0
        return y * np.float32(std) + np.float32(stats["mean"])
    if method == "percentile":
        span = stats["high"] - stats["low"]
        return y * np.float32(span if span > 0 else 1.0) + np.float32(stats["low"])
    return y


def ratio_stats(ratio: np.ndarray, how: str, ratio_max: float = 3.0) -> dict[str, Any] | None:
    """Statistics that scale a ratio channel R/Y (background 0), or None for ``how == "image"`` (z-scored
    like any channel).

    ``"fixed"``: 0..``ratio_max`` -> 0..1, the same for every image (absolute); ``"median"``: divided by the
    median of the foreground ratios (> 0) of this image (1 when it has none). Both are ``percentile``
    statistics (``low`` 0), so :func:`apply_normalization` applies them and dataset scope averages them.
    """
    if how == "image":
        return None
    if how == "fixed":
        return {"method": "percentile", "low": 0.0, "high": float(ratio_max)}
    if how == "median":
        r = np.asarray(ratio)
        fg = r[r > 0]
        med = float(np.median(fg)) if fg.size else 1.0
        return {"method": "percentile", "low": 0.0, "high": med if med > 0 else 1.0}
    raise ValueError(f"unknown ratio normalization {how!r}")


def mean_stats(per_image: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Average per-image, per-channel statistics into one dictionary per channel (dataset statistics)."""
    if not per_image:
        return []
    out = []
    for ch in zip(*per_image, strict=True):
        method = ch[0]["method"]
        d: dict[str, Any] = {"method": method}
        for key in ("mean", "std", "low", "high"):
            if key in ch[0]:
                d[key] = float(np.mean([s[key] for s in ch]))
        out.append(d)
    return out


# ----- the shared entry points ------------------------------------------------------------------------------


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    return getattr(cfg, name, default)


def _warn_unknown_voxel(meta: Any) -> None:
    log.warning(
        "%s: voxel size unknown (%s); not resampled to the model's voxel size",
        getattr(meta, "path", "") or "image",
        getattr(meta, "voxel_size_um", None),
    )


def prepare_input(
    czyx: np.ndarray, cfg: Any, meta: Any = None, *, stats: Sequence[dict[str, Any]] | None = None
) -> np.ndarray:
    """Turn an image into network input: input transform, channel selection, resampling, normalization.

    The one function both training and prediction use, so both see identical inputs.

    Parameters
    ----------
    czyx : ndarray
        Image as (C, Z, Y, X) (see :func:`stainfree.io.readers.as_czyx`).
    cfg : DataConfig or BundleConfig
        Uses ``signal_channels``, ``input_transform``, ``ratio_*`` (``ratio_normalization``: how the ratio
        channel is scaled, see :func:`ratio_stats`), ``voxel_size_um``, ``normalization``,
        ``percentile_range``, ``normalization_scope``, ``input_mode`` (and ``normalization_stats`` of a bundle
        with dataset scope).
    meta : ImageMeta, optional
        Channel names and voxel size of the image; without it channels are selected by index and the image is
        not resampled.
    stats : list of dict, optional
        Per-channel statistics to apply instead of computing them (dataset scope).

    Returns
    -------
    ndarray
        float32 (C', Z', Y', X'); for ``zstack_to_2d`` (C'*Z', 1, Y', X').
    """
    x, _ = prepare_input_with_stats(czyx, cfg, meta, stats=stats)
    return x


def prepare_input_with_stats(
    czyx: np.ndarray, cfg: Any, meta: Any = None, *, stats: Sequence[dict[str, Any]] | None = None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """:func:`prepare_input` that also returns the per-channel normalization statistics it used."""
    czyx = np.asarray(czyx)
    if czyx.ndim != 4:
        raise InputError(
            getattr(meta, "path", "") or "image", f"expected a (C, Z, Y, X) array, got {czyx.shape}"
        )
    source = getattr(meta, "path", "") or "image"
    names = tuple(getattr(meta, "channel_names", ()) or ())
    idx = channel_indices(_get(cfg, "signal_channels"), names, czyx.shape[0], source)
    x = czyx[idx].astype(np.float32, copy=False)
    transform = _get(cfg, "input_transform", "none")
    if transform in ("ratiometric", "intensity_only"):
        if x.shape[0] != 2:
            raise InputError(
                source, f"{transform} input needs two signal channels [yellow, red], got {x.shape[0]}"
            )
        from stainfree.data.align import align_for_ratio
        from stainfree.data.ratiometric import intensity_ratio

        red, _ = align_for_ratio(x[0], x[1], _get(cfg, "channel_alignment", "none"))
        intensity, ratio = intensity_ratio(
            x[0],
            red,
            offset=_get(cfg, "ratio_offset", "auto"),
            background_threshold=_get(cfg, "ratio_background_threshold"),
            clip_percentile=_get(cfg, "ratio_clip_percentile", 99.9),
        )
        parts = [intensity] if transform == "intensity_only" else [intensity, ratio]
        x = np.stack([np.asarray(p, dtype=np.float32) for p in parts])
    # resample
    target_um = _get(cfg, "voxel_size_um")
    if target_um is not None:
        vox = getattr(meta, "voxel_size_um", None) if meta is not None else None
        in_plane = _get(cfg, "input_mode", "3d") != "3d"
        factors = zoom_factors(vox, target_um, x.shape[1:], resample_z=not in_plane)
        if factors is None and not _known_voxels(vox, 1 if in_plane else x.shape[1]):
            _warn_unknown_voxel(meta)
        x = resample(x, factors, order=3)
    if not np.all(np.isfinite(x)):
        raise InputError(source, "image contains NaN or infinite values")
    # normalize
    method = _get(cfg, "normalization", "zscore")
    low, high = _get(cfg, "percentile_range", (1.0, 99.8))
    if stats is None and _get(cfg, "normalization_scope", "image") == "dataset":
        bundle_stats = _get(cfg, "normalization_stats") or []
        if bundle_stats:
            stats = [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in bundle_stats]
    used = []
    out: np.ndarray = np.empty(x.shape, dtype=np.float32)
    ratio_how = _get(cfg, "ratio_normalization", "image") if transform == "ratiometric" else "image"
    for c in range(x.shape[0]):
        own = ratio_stats(x[c], ratio_how, _get(cfg, "ratio_max", 3.0)) if c == 1 else None
        if own is not None and (stats is None or ratio_how == "median"):
            out[c] = apply_normalization(x[c], own)  # the ratio channel keeps its own scale
            used.append(own)
        elif stats is not None:
            out[c] = apply_normalization(x[c], stats[c])
            used.append(dict(stats[c]))
        else:
            out[c], s = normalize(x[c], method, low=low, high=high)
            used.append(s)
    if _get(cfg, "input_mode", "3d") == "zstack_to_2d":
        c, z, y, xx = out.shape
        n_z = _get(cfg, "n_z")
        if n_z is not None and z != n_z:
            raise InputError(source, f"the model expects a stack of {n_z} z planes, the image has {z}")
        out = out.reshape(c * z, 1, y, xx)
    return out, used


def _known_voxels(vox: Any, nz: int) -> bool:
    if vox is None:
        return False
    zyx = list(vox)
    needed = zyx[1:] if nz == 1 else zyx
    return all(v is not None for v in needed)


def prepare_target(
    czyx: np.ndarray, cfg: Any, meta: Any = None, *, task: str = "regression"
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Turn a target image into a training target, on the same grid as :func:`prepare_input`.

    Parameters
    ----------
    czyx : ndarray
        Target as (C, Z, Y, X).
    cfg : DataConfig
        Uses ``target_channels``, ``voxel_size_um``, ``target_normalization``, ``percentile_range``,
        ``input_mode`` and ``target_projection``.
    meta : ImageMeta, optional
        Channel names and voxel size.
    task : {"regression", "binary", "multiclass"}
        Regression targets are resampled with cubic splines and normalized; binary targets become 0/1 float32
        (any value > 0 is foreground); multiclass targets stay integer labels (int64, one channel), resampled
        with nearest neighbour.

    Returns
    -------
    target : ndarray
        (C, Z', Y', X'); Z' = 1 for ``zstack_to_2d``.
    stats : list of dict
        Normalization statistics per channel (regression), else ``[]``.
    """
    czyx = np.asarray(czyx)
    source = getattr(meta, "path", "") or "target"
    names = tuple(getattr(meta, "channel_names", ()) or ())
    idx = channel_indices(_get(cfg, "target_channels"), names, czyx.shape[0], source)
    t = czyx[idx]
    if not np.all(np.isfinite(t)):
        raise InputError(source, "target contains NaN or infinite values")
    mode = _get(cfg, "input_mode", "3d")
    if mode == "zstack_to_2d" and t.shape[1] > 1:
        how = _get(cfg, "target_projection", "max")
        if task != "regression" and how == "mean":
            how = "max"
        if how == "max":
            t = t.max(axis=1, keepdims=True)
        elif how == "mean":
            t = t.mean(axis=1, keepdims=True)
        else:
            t = t[:, t.shape[1] // 2 : t.shape[1] // 2 + 1]
    target_um = _get(cfg, "voxel_size_um")
    if target_um is not None:
        vox = getattr(meta, "voxel_size_um", None) if meta is not None else None
        factors = zoom_factors(vox, target_um, t.shape[1:], resample_z=mode == "3d")
        if factors is None and not _known_voxels(vox, 1 if mode != "3d" else t.shape[1]):
            _warn_unknown_voxel(meta)
        t = resample(t, factors, order=3 if task == "regression" else 0)
    if task == "binary":
        return (t > 0).astype(np.float32), []
    if task == "multiclass":
        if t.shape[0] != 1:
            raise InputError(source, f"a multiclass target needs one label channel, got {t.shape[0]}")
        return t.astype(np.int64), []
    method = _get(cfg, "target_normalization", "zscore")
    low, high = _get(cfg, "percentile_range", (1.0, 99.8))
    out = np.empty(t.shape, dtype=np.float32)
    used = []
    for c in range(t.shape[0]):
        out[c], s = normalize(t[c], method, low=low, high=high)
        used.append(s)
    return out, used


def restore_output(pred: np.ndarray, input_shape_zyx: Sequence[int], *, labels: bool = False) -> np.ndarray:
    """Resample a prediction (C, Z', Y', X') back onto the grid of the input image.

    Parameters
    ----------
    pred : ndarray
        Prediction on the model's grid.
    input_shape_zyx : sequence of int
        (Z, Y, X) of the original image. For a 2D prediction (Z' = 1) of a stack (``zstack_to_2d``), pass
        (1, Y, X).
    labels : bool
        Nearest neighbour (label maps) instead of linear interpolation.

    Returns
    -------
    ndarray
        (C, Z, Y, X).
    """
    return resample_to_shape(np.asarray(pred), input_shape_zyx, order=0 if labels else 1)


#: ``mode`` values of :func:`numpy.pad` that need no extra arguments.
PadMode = Literal[
    "constant",
    "edge",
    "linear_ramp",
    "maximum",
    "mean",
    "median",
    "minimum",
    "reflect",
    "symmetric",
    "wrap",
    "empty",
]


def pad_to_min_shape(czyx: np.ndarray, min_zyx: Sequence[int], *, mode: PadMode = "reflect") -> np.ndarray:
    """Pad a (C, Z, Y, X) array at the end so each spatial size is at least ``min_zyx``."""
    pad = [(0, 0)] + [(0, max(0, m - s)) for m, s in zip(min_zyx, czyx.shape[1:], strict=True)]
    if not any(p[1] for p in pad):
        return czyx
    if mode == "reflect" and any(s < 2 and p[1] for s, p in zip(czyx.shape, pad, strict=True)):
        mode = "edge"
    if mode == "reflect" and any(p[1] >= s for s, p in zip(czyx.shape, pad, strict=True) if p[1]):
        mode = "symmetric" if all(p[1] <= s for s, p in zip(czyx.shape, pad, strict=True) if p[1]) else "edge"
    return np.pad(czyx, pad, mode=mode)
