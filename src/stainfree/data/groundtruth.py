"""Ground-truth masks from colocalization images: a GFP-tagged organelle imaged together with Nile Red.

The GFP channel marks one organelle; it also catches a little of the yellow Nile Red emission
(bleed-through). The
recipe, LiCAI-style:

1. ``G' = clip(G - r * Y, 0)`` with the bleed-through coefficient ``r`` (default 0.05);
2. optionally zero ``G'`` inside lipid droplets (a LD mask), where Nile Red is so bright that even 5 % leaks;
3. foreground by an automatic local threshold (:func:`threshold_mask`), or by an FG-net, a small 2D binary
network
   trained on a handful of hand-annotated colocalization images and applied to any organelle's GFP image
   (:func:`stainfree.api.train_fgnet`, :func:`stainfree.inference.fgnet.fgnet_mask`).

The numpy steps are here; :func:`make_masks` is the thin file shell (one mask per input image). The part that
runs a network lives in :mod:`stainfree.inference.fgnet`: pass it to :func:`make_masks` as a callable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stainfree.errors import InputError

__all__ = [
    "lipid_droplet_mask",
    "make_masks",
    "split_colocalization",
    "subtract_bleedthrough",
    "threshold_mask",
    "zero_inside",
]

IMAGE_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".czi", ".zarr", ".ome.zarr", ".png")


def subtract_bleedthrough(gfp: np.ndarray, yellow: np.ndarray, r: float = 0.05) -> np.ndarray:
    """Remove Nile Red bleed-through from the GFP channel: ``clip(G - r * Y, 0)``.

    Parameters
    ----------
    gfp, yellow : ndarray
        GFP channel and yellow Nile Red channel of the same field (same shape).
    r : float
        Bleed-through coefficient (fraction of the yellow signal seen in the GFP channel), >= 0.

    Returns
    -------
    ndarray of float32
        Corrected GFP image, never negative.
    """
    g = np.asarray(gfp, dtype=np.float32)
    y = np.asarray(yellow, dtype=np.float32)
    if g.shape != y.shape:
        raise InputError("gfp/yellow channels", f"gfp has shape {g.shape} but yellow has shape {y.shape}")
    if not np.isfinite(r) or r < 0:
        raise InputError("bleed-through coefficient", f"must be a finite number >= 0, got {r}")
    return np.clip(g - np.float32(r) * y, 0, None)


def zero_inside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``image`` set to 0 where ``mask`` is non-zero (e.g. inside lipid droplets)."""
    img = np.array(image, copy=True)
    m = np.asarray(mask)
    if m.shape != img.shape:
        raise InputError("mask", f"mask has shape {m.shape} but the image has shape {img.shape}")
    img[m != 0] = 0
    return img


def _otsu(values: np.ndarray) -> float:
    from stainfree.data.ratiometric import otsu_threshold

    return otsu_threshold(values)


def threshold_mask(
    image: np.ndarray,
    *,
    method: str = "local",
    block_size: int = 31,
    offset: float = 0.0,
    min_size: int = 4,
    smooth_sigma: float = 1.0,
) -> np.ndarray:
    """Foreground mask of an organelle image by an automatic threshold.

    Parameters
    ----------
    image : ndarray
        2D (YX) or 3D (ZYX) image, non-negative.
    method : {"local", "otsu"}
        ``"local"``: a voxel is foreground when it is above the local mean of its ``block_size`` neighbourhood
        (``skimage.filters.threshold_local`` per z slice, plus ``offset``) AND above the global Otsu threshold
        of the image (so flat background never becomes foreground). ``"otsu"``: global Otsu only.
    block_size : int
        Odd neighbourhood size in pixels for the local threshold (about 3x the organelle diameter).
    offset : float
        Added to the local threshold (in image units).
    min_size : int
        Connected components smaller than this (voxels) are removed.
    smooth_sigma : float
        Gaussian smoothing (pixels) before thresholding, against shot noise; 0 for none.

    Returns
    -------
    ndarray of uint8
        1 = foreground, 0 = background; same shape as ``image``.
    """
    from scipy import ndimage
    from skimage.filters import threshold_local
    from skimage.morphology import remove_small_objects

    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if img.ndim not in (2, 3):
        raise InputError("organelle image", f"expected a 2D or 3D image, got {img.ndim} dimensions")
    if method not in ("local", "otsu"):
        raise InputError("threshold method", f"must be 'local' or 'otsu', got {method!r}")
    if smooth_sigma > 0:
        img = ndimage.gaussian_filter(img, smooth_sigma)
    if float(img.max()) <= float(img.min()):
        return np.zeros(img.shape, dtype=np.uint8)
    mask = img > _otsu(img)
    if method == "local":
        bs = int(block_size) | 1
        slices = img[None] if img.ndim == 2 else img
        local = np.stack([s > threshold_local(s, block_size=bs, offset=-offset) for s in slices])
        mask &= local[0] if img.ndim == 2 else local
    if min_size > 1:
        mask = remove_small_objects(mask, max_size=min_size - 1)
    return mask.astype(np.uint8)


def split_colocalization(
    array: np.ndarray, channel_names: Sequence[str], *, source: str = "colocalization image"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The GFP (organelle) channel and, when present, the yellow Nile Red channel of a CZYX image.

    Channels are found by name (``"gfp"``, ``"yellow"``, case-insensitive); without names a 3-channel image
    is read
    as (yellow, red, gfp), a 2-channel one as (yellow, gfp) and a 1-channel one as the GFP channel alone.

    Returns
    -------
    gfp, yellow : ndarray (Z, Y, X) and ndarray or None
    """
    names = [n.lower() for n in channel_names]
    c = array.shape[0]
    if "gfp" in names:
        g = names.index("gfp")
        y = names.index("yellow") if "yellow" in names else None
    elif c == 3:
        g, y = 2, 0
    elif c == 2:
        g, y = 1, 0
    elif c == 1:
        g, y = 0, None
    else:
        raise InputError(source, f"cannot tell the GFP channel among {c} unnamed channels; name one 'gfp'")
    return array[g], (array[y] if y is not None else None)


def _list_images(folder_or_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(folder_or_files, str | os.PathLike):
        p = Path(folder_or_files)
        if p.is_dir() and not p.name.endswith(".zarr"):
            files = sorted(f for f in p.iterdir() if f.name.lower().endswith(IMAGE_SUFFIXES))
            if not files:
                raise InputError(p, "no images found in this folder (.tif, .ome.tif, .czi, .zarr, .png)")
            return files
        paths = [p]
    else:
        paths = [Path(f) for f in folder_or_files]
    missing = [InputError(f, "file not found") for f in paths if not f.exists()]
    if missing:
        from stainfree.errors import InputErrors

        raise missing[0] if len(missing) == 1 else InputErrors(missing)
    return paths


def _stem(path: Path) -> str:
    name = path.name
    for suf in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def lipid_droplet_mask(
    czyx: np.ndarray, channel_names: Sequence[str] = (), *, threshold: float = 0.5, source: str = "mask"
) -> np.ndarray:
    """The lipid-droplet voxels of a mask file, whatever made it.

    - a ``segment`` output (channels named after the compartments): its ``lipid_droplet`` channel;
    - a probability map (one float channel within [0, 1], e.g. ``predict`` of an LD network): ``> threshold``;
    - a binary or instance mask (one channel): ``> 0``.

    Parameters
    ----------
    czyx : ndarray
        The mask file as (C, Z, Y, X).
    channel_names : sequence of str
        Its channel names.
    threshold : float
        Probability threshold of a probability map.
    source : str
        File name for errors.

    Returns
    -------
    ndarray of bool, (Z, Y, X)

    Raises
    ------
    InputError
        Several channels and none named ``lipid_droplet``.
    """
    names = [str(n) for n in channel_names]
    if "lipid_droplet" in names:
        return np.asarray(czyx[names.index("lipid_droplet")]) > 0
    if czyx.shape[0] != 1:
        raise InputError(
            source,
            f"has {czyx.shape[0]} channels and none is named lipid_droplet (give the LD channel alone)",
        )
    m = np.asarray(czyx[0])
    if np.issubdtype(m.dtype, np.floating) and m.size and float(m.min()) >= 0.0 and float(m.max()) <= 1.0:
        return m > threshold
    return m > 0


def make_masks(
    folder_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    method: str = "threshold",
    bleed: float = 0.05,
    ld_mask: str | os.PathLike | Callable[[np.ndarray, Any], np.ndarray] | None = None,
    fgnet: Callable[[np.ndarray], np.ndarray] | None = None,
    block_size: int = 31,
    min_size: int = 4,
    ld_threshold: float = 0.5,
) -> list[Path]:
    """Ground-truth masks for a set of colocalization images, one ``<name>_mask.ome.tif`` (uint8 ZYX) each.

    Parameters
    ----------
    folder_or_files : path or list of paths
        A folder of images or the images themselves (CZYX with a GFP channel, see
        :func:`split_colocalization`).
    out_dir : path
        Where the masks are written (created; inputs are never overwritten).
    method : {"threshold", "fgnet"}
        Automatic local threshold or an FG-net bundle (``fgnet`` required).
    bleed : float
        Bleed-through coefficient ``r`` of ``G - r * Y`` (skipped when the image has no yellow channel).
    ld_mask : path or callable, optional
        A function ``(czyx, meta) -> bool (Z, Y, X)`` that finds the lipid droplets of each image (an LD
        network), or a lipid-droplet mask: one file for all images, or a folder with a file of the same name
        per image; a
        binary mask, a probability map or a ``segment`` output (see :func:`lipid_droplet_mask`).
    fgnet : callable, optional
        For ``method="fgnet"``: a function image (YX or ZYX) -> uint8 mask, such as
        ``stainfree.inference.fgnet.fgnet_predictor(bundle)`` (a bundle path is turned into one by
        :func:`stainfree.workflows.organelles.make_masks`; this data-layer function raises ``TypeError``).
    block_size, min_size : int
        See :func:`threshold_mask`.
    ld_threshold : float
        Threshold of a lipid-droplet probability map.

    Returns
    -------
    list of Path
        The written masks, in input order.
    """
    from stainfree.io.readers import as_czyx, read_image
    from stainfree.io.writers import write_ome_tiff

    if method not in ("threshold", "fgnet"):
        raise InputError("method", f"must be 'threshold' or 'fgnet', got {method!r}")
    if method == "fgnet" and fgnet is None:
        raise InputError("method fgnet", "needs an FG-net bundle (--fgnet BUNDLE)")
    files = _list_images(folder_or_files)
    out = Path(out_dir)
    foreground: Callable[[np.ndarray], np.ndarray] | None = None
    if method == "fgnet":
        if not callable(fgnet):
            # The network runs in the inference layer, above this one: the caller loads the bundle.
            raise TypeError(
                f"make_masks(method='fgnet') needs a callable image -> mask, got {fgnet!r}; pass "
                "stainfree.inference.fgnet.fgnet_predictor(bundle) "
                "(stainfree.api.make_masks accepts a bundle path)"
            )
        foreground = fgnet
    written = []
    for f in files:
        arr, meta = read_image(f)
        czyx = as_czyx(np.asarray(arr), meta.axes)
        gfp, yellow = split_colocalization(czyx, meta.channel_names, source=str(f))
        g = subtract_bleedthrough(gfp, yellow, bleed) if yellow is not None else gfp.astype(np.float32)
        if callable(ld_mask):  # an LD network run on this image (see workflows.organelles.make_masks)
            m = np.asarray(ld_mask(czyx, meta), dtype=bool).reshape(g.shape)
            g = zero_inside(g, m)
        elif ld_mask is not None:
            lp = Path(ld_mask)
            lp = lp / f.name if lp.is_dir() else lp
            if not lp.exists():
                raise InputError(lp, "lipid-droplet mask not found")
            m_arr, m_meta = read_image(lp)
            m_czyx = np.asarray(as_czyx(np.asarray(m_arr), m_meta.axes))
            m = lipid_droplet_mask(m_czyx, m_meta.channel_names, threshold=ld_threshold, source=str(lp))
            if m.shape != g.shape:
                raise InputError(lp, f"mask shape {m.shape} does not match the image {g.shape} (z, y, x)")
            g = zero_inside(g, m)
        if method == "threshold":
            mask = threshold_mask(g if g.shape[0] > 1 else g[0], block_size=block_size, min_size=min_size)
        else:
            assert foreground is not None  # method == "fgnet", checked above
            mask = foreground(g if g.shape[0] > 1 else g[0])
        mask = mask.reshape(g.shape)
        dest = out / f"{_stem(f)}_mask.ome.tif"
        if dest.resolve() == f.resolve():
            raise InputError(dest, "refusing to overwrite an input image")
        written.append(write_ome_tiff(dest, mask.astype(np.uint8), "ZYX", voxel_size_um=meta.voxel_size_um))
    return written
