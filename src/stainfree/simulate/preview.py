"""Quick-look montage of a simulated field: bright-field through focus, fluorescence, Nile Red, labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stainfree.io.atomic import atomic_path
from stainfree.simulate.field import SimulatedField
from stainfree.types import compartment_id


def focal_plane(sim: SimulatedField) -> int:
    """The z index through the middle of the nuclei (the middle plane when there is no nucleus)."""
    labels = sim.labels[0] if sim.n_frames > 1 else sim.labels
    z = np.nonzero(labels == compartment_id("nucleus"))[0]
    return int(np.median(z)) if len(z) else labels.shape[0] // 2


def save_montage(sim: SimulatedField, path: str | os.PathLike, z: int | None = None, dpi: int = 60) -> Path:
    """Save a PNG montage of the first frame: 3 bright-field planes, every channel, the label map.

    Parameters
    ----------
    sim : SimulatedField
    path : destination ``.png``.
    z : focal plane shown for fluorescence and labels (default: through the nuclei).
    dpi : resolution of the figure.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = (lambda a: a[0]) if sim.n_frames > 1 else (lambda a: a)
    bf, fl, nr, labels = (
        first(sim.brightfield),
        first(sim.fluorescence),
        first(sim.nilered),
        first(sim.labels),
    )
    z = focal_plane(sim) if z is None else int(z)
    nz = bf.shape[0]
    planes = [max(z - 4, 0), z, min(z + 4, nz - 1)]
    panels: list[tuple[str, np.ndarray, str]] = [(f"bright-field z{p}", bf[p], "gray") for p in planes]
    panels += [(name, fl[i, z], "magma") for i, name in enumerate(sim.target_names)]
    panels += [(f"Nile Red {name}", nr[i, z], "magma") for i, name in enumerate(sim.nilered_names)]
    panels.append((f"labels z{z}", labels[z], "tab20"))
    ncol = 4
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 4 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, cmap) in zip(axes.ravel(), panels, strict=False):
        kw = {"vmin": 0, "vmax": 16, "interpolation": "nearest"} if cmap == "tab20" else {}
        ax.imshow(img, cmap=cmap, **kw)
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)
