"""The organelle catalog runner: every catalog network on one Nile Red image -> 15 compartment masks + label
map.

Each bundle knows which compartments it segments (``class_names`` of its ``bundle.yaml``: one name for a
binary
net; ``background`` first, then the compartments, for a multi-class net with a background class). Binary nets
are thresholded at the bundle's own threshold (chosen on validation at export; 0.5 when it has none);
multi-class nets give each voxel its most probable class. The 15 masks may overlap (an
endosome inside the cytosol volume); the label map resolves overlaps by the catalog's ``label_priority``
(small,
specific organelles first, then membranes, then volumes; see ``organelles_v1.yaml``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError
from stainfree.types import COMPARTMENTS, ImageMeta, compartment_id

log = logging.getLogger(__name__)

__all__ = [
    "COMPARTMENT_COLORS",
    "bundle_threshold",
    "find_bundles",
    "nilered_channel_names",
    "label_map_from_masks",
    "masks_from_output",
    "overlay_rgb",
    "segment",
    "write_overlay",
    "write_segmentation",
]

#: Fixed RGB colour (0-255) of each compartment in overlays, in COMPARTMENTS order.
COMPARTMENT_COLORS: dict[str, tuple[int, int, int]] = {
    "nucleus": (70, 90, 200),
    "cytosol": (150, 110, 60),
    "extracellular": (0, 0, 0),
    "er": (0, 170, 170),
    "nuclear_membrane": (120, 160, 255),
    "nuclear_reticulum": (170, 120, 255),
    "golgi": (255, 200, 0),
    "lipid_droplet": (255, 255, 80),
    "mitochondria": (230, 40, 40),
    "peroxisome": (0, 220, 0),
    "early_endosome": (255, 120, 200),
    "late_endosome": (200, 0, 200),
    "lysosome": (255, 140, 0),
    "plasma_membrane": (0, 255, 255),
    "filopodia": (150, 255, 200),
}


def nilered_channel_names(names: Sequence[str], n_channels: int) -> list[str]:
    """The channel names of a Nile Red image: its own when they include ``yellow`` and ``red``, else the first
    two channels are taken as yellow and red (``ch2``, ``ch3``, ... after them)."""
    names = [str(n) for n in names]
    if len(names) == n_channels and {"yellow", "red"} <= set(names):
        return names
    return ["yellow", "red", *[f"ch{i}" for i in range(2, n_channels)]]


def find_bundles(bundles_or_dir: str | os.PathLike | Sequence[Any]) -> list[Any]:
    """The bundles to run: a folder containing ``*.stainfree`` bundles, one bundle path, or a list of
    paths/Bundles.

    Returns loaded bundles (:class:`stainfree.models.bundle.Bundle`).
    """
    from stainfree.models.bundle import load_bundle

    if isinstance(bundles_or_dir, str | os.PathLike):
        p = Path(bundles_or_dir)
        if not p.exists():
            raise InputError(p, "bundle or bundle folder not found")
        if (p / "bundle.yaml").is_file():
            items: list[Any] = [p]
        else:
            items = sorted(q for q in p.iterdir() if (q / "bundle.yaml").is_file())
            if not items:
                raise InputError(p, "no model bundles (folders with bundle.yaml) in this folder")
    else:
        items = list(bundles_or_dir)
        if not items:
            raise InputError("bundles", "no bundles given")
    return [load_bundle(b) if isinstance(b, str | os.PathLike) else b for b in items]


def bundle_threshold(config: Any, threshold: float | None = None) -> float:
    """The probability threshold of a binary bundle: ``threshold`` when given, else the bundle's own
    (chosen on validation at export), else 0.5."""
    if threshold is not None:
        return float(threshold)
    own = getattr(config, "threshold", None)
    return 0.5 if own is None else float(own)


def masks_from_output(
    output: np.ndarray, task: str, class_names: Sequence[str], threshold: float = 0.5
) -> dict:
    """Compartment masks from one network's output.

    Parameters
    ----------
    output : ndarray
        Probabilities (C_out, Z, Y, X): one channel for a binary net, one per class for a multi-class net.
    task : {"binary", "multiclass"}
    class_names : sequence of str
        Names of the output classes; names not in COMPARTMENTS (e.g. ``"background"``) are dropped.
    threshold : float
        Binary nets: probability at which a voxel is foreground.

    Returns
    -------
    dict
        compartment name -> uint8 mask (Z, Y, X).
    """
    out = np.asarray(output)
    if task == "binary":
        if len(class_names) != 1:
            raise InputError("bundle", f"a binary net has one class name, got {list(class_names)}")
        if class_names[0] not in COMPARTMENTS:
            return {}
        return {class_names[0]: (out[0] >= threshold).astype(np.uint8)}
    if task != "multiclass":
        raise InputError("bundle", f"task {task!r} is not a segmentation task")
    if out.shape[0] != len(class_names):
        raise InputError("bundle", f"{out.shape[0]} output channels but {len(class_names)} class names")
    winner = np.argmax(out, axis=0)
    return {n: (winner == i).astype(np.uint8) for i, n in enumerate(class_names) if n in COMPARTMENTS}


def label_map_from_masks(masks: np.ndarray, priority: Sequence[str] | None = None) -> np.ndarray:
    """Label map (compartment id 1..15, 0 = none) from 15 possibly overlapping masks.

    Parameters
    ----------
    masks : ndarray
        (15, ...) masks in COMPARTMENTS order.
    priority : sequence of str, optional
        Compartments from highest to lowest priority (where masks overlap the first wins); default: the
        packaged
        catalog's ``label_priority``.

    Returns
    -------
    ndarray of uint8
        Same spatial shape as the masks.
    """
    m = np.asarray(masks)
    if m.shape[0] != len(COMPARTMENTS):
        raise InputError("masks", f"expected {len(COMPARTMENTS)} mask channels, got {m.shape[0]}")
    if priority is None:
        from stainfree.catalog import load_catalog

        priority = load_catalog().label_priority
    labels = np.zeros(m.shape[1:], dtype=np.uint8)
    for name in reversed(list(priority)):
        cid = compartment_id(name)
        labels[m[cid - 1] != 0] = cid
    return labels


def _colour_table() -> np.ndarray:
    table = np.zeros((len(COMPARTMENTS) + 1, 3), dtype=np.float32)
    for name, rgb in COMPARTMENT_COLORS.items():
        table[compartment_id(name)] = np.asarray(rgb, dtype=np.float32) / 255.0
    return table


def _unit_rgb(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """A 0-255 RGB colour as matplotlib's 0-1 floats."""
    return (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)


def overlay_rgb(intensity: np.ndarray, labels: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """A 2D colour overlay: intensity in grey, compartments in their fixed colours (COMPARTMENT_COLORS).

    Parameters
    ----------
    intensity : ndarray (Y, X)
        Grey background, scaled to its 1-99.8 percentiles.
    labels : ndarray (Y, X)
        Label map (0 = none, shown as grey only).
    alpha : float
        Opacity of the colours.

    Returns
    -------
    ndarray of uint8, (Y, X, 3)
    """
    img = np.asarray(intensity, dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99.8]) if img.size else (0.0, 1.0)
    grey = np.clip((img - lo) / max(float(hi - lo), 1e-12), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    lab = np.asarray(labels).astype(np.int64)
    colour = _colour_table()[np.clip(lab, 0, len(COMPARTMENTS))]
    on = (lab > 0)[..., None]
    rgb = np.where(on, (1 - alpha) * rgb + alpha * colour, rgb)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _projected_labels(masks: np.ndarray, priority: Sequence[str]) -> np.ndarray:
    return label_map_from_masks(np.asarray(masks).max(axis=1), priority)


def segment(
    bundles_or_catalog_dir: str | os.PathLike | Sequence[Any],
    nilered_image: np.ndarray,
    meta: ImageMeta | None = None,
    *,
    catalog: str | os.PathLike | None = None,
    threshold: float | None = None,
    overlap: float = 0.25,
    roi_size: Sequence[int] | None = None,
    progress: bool = False,
    tta: bool = False,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the catalog networks on one Nile Red image.

    Parameters
    ----------
    bundles_or_catalog_dir : path or sequence
        A folder of bundles (as written by :func:`stainfree.api.train_catalog`), one bundle, or a list of
        bundle paths / loaded bundles.
    nilered_image : ndarray
        (C, Z, Y, X) Nile Red image with the yellow and red channels (``meta.channel_names`` names them;
        without
        names the first two channels are taken as yellow, red).
    meta : ImageMeta, optional
        Axes ``"CZYX"``, channel names and voxel size of the image.
    catalog : str or path, optional
        Catalog whose ``label_priority`` orders the label map (default: ``organelles_v1``).
    threshold : float, optional
        Probability threshold of every binary net; None = each bundle's own (:func:`bundle_threshold`).
    overlap, roi_size : optional
        Sliding-window settings passed to the predictor.
    progress : bool
        Show a progress bar over networks.
    tta : bool
        Test-time augmentation: each network's logits are averaged over the 8 flipped and turned Y-X views.
    quiet : bool
        Do not log the compartments no bundle segments (the frames after the first of a time-lapse).

    Returns
    -------
    masks : ndarray of uint8, (15, Z, Y, X)
        One mask per compartment in COMPARTMENTS order; compartments no bundle segments stay 0 (logged).
    labels : ndarray of uint8, (Z, Y, X)
        Label map by priority (compartment id, 0 = none).
    """
    from stainfree.catalog import DEFAULT_CATALOG, load_catalog

    cat = load_catalog(catalog or DEFAULT_CATALOG)
    image = np.asarray(nilered_image)
    if image.ndim != 4:
        raise InputError(
            getattr(meta, "path", "") or "Nile Red image", f"expected (C, Z, Y, X), got shape {image.shape}"
        )
    if meta is None:
        meta = ImageMeta(axes="CZYX", shape=image.shape, dtype=str(image.dtype))
    bundles = find_bundles(bundles_or_catalog_dir)
    masks = np.zeros((len(COMPARTMENTS), *image.shape[1:]), dtype=np.uint8)
    covered: dict[str, str] = {}
    iterator: Any = bundles
    if progress:
        from rich.progress import track

        iterator = track(bundles, description="segmenting")
    for b in iterator:
        probs = _predict(b, image, meta, overlap=overlap, roi_size=roi_size, tta=tta)
        cfg = b.config
        names = list(cfg.class_names or [])
        for name, mask in masks_from_output(probs, cfg.task, names, bundle_threshold(cfg, threshold)).items():
            if name in covered:
                log.warning(
                    "%s is segmented by both %s and %s; keeping the union", name, covered[name], cfg.name
                )
            covered[name] = cfg.name
            masks[compartment_id(name) - 1] |= mask.reshape(image.shape[1:])
    missing = [c for c in COMPARTMENTS if c not in covered]
    if missing and not quiet:
        log.warning("no bundle segments %s; their masks are empty", ", ".join(missing))
    return masks, label_map_from_masks(masks, cat.label_priority)


def _predict(bundle: Any, image: np.ndarray, meta: ImageMeta, **kwargs: Any) -> np.ndarray:
    """Probabilities (C_out, Z, Y, X) of one bundle on the image grid."""
    from stainfree.inference.predict import predict_with_bundle

    kw = {k: v for k, v in kwargs.items() if v is not None}
    pred, _ = predict_with_bundle(bundle, image, meta, **kw)
    out = np.asarray(pred, dtype=np.float32)
    if out.ndim == 3:  # (C, Y, X) of a single plane
        out = out[:, None]
    return out


def write_segmentation(
    out_dir: str | os.PathLike,
    masks: np.ndarray,
    labels: np.ndarray,
    intensity: np.ndarray,
    *,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    name: str = "segmentation",
    priority: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the 15 masks, the label map, an OME-Zarr with NGFF labels and a colour overlay PNG.

    Files: ``<name>_masks.ome.tif`` (CZYX uint8, 15 channels named by compartment), ``<name>_labels.ome.tif``
    (ZYX uint8), ``<name>.ome.zarr`` (NGFF 0.4: the Nile Red intensity, and the label map as the NGFF label
    image ``labels/compartments`` with the compartment colours and names) and ``<name>_overlay.png`` (left:
    the z slice through the most cell interior, right: maximum projection; intensity in grey, compartments in
    COMPARTMENT_COLORS).

    Returns
    -------
    dict
        ``{"masks": path, "labels": path, "ngff": path, "overlay": path}``.
    """
    from stainfree.io.writers import write_ome_tiff

    out = Path(out_dir)
    m = np.asarray(masks, dtype=np.uint8)
    lab = np.asarray(labels, dtype=np.uint8)
    inten = np.asarray(intensity, dtype=np.float32).reshape(lab.shape)
    paths = {
        "masks": write_ome_tiff(
            out / f"{name}_masks.ome.tif",
            m,
            "CZYX",
            voxel_size_um=voxel_size_um,
            channel_names=list(COMPARTMENTS),
        ),
        "labels": write_ome_tiff(out / f"{name}_labels.ome.tif", lab, "ZYX", voxel_size_um=voxel_size_um),
    }
    # the same as OME-Zarr (NGFF 0.4): the intensity image with the label map as an NGFF labels group,
    # coloured and named by compartment, which napari-ome-zarr and other NGFF viewers show as labels
    from stainfree.io.writers import create_ome_zarr

    with create_ome_zarr(
        out / f"{name}.ome.zarr", inten.shape, np.float32, "ZYX", voxel_size_um, ["nile_red_intensity"]
    ) as zw:
        zw.array[...] = inten
        zw.add_labels(
            "compartments",
            lab,
            colors={compartment_id(c): (*COMPARTMENT_COLORS[c], 255) for c in COMPARTMENTS},
            properties={compartment_id(c): c for c in COMPARTMENTS},
        )
    paths["ngff"] = out / f"{name}.ome.zarr"
    paths["overlay"] = write_overlay(out / f"{name}_overlay.png", m, lab, inten, priority)
    return paths


def write_overlay(
    path: str | os.PathLike,
    masks: np.ndarray,
    labels: np.ndarray,
    intensity: np.ndarray,
    priority: Sequence[str] | None = None,
) -> Path:
    """The colour overlay PNG of one frame: left the z slice through the most cell interior, right the
    maximum projection; intensity in grey, compartments in COMPARTMENT_COLORS, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stainfree.io.atomic import atomic_path

    m = np.asarray(masks, dtype=np.uint8)
    lab = np.asarray(labels, dtype=np.uint8)
    inten = np.asarray(intensity, dtype=np.float32).reshape(lab.shape)
    if priority is None:
        from stainfree.catalog import load_catalog

        priority = load_catalog().label_priority
    # the plane through the most cell interior (not a tangential cut through the plasma membrane); the
    # middle one of a field without cells
    outside = [0, *(compartment_id(c) for c in ("extracellular", "plasma_membrane", "filopodia"))]
    interior = (~np.isin(lab, outside)).sum(axis=(1, 2))
    z = int(np.argmax(interior)) if interior.any() else lab.shape[0] // 2
    panels = [
        (f"slice z={z} (most cell interior)", overlay_rgb(inten[z], lab[z])),
        ("max projection", overlay_rgb(inten.max(axis=0), _projected_labels(m, priority))),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1, 1, 0.45]})
    for ax, (title, rgb) in zip(axes[:2], panels, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    handles = [
        plt.Line2D([], [], marker="s", ls="", color=_unit_rgb(COMPARTMENT_COLORS[c]), label=c, mec="0.5")
        for c in COMPARTMENTS
    ]
    axes[2].legend(handles=handles, loc="center left", fontsize=7, frameon=False)
    axes[2].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
