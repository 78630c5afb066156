"""Cells of the digital cell: outline shapes, placement on the coverslip, dome heights, random points, walks.

Pure numpy; :func:`stainfree.simulate.geometry.build_scene` places the compartments into these cells.
"""

from __future__ import annotations

import numpy as np

#: nucleus semi-axes relative to (a, b), number of filopodia (lo, hi).
SHAPES: dict[str, dict] = {
    "round": {
        "a": 8.5,
        "b": 8.0,
        "h": 6.5,
        "wave": 0.06,
        "lamella": 0.8,
        "nuc": (0.52, 0.55),
        "filo": (4, 10),
    },
    "elongated": {
        "a": 13.0,
        "b": 5.5,
        "h": 6.0,
        "wave": 0.05,
        "lamella": 0.8,
        "nuc": (0.36, 0.7),
        "filo": (2, 6),
    },
    "spread": {
        "a": 11.5,
        "b": 11.0,
        "h": 5.0,
        "wave": 0.14,
        "lamella": 0.6,
        "nuc": (0.38, 0.4),
        "filo": (8, 18),
    },
}


def _footprint(cell: dict, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Normalised radius rho of pixels (um grids) in a cell outline (rho < 1 inside)."""
    dy, dx = yy - cell["cy"], xx - cell["cx"]
    ca, sa = np.cos(cell["angle"]), np.sin(cell["angle"])
    u = (ca * dx + sa * dy) / cell["a"]
    v = (-sa * dx + ca * dy) / cell["b"]
    theta = np.arctan2(v, u)
    wave = np.ones_like(theta)
    for k, (amp, ph) in enumerate(zip(cell["wave_amp"], cell["wave_phase"], strict=True), start=2):
        wave = wave + amp * np.cos(k * theta + ph)
    return np.sqrt(u**2 + v**2) / wave


def _height(cell: dict, rho: np.ndarray) -> np.ndarray:
    """Cell thickness (um) at normalised radius rho: a dome over a thin lamella."""
    inside = np.clip(1.0 - rho**2, 0.0, None)
    return np.where(rho < 1.0, cell["lamella"] + (cell["h"] - cell["lamella"]) * inside**1.3, 0.0)


def _place_cells(rng: np.random.Generator, shape_names: list[str], extent: np.ndarray) -> list[dict]:
    """Cell outlines and positions that fit the field without much overlap (a Voronoi cut does the rest)."""
    n = len(shape_names)
    ez, ey, ex = extent
    z_bottom = min(1.0, 0.12 * ez)
    avail = ey * ex / n * 0.5
    cells: list[dict] = []
    scale = 1.0
    for _attempt in range(60):
        cells = []
        for name in shape_names:
            p = SHAPES[name]
            s = min(1.0, np.sqrt(avail / (np.pi * p["a"] * p["b"]))) * scale * rng.uniform(0.9, 1.05)
            a, b = p["a"] * s, p["b"] * s
            a = min(a, 0.46 * min(ey, ex) if name != "elongated" else 0.46 * max(ey, ex))
            b = min(b, 0.46 * min(ey, ex))
            h = min(p["h"] * max(s, 0.7), 0.85 * (ez - z_bottom))
            cells.append(
                {
                    "shape": name,
                    "a": a,
                    "b": b,
                    "h": h,
                    "lamella": min(p["lamella"], 0.4 * h),
                    "angle": rng.uniform(0, np.pi),
                    "wave_amp": rng.normal(0, p["wave"], 4) / np.arange(1, 5) ** 0.5,
                    "wave_phase": rng.uniform(0, 2 * np.pi, 4),
                    "z_bottom": z_bottom,
                }
            )
        ok = True
        for i, c in enumerate(cells):
            r = max(c["a"], c["b"]) * 1.1
            for _try in range(200):
                my = rng.uniform(min(c["b"] * 1.1, ey / 2), max(ey - c["b"] * 1.1, ey / 2))
                mx = rng.uniform(min(r, ex / 2), max(ex - r, ex / 2))
                if c["shape"] == "elongated" or min(ey, ex) < 2 * r:
                    # keep the long axis inside the field
                    c["angle"] = 0.0 if ex >= ey else np.pi / 2
                    c["angle"] += rng.normal(0, 0.15)
                    long_ = ex if ex >= ey else ey
                    if long_ < 2 * c["a"] * 1.05:
                        c["a"] = long_ / 2.1
                    my = rng.uniform(min(c["b"] * 1.1, ey / 2), max(ey - c["b"] * 1.1, ey / 2))
                    mx = rng.uniform(min(c["a"] * 1.05, ex / 2), max(ex - c["a"] * 1.05, ex / 2))
                    if ex < ey:
                        my = rng.uniform(min(c["a"] * 1.05, ey / 2), max(ey - c["a"] * 1.05, ey / 2))
                        mx = rng.uniform(min(c["b"] * 1.1, ex / 2), max(ex - c["b"] * 1.1, ex / 2))
                clash = any(
                    np.hypot(my - o["cy"], mx - o["cx"]) < 0.85 * (max(c["a"], c["b"]) + max(o["a"], o["b"]))
                    for o in cells[:i]
                )
                if not clash:
                    c["cy"], c["cx"] = my, mx
                    break
            else:
                ok = False
                break
        if ok:
            return cells
        scale *= 0.92
    raise RuntimeError("could not place cells in the field")  # pragma: no cover


def _sample_points(
    rng: np.random.Generator,
    mask: np.ndarray,
    offset: np.ndarray,
    voxel: np.ndarray,
    n: int,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` random positions (um) inside ``mask`` (a bounding-box crop starting at voxel ``offset``)."""
    flat = np.flatnonzero(mask)
    if len(flat) == 0 or n <= 0:
        return np.zeros((0, 3))
    p = None
    if weight is not None:
        w = weight.ravel()[flat].astype(float)
        p = w / w.sum() if w.sum() > 0 else None
    pick = rng.choice(flat, size=n, replace=True, p=p)
    idx = np.stack(np.unravel_index(pick, mask.shape), axis=1) + offset
    return (idx + rng.uniform(-0.4, 0.4, (n, 3))) * voxel


def _random_walk(
    rng: np.random.Generator, start: np.ndarray, length: float, direction: np.ndarray, step: float = 0.1
) -> np.ndarray:
    """A persistent random walk (um) of ``length``, flattened towards the coverslip plane."""
    n = max(2, int(length / step))
    d = direction / np.linalg.norm(direction)
    pts = [start]
    for _ in range(n):
        d = d + rng.normal(0, 0.25, 3) * np.array([0.3, 1.0, 1.0])
        d[0] *= 0.6
        d /= np.linalg.norm(d)
        pts.append(pts[-1] + step * d)
    return np.array(pts)
