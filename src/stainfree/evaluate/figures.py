"""Evaluation figures (matplotlib, Agg backend, PNG written atomically).

- :func:`plot_r_per_structure`: Pearson r per structure as box plots with the C_max ceiling marked (fnet 1c);
- :func:`plot_slices`: input / target / prediction panels of the middle slice (fnet Fig. 1b);
- :func:`plot_segmentation_bars`: accuracy, precision, recall, F1 and MOC per structure;
- :func:`plot_confusion`: confusion-matrix heatmaps, counts and row-normalised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.evaluate.metrics import normalize_rows
from stainfree.io.atomic import atomic_path

__all__ = ["plot_confusion", "plot_r_per_structure", "plot_segmentation_bars", "plot_slices", "save_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a figure as PNG atomically and close it."""
    plt = _pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def plot_r_per_structure(table: Any, path: str | os.PathLike, title: str = "Virtual staining") -> Path:
    """Box plot of Pearson r per structure, points per image, and the mean C_max of each structure marked.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`~stainfree.evaluate.evaluate.evaluate_regression`.
    path : path-like
        PNG to write.
    """
    plt = _pyplot()
    structures = list(dict.fromkeys(table["structure"]))
    fig, ax = plt.subplots(figsize=(1.4 * max(len(structures), 2) + 1.5, 3.6))
    data = [table.loc[table["structure"] == s, "pearson_r"].to_numpy(dtype=float) for s in structures]
    positions = np.arange(1, len(structures) + 1)
    ax.boxplot(data, positions=positions, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for x, d in zip(positions, data, strict=True):
        ax.scatter(x + rng.uniform(-0.12, 0.12, d.size), d, s=10, color="0.3", zorder=3)
    cmax = [table.loc[table["structure"] == s, "c_max"].to_numpy(dtype=float) for s in structures]
    shown = False
    for x, c in zip(positions, cmax, strict=True):
        c = c[np.isfinite(c)]
        if c.size:
            ax.hlines(
                c.mean(),
                x - 0.3,
                x + 0.3,
                colors="tab:red",
                linewidth=2.5,
                zorder=4,
                label=None if shown else "C_max",
            )
            shown = True
    ax.set_xticks(positions, structures, rotation=30, ha="right")
    ax.set_ylabel("Pearson r")
    ax.set_ylim(min(0.0, *(d.min() for d in data if d.size)) if any(d.size for d in data) else 0.0, 1.02)
    ax.set_title(title)
    if shown:
        ax.legend(loc="lower right", frameon=False)
    return save_figure(fig, path)


def _middle(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a[a.shape[0] // 2] if a.ndim == 3 else a


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    lo, hi = np.percentile(image, [1, 99.8])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_slices(
    signal: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    structures: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """Panels of the middle z slice: the input, then target and prediction of every structure.

    Parameters
    ----------
    signal : ndarray
        Label-free input ``([Z,] Y, X)``.
    target, prediction : ndarray
        ``(C, [Z,] Y, X)``, one channel per structure.
    structures : sequence of str
        Channel names.
    path : path-like
        PNG to write.
    """
    plt = _pyplot()
    n = len(structures)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i, s in enumerate(structures):
        if i == 0:
            _show(axes[i, 0], _middle(signal), "input")
        else:
            axes[i, 0].set_axis_off()
        _show(axes[i, 1], _middle(target[i]), f"{s}: target")
        _show(axes[i, 2], _middle(prediction[i]), f"{s}: prediction")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_segmentation_bars(table: Any, path: str | os.PathLike, title: str = "Segmentation") -> Path:
    """Grouped bars of mean accuracy, precision, recall, F1 and MOC per structure.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`~stainfree.evaluate.evaluate.evaluate_segmentation`.
    path : path-like
        PNG to write.
    """
    plt = _pyplot()
    scores = ["accuracy", "precision", "recall", "f1", "moc"]
    means = table.groupby("structure", sort=False)[scores].mean()
    n = len(means)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * n + 2), 3.6))
    width = 0.8 / len(scores)
    x = np.arange(n)
    for j, score in enumerate(scores):
        ax.bar(x + (j - 2) * width, means[score].to_numpy(), width, label=score)
    ax.set_xticks(x, list(means.index), rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(ncols=len(scores), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Two heatmaps of a confusion matrix (rows truth, columns prediction): counts and row-normalised.

    Parameters
    ----------
    matrix : ndarray
        ``(K, K)`` counts.
    class_names : sequence of str
        Name of each class.
    path : path-like
        PNG to write.
    """
    plt = _pyplot()
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    size = max(4.0, 0.45 * k + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, data, title, fmt in (
        (axes[0], matrix, "counts", "d"),
        (axes[1], normalize_rows(matrix), "row-normalised (recall)", ".2f"),
    ):
        im = ax.imshow(data, cmap="viridis")
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        ax.set_xlabel("prediction")
        ax.set_ylabel("truth")
        ax.set_title(title)
        if k <= 16:
            hi = data.max() if data.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        format(data[i, j], fmt),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if data[i, j] > 0.6 * hi else "white",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)
