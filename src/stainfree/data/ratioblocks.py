"""The whole-image preconditions of a ratiometric (Nile Red) network input, computed in bounded memory,
and the input of any block from them.

:func:`stainfree.data.preprocess.prepare_input` turns yellow and red into (intensity, ratio) with statistics
of the whole image: the offsets of both channels (Li's threshold, then a median or a percentile), the
background threshold of the intensity (Li's threshold), the clip value of the ratio (a percentile) and the
normalization of each channel (mean and spread, percentiles or a median). :func:`stream_preconditions`
computes the same numbers from Z slabs, a few passes over the image with at most one slab (and at most
:data:`QUANTILE_CAP` selected values) in memory: order statistics are found exactly by narrowing a histogram,
Li's threshold by one pass per iteration. :func:`block_input` then forms the input of any region from them,
equal to that region of prepare_input's output (float rounding: the sums are taken slab by slab).

Pure numpy; the slabs come from a callable, so the reader (lazy, distributed) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stainfree.data.ratiometric import li_iterate, safe_ratio

__all__ = ["QUANTILE_CAP", "RatioPreconditions", "block_input", "stream_kth", "stream_preconditions"]

#: Values collected in memory once an order statistic's bracket holds no more than this many.
QUANTILE_CAP = 1 << 20

Slabs = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
Values = Callable[[], Iterable[np.ndarray]]


@dataclass(frozen=True)
class RatioPreconditions:
    """What a block needs of the whole image to form its ratiometric input.

    ``transform``: ``ratiometric`` (intensity, ratio) or ``intensity_only``; ``offsets``: subtracted from
    yellow and red; ``background_threshold``: intensity below which the ratio is 0; ``clip_high``: the ratio's
    clip value (None: not clipped); ``yellow_empty``: the yellow channel is 0 everywhere (ratio 0);
    ``stats``: normalization of each input channel (:func:`stainfree.data.preprocess.apply_normalization`).
    """

    transform: str
    offsets: tuple[float, float]
    background_threshold: float
    clip_high: float | None
    yellow_empty: bool
    stats: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for run records and task arguments)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RatioPreconditions:
        """The inverse of :meth:`to_dict`."""
        return cls(
            transform=str(d["transform"]),
            offsets=(float(d["offsets"][0]), float(d["offsets"][1])),
            background_threshold=float(d["background_threshold"]),
            clip_high=None if d["clip_high"] is None else float(d["clip_high"]),
            yellow_empty=bool(d["yellow_empty"]),
            stats=tuple(dict(s) for s in d["stats"]),
        )


# ----- exact statistics over chunks ---------------------------------------------------------------------


def _each(values: Values) -> Iterable[np.ndarray]:
    for v in values():
        v = np.asarray(v).ravel()
        if v.size:
            yield v


def stream_kth(values: Values, k: int, *, bins: int = 1024, cap: int = QUANTILE_CAP) -> float:
    """The ``k``-th smallest (0-based) of all values the chunks of ``values()`` hold, exactly.

    A histogram of the bracket that holds the ``k``-th value is narrowed pass by pass until the bracket
    holds at most ``cap`` values (then they are collected and partitioned) or one distinct value.
    """
    lo, hi, n = np.inf, -np.inf, 0
    for v in _each(values):
        lo, hi, n = min(lo, float(v.min())), max(hi, float(v.max())), n + v.size
    if not 0 <= k < n:
        raise ValueError(f"order statistic {k} of {n} values")
    closed = True  # the bracket is [lo, hi] (closed) or [lo, hi)
    below = 0  # values below lo
    while True:
        inside, vmin, vmax = 0, np.inf, -np.inf
        for v in _each(values):
            sel = v[(v >= lo) & ((v <= hi) if closed else (v < hi))]
            if sel.size:
                inside += sel.size
                vmin, vmax = min(vmin, float(sel.min())), max(vmax, float(sel.max()))
        if vmin == vmax:
            return vmin
        if inside <= cap:
            chosen = [v[(v >= lo) & ((v <= hi) if closed else (v < hi))] for v in _each(values)]
            return float(np.partition(np.concatenate(chosen), k - below)[k - below])
        lo, hi = vmin, vmax  # a tighter bracket (the same values)
        closed = True
        edges = np.linspace(lo, hi, bins + 1)
        counts = np.zeros(bins, dtype=np.int64)
        for v in _each(values):
            sel = v[(v >= lo) & (v <= hi)]
            idx = np.clip(np.searchsorted(edges, sel, side="right") - 1, 0, bins - 1)
            counts += np.bincount(idx, minlength=bins)
        cum = np.cumsum(counts)
        b = int(np.searchsorted(cum, k - below, side="right"))
        below += int(cum[b - 1]) if b > 0 else 0
        lo, hi, closed = float(edges[b]), float(edges[b + 1]), b == bins - 1


def _count(values: Values) -> int:
    return sum(v.size for v in _each(values))


def _percentile(values: Values, q: float, n: int | None = None) -> float:
    """``np.percentile(all values, q)`` (linear), from two order statistics."""
    n = _count(values) if n is None else n
    pos = (n - 1) * float(q) / 100.0
    k = int(np.floor(pos))
    a = stream_kth(values, k)
    if k + 1 >= n or pos == k:
        return float(np.percentile(np.asarray([a], dtype=np.float32), q))
    b = stream_kth(values, k + 1)
    return float(np.percentile(np.asarray([a, b], dtype=np.float32), (pos - k) * 100.0))


def _median(values: Values) -> float:
    """``np.median`` of all (float32) values."""
    n = _count(values)
    if n % 2:
        return stream_kth(values, n // 2)
    pair = np.asarray([stream_kth(values, n // 2 - 1), stream_kth(values, n // 2)], dtype=np.float32)
    return float(np.median(pair))


def _li(values: Values, max_iter: int = 200) -> float:
    """:func:`stainfree.data.ratiometric.li_threshold` of all values (float64), one pass per iteration."""
    lo, hi, n, total = np.inf, -np.inf, 0, 0.0
    for v in _each(values):
        v = v.astype(np.float64)
        lo, hi, n, total = (
            min(lo, float(v.min())),
            max(hi, float(v.max())),
            n + v.size,
            total + float(v.sum()),
        )
    if n == 0 or hi <= lo:
        return lo if n else 0.0

    def means(t: float) -> tuple[float, float]:  # one pass over the slabs
        s_fg, n_fg, s_bg, n_bg = 0.0, 0, 0.0, 0
        for v in _each(values):
            x = v.astype(np.float64) - lo + 1e-12
            fg = x > t
            s_fg, n_fg = s_fg + float(x[fg].sum()), n_fg + int(fg.sum())
            s_bg, n_bg = s_bg + float(x[~fg].sum()), n_bg + int((~fg).sum())
        return s_fg / n_fg, s_bg / n_bg

    # the mean of x = v - lo + 1e-12 to start, as li_threshold
    return float(li_iterate(means, total / n - lo + 1e-12, (hi - lo) * 1e-5, max_iter) + lo)


def _auto_background(values: Values) -> float:
    """:func:`stainfree.data.ratiometric.auto_background_threshold` of all values."""

    def logs() -> Iterable[np.ndarray]:
        for v in _each(values):
            v = v.astype(np.float64)
            yield np.log1p(np.clip(v[np.isfinite(v)], 0, None))

    if _count(logs) == 0:
        return 0.0
    return float(np.expm1(_li(logs)))


def _offset(channel: Callable[[], Iterable[np.ndarray]], min_background_fraction: float = 0.05) -> float:
    """:func:`stainfree.data.ratiometric.estimate_offset` of a channel given as Z slabs (finite float32)."""
    from scipy import ndimage

    t = _auto_background(channel)
    n = _count(channel)

    def back() -> Iterable[np.ndarray]:
        for v in channel():
            yield v[v < t]

    n_back = _count(back)
    if n_back >= min_background_fraction * n and n_back > 0:
        return _median(back)

    def smooth() -> Iterable[np.ndarray]:
        for v in channel():  # (Z, Y, X) slabs: the (1, 5, 5) filter stays within each plane
            yield ndimage.uniform_filter(v, size=(1,) * (v.ndim - 2) + (5, 5))

    return _percentile(smooth, 1.0)


def _zscore(values: Values) -> dict[str, Any]:
    n, total = 0, 0.0
    for v in _each(values):
        n, total = n + v.size, total + float(v.sum(dtype=np.float64))
    mean = total / n
    sq = sum(float(np.square(v.astype(np.float64) - mean).sum()) for v in _each(values))
    return {"method": "zscore", "mean": mean, "std": float(np.sqrt(sq / n))}


def _normalization(values: Values, method: str, low: float, high: float) -> dict[str, Any]:
    """:func:`stainfree.data.preprocess.normalize`'s statistics of all values."""
    if method == "zscore":
        return _zscore(values)
    if method == "percentile":
        n = _count(values)
        return {
            "method": "percentile",
            "low": _percentile(values, low, n),
            "high": _percentile(values, high, n),
        }
    return {"method": "none"}


# ----- the preconditions --------------------------------------------------------------------------------


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    return getattr(cfg, name, default)


def _parts(y: np.ndarray, r: np.ndarray, pre_offsets: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Yellow and red as intensity_ratio has them after the offsets: finite float32, >= 0."""
    y = np.nan_to_num(np.asarray(y).astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    r = np.nan_to_num(np.asarray(r).astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    y -= float(pre_offsets[0])
    r -= float(pre_offsets[1])
    np.clip(y, 0, None, out=y)
    np.clip(r, 0, None, out=r)
    return y, r


def _ratio(
    y: np.ndarray, r: np.ndarray, threshold: float, yellow_empty: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intensity, unclipped ratio and the voxels with a ratio, as intensity_ratio forms them."""
    intensity = (y + r) / 2
    if yellow_empty:
        return intensity, np.zeros_like(intensity), np.zeros(intensity.shape, dtype=bool)
    valid = (y > 0) & (intensity >= threshold)
    ratio, valid = safe_ratio(y, r, valid)
    return intensity, ratio, valid


def stream_preconditions(
    slabs: Slabs, cfg: Any, *, stats: Sequence[dict[str, Any]] | None = None
) -> RatioPreconditions:
    """The whole-image numbers of prepare_input's ratiometric input, from Z slabs in bounded memory.

    Parameters
    ----------
    slabs : callable
        Returns a fresh iterator over ``(yellow, red)`` slabs ``(z, Y, X)`` that together tile the image in Z,
        red already aligned onto yellow (called once per pass).
    cfg : BundleConfig or DataConfig
        Uses ``input_transform``, ``ratio_offset``, ``ratio_background_threshold``, ``ratio_clip_percentile``,
        ``ratio_normalization``, ``ratio_max``, ``normalization``, ``percentile_range``,
        ``normalization_scope`` and ``normalization_stats``.
    stats : list of dict, optional
        Normalization statistics to use instead (as prepare_input's ``stats``).

    Returns
    -------
    RatioPreconditions
    """
    from stainfree.data.preprocess import ratio_stats

    transform = _get(cfg, "input_transform", "none")
    offset = _get(cfg, "ratio_offset", "auto")

    def channel(i: int) -> Callable[[], Iterable[np.ndarray]]:
        def read() -> Iterable[np.ndarray]:
            for pair in slabs():
                yield np.nan_to_num(np.asarray(pair[i]).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)

        return read

    if isinstance(offset, str):
        if offset != "auto":
            raise ValueError(f"offset must be a number, two numbers, 'auto' or None, got {offset!r}")
        offsets = (_offset(channel(0)), _offset(channel(1)))
    elif offset is None:
        offsets = (0.0, 0.0)
    elif isinstance(offset, tuple | list | np.ndarray):
        offsets = (float(offset[0]), float(offset[1]))
    else:
        offsets = (float(offset), float(offset))

    def parts() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for y, r in slabs():
            yield _parts(y, r, offsets)

    yellow_empty = not any(bool(np.any(y > 0)) for y, _ in parts())
    given = _get(cfg, "ratio_background_threshold")

    def intensities() -> Iterable[np.ndarray]:
        for y, r in parts():
            yield (y + r) / 2

    threshold = (
        float(given) if given is not None else (0.0 if yellow_empty else _auto_background(intensities))
    )

    def valid_ratios() -> Iterable[np.ndarray]:
        for y, r in parts():
            _, ratio, valid = _ratio(y, r, threshold, yellow_empty)
            yield ratio[valid]

    q = _get(cfg, "ratio_clip_percentile", 99.9)
    clip_high = _percentile(valid_ratios, q) if q is not None and _count(valid_ratios) else None

    def ratios() -> Iterable[np.ndarray]:
        for y, r in parts():
            _, ratio, _ = _ratio(y, r, threshold, yellow_empty)
            if clip_high is not None:
                np.clip(ratio, 0, np.float32(clip_high), out=ratio)
            ratio[~np.isfinite(ratio)] = 0.0
            yield ratio

    if stats is None and _get(cfg, "normalization_scope", "image") == "dataset":
        bundle_stats = _get(cfg, "normalization_stats") or []
        if bundle_stats:
            stats = [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in bundle_stats]
    method = _get(cfg, "normalization", "zscore")
    low, high = _get(cfg, "percentile_range", (1.0, 99.8))
    used: list[dict[str, Any]] = [
        dict(stats[0]) if stats is not None else _normalization(intensities, method, low, high)
    ]
    if transform == "ratiometric":
        how = _get(cfg, "ratio_normalization", "image")
        if how == "median":

            def foreground() -> Iterable[np.ndarray]:
                for r in ratios():
                    yield r[r > 0]

            med = _median(foreground) if _count(foreground) else 1.0
            own: dict[str, Any] | None = {"method": "percentile", "low": 0.0, "high": med if med > 0 else 1.0}
        else:
            own = ratio_stats(np.zeros(1, np.float32), how, _get(cfg, "ratio_max", 3.0))
        if own is not None and (stats is None or how == "median"):
            used.append(own)
        elif stats is not None:
            used.append(dict(stats[1]))
        else:
            used.append(_normalization(ratios, method, low, high))
    return RatioPreconditions(transform, offsets, threshold, clip_high, yellow_empty, tuple(used))


def block_input(yellow: np.ndarray, red: np.ndarray, pre: RatioPreconditions) -> np.ndarray:
    """The normalized (intensity[, ratio]) network input of one region (red aligned onto yellow already).

    Returns
    -------
    ndarray of float32
        ``(C, *region)``, equal to that region of :func:`stainfree.data.preprocess.prepare_input`'s output
        when ``pre`` holds the whole image's numbers (:func:`stream_preconditions`).
    """
    from stainfree.data.preprocess import apply_normalization

    y, r = _parts(yellow, red, pre.offsets)
    intensity, ratio, _ = _ratio(y, r, pre.background_threshold, pre.yellow_empty)
    channels = [intensity.astype(np.float32)]
    if pre.transform == "ratiometric":
        if pre.clip_high is not None:
            np.clip(ratio, 0, np.float32(pre.clip_high), out=ratio)
        ratio[~np.isfinite(ratio)] = 0.0
        channels.append(ratio)
    return np.stack([apply_normalization(c, s) for c, s in zip(channels, pre.stats, strict=True)])
