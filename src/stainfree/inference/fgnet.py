"""FG-net masks: the foreground of an organelle image predicted by a small 2D binary network.

The ground-truth recipe itself (bleed-through, lipid-droplet zeroing, thresholds, the file shell) is
numpy-only and lives in :mod:`stainfree.data.groundtruth`; this module adds the part that runs a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

__all__ = ["fgnet_mask", "fgnet_predictor"]


def fgnet_mask(
    image: np.ndarray, bundle: str | os.PathLike | object, *, threshold: float = 0.5
) -> np.ndarray:
    """Foreground mask of an organelle image predicted by an FG-net bundle (a 2D binary network).

    Parameters
    ----------
    image : ndarray
        2D (YX) or 3D (ZYX) bleed-through-corrected organelle image; the 2D net runs slice by slice.
    bundle : path or loaded Bundle
        An FG-net trained with :func:`stainfree.api.train_fgnet`.
    threshold : float
        Probability above which a pixel is foreground.

    Returns
    -------
    ndarray of uint8
    """
    from stainfree.inference.predict import predict_with_bundle
    from stainfree.models.bundle import load_bundle
    from stainfree.types import ImageMeta

    b = load_bundle(bundle) if isinstance(bundle, str | os.PathLike) else bundle
    img = np.asarray(image, dtype=np.float32)
    stack = img[None] if img.ndim == 2 else img
    czyx = stack[None]
    meta = ImageMeta(axes="CZYX", shape=czyx.shape, dtype="float32", channel_names=("gfp",))
    prob, _ = predict_with_bundle(b, czyx, meta)
    mask = (np.asarray(prob, dtype=np.float32)[0] >= threshold).astype(np.uint8)
    return mask.reshape(img.shape)


def fgnet_predictor(
    bundle: str | os.PathLike | object, *, threshold: float = 0.5
) -> Callable[[np.ndarray], np.ndarray]:
    """The FG-net bundle (loaded once) as a function image -> uint8 mask, for
    :func:`stainfree.data.groundtruth.make_masks` (``method="fgnet", fgnet=fgnet_predictor(bundle)``)."""
    from stainfree.models.bundle import load_bundle

    b = load_bundle(bundle) if isinstance(bundle, str | os.PathLike) else bundle

    def predict(image: np.ndarray) -> np.ndarray:
        return fgnet_mask(image, b, threshold=threshold)

    return predict
