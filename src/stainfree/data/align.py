"""Channel registration: chromatic shift (translation, subpixel) or an affine between two channels.

Two-camera or split-view set-ups image the yellow and red emission of Nile Red on slightly shifted grids; the
ratio
R/Y is only right once both are on the same grid. The shift is estimated by phase cross-correlation on the
image
itself (both channels see the same membranes) or on a bead image, and applied with spline interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stainfree.errors import InputError

__all__ = [
    "ChannelShift",
    "apply_affine",
    "apply_shift",
    "estimate_affine",
    "estimate_shift",
    "align_channels",
    "align_for_ratio",
    "ratio_shift",
    "shift_region",
]


@dataclass(frozen=True)
class ChannelShift:
    """The shift that moves a moving channel onto a reference channel.

    Attributes
    ----------
    shift_px : tuple of float
        (z, y, x) in pixels (z is 0 for 2D images); apply with :func:`apply_shift`.
    shift_um : tuple of float or None
        The same in micrometres, None per axis when the voxel size is unknown.
    error : float
        Normalised registration error of phase cross-correlation (0 = perfect).
    """

    shift_px: tuple[float, float, float]
    shift_um: tuple[float | None, float | None, float | None]
    error: float

    def describe(self) -> str:
        """One line for a report, e.g. ``shift (z, y, x) = (0.00, 1.50, -0.75) px = (0, 0.12, -0.06) um``."""
        px = ", ".join(f"{v:.2f}" for v in self.shift_px)
        um = ", ".join("?" if v is None else f"{v:.3g}" for v in self.shift_um)
        return f"shift (z, y, x) = ({px}) px = ({um}) um"


def _check_pair(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float32)
    mov = np.asarray(moving, dtype=np.float32)
    if ref.shape != mov.shape:
        raise InputError("channel pair", f"reference has shape {ref.shape} but moving has shape {mov.shape}")
    if ref.ndim not in (2, 3):
        raise InputError("channel pair", f"expected a 2D (YX) or 3D (ZYX) image, got {ref.ndim} dimensions")
    if not (np.isfinite(ref).all() and np.isfinite(mov).all()):
        raise InputError("channel pair", "contains NaN or Inf values")
    return ref, mov


def estimate_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    voxel_size_um: Sequence[float | None] = (None, None, None),
    upsample_factor: int = 20,
    refine: bool = True,
) -> ChannelShift:
    """Estimate the translation that registers ``moving`` onto ``reference`` (phase cross-correlation,
    subpixel).

    Parameters
    ----------
    reference, moving : ndarray
        Same-shape 2D (YX) or 3D (ZYX) images: two channels of the same field, or two channels of a bead
        image.
    voxel_size_um : sequence of 3 float or None
        (z, y, x) voxel size to report the shift in micrometres.
    upsample_factor : int
        Subpixel precision of the phase cross-correlation is ``1 / upsample_factor`` pixel.
    refine : bool
        Refine the phase-correlation estimate by minimising the mean squared difference between ``reference``
        and
        the spline-shifted ``moving`` over the image interior (Powell search). Phase correlation alone is
        biased by
        non-periodic image borders; the refinement reaches a few hundredths of a pixel on cell images.

    Returns
    -------
    ChannelShift
        ``apply_shift(moving, result.shift_px)`` is aligned with ``reference``.
    """
    from skimage.registration import phase_cross_correlation

    ref, mov = _check_pair(reference, moving)
    shift, error, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample_factor, normalization=None)
    shift = np.asarray(shift, dtype=np.float64)
    if refine:
        shift = _refine_shift(ref, mov, shift)
    shift = [float(s) for s in np.atleast_1d(shift)]
    if ref.ndim == 2:
        shift = [0.0, *shift]
    um = [None if v is None else float(s) * float(v) for s, v in zip(shift, voxel_size_um, strict=True)]
    return ChannelShift(
        shift_px=(shift[0], shift[1], shift[2]), shift_um=(um[0], um[1], um[2]), error=float(error)
    )


def _refine_shift(ref: np.ndarray, mov: np.ndarray, start: np.ndarray) -> np.ndarray:
    from scipy import ndimage, optimize

    def norm(a: np.ndarray) -> np.ndarray:
        return (a - a.mean()) / max(float(a.std()), 1e-12)

    # a central crop of at most 128 px (16 in z) keeps the search cheap on large images
    crop = tuple(
        slice((n - c) // 2, (n - c) // 2 + c)
        for n, c in zip(
            ref.shape,
            [min(n, 16 if ref.ndim == 3 and i == 0 else 128) for i, n in enumerate(ref.shape)],
            strict=True,
        )
    )
    ref, mov = ref[crop], mov[crop]
    ref_n, mov_n = norm(ref), norm(mov)
    margin = [min(int(np.ceil(abs(s))) + 3, n // 4) for s, n in zip(start, ref.shape, strict=True)]
    inner = tuple(
        slice(m, n - m) if n > 2 * m else slice(None) for m, n in zip(margin, ref.shape, strict=True)
    )
    active = np.array([n > 1 for n in ref.shape])

    def cost(x: np.ndarray) -> float:
        full = np.zeros(ref.ndim)
        full[active] = x
        moved = ndimage.shift(mov_n, full, order=3, mode="nearest")
        return float(np.mean((moved[inner] - ref_n[inner]) ** 2))

    res = optimize.minimize(cost, start[active], method="Powell", options={"xtol": 1e-3, "ftol": 1e-8})
    out = np.zeros(ref.ndim)
    out[active] = res.x
    return out


def apply_shift(image: np.ndarray, shift_px: Sequence[float], *, order: int = 3) -> np.ndarray:
    """Translate a 2D or 3D image by ``shift_px`` (z, y, x) pixels (z ignored for 2D); edges filled by
    nearest value.

    Returns a float32 array of the input's shape.
    """
    img = np.asarray(image, dtype=np.float32)
    shift = list(shift_px)[-img.ndim :] if img.ndim < 3 else list(shift_px)
    from scipy import ndimage

    return ndimage.shift(img, shift, order=order, mode="nearest").astype(np.float32)


def estimate_affine(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    min_sigma: float = 1.0,
    max_sigma: float = 4.0,
    threshold: float = 0.05,
    max_distance_px: float = 10.0,
) -> np.ndarray:
    """Estimate a 2D affine (3x3 homogeneous, y-x order) from bead-like spots in two channels.

    Spots are detected with a Laplacian of Gaussian in both channels, matched to their nearest neighbour
    (within
    ``max_distance_px``) and an affine is fitted by least squares. Use on a bead image.

    Returns
    -------
    ndarray (3, 3)
        Matrix ``M`` mapping reference coordinates to moving coordinates (the form :func:`apply_affine`
        takes).

    Raises
    ------
    InputError
        When fewer than 3 matched spots are found.
    """
    from scipy.spatial import cKDTree
    from skimage.feature import blob_log

    ref, mov = _check_pair(reference, moving)
    if ref.ndim != 2:
        raise InputError("channel pair", "affine estimation takes 2D bead images")

    def spots(img: np.ndarray) -> np.ndarray:
        scaled = (img - img.min()) / max(float(np.ptp(img)), 1e-12)
        return blob_log(scaled, min_sigma=min_sigma, max_sigma=max_sigma, threshold=threshold)[:, :2]

    p_ref, p_mov = spots(ref), spots(mov)
    if len(p_ref) < 3 or len(p_mov) < 3:
        raise InputError(
            "bead image", f"found {len(p_ref)}/{len(p_mov)} beads; need at least 3 in each channel"
        )
    dist, idx = cKDTree(p_mov).query(p_ref, distance_upper_bound=max_distance_px)
    ok = np.isfinite(dist)
    if ok.sum() < 3:
        raise InputError(
            "bead image", f"only {int(ok.sum())} beads matched between channels; need at least 3"
        )
    src = np.c_[p_ref[ok], np.ones(ok.sum())]
    dst = p_mov[idx[ok]]
    coef, *_ = np.linalg.lstsq(src, dst, rcond=None)
    matrix = np.eye(3)
    matrix[:2, :] = coef.T
    return matrix


def apply_affine(image: np.ndarray, matrix: np.ndarray, *, order: int = 3) -> np.ndarray:
    """Resample a 2D image (or each z slice of a 3D one) with a 3x3 (y, x) affine from
    :func:`estimate_affine`."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float32)
    m = np.asarray(matrix, dtype=np.float64)
    if img.ndim == 2:
        return ndimage.affine_transform(img, m, order=order, mode="nearest").astype(np.float32)
    return np.stack([ndimage.affine_transform(s, m, order=order, mode="nearest") for s in img]).astype(
        np.float32
    )


def align_channels(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    beads: tuple[np.ndarray, np.ndarray] | None = None,
    voxel_size_um: Sequence[float | None] = (None, None, None),
) -> tuple[np.ndarray, ChannelShift]:
    """Register ``moving`` onto ``reference`` by a translation estimated from the image or from a bead pair.

    Parameters
    ----------
    reference, moving : ndarray
        The two channels (same shape, 2D or 3D).
    beads : (reference_beads, moving_beads), optional
        A bead image of both channels; when given, the shift is estimated from it instead of the cells.
    voxel_size_um : sequence of 3 float or None
        Voxel size for the report in micrometres.

    Returns
    -------
    aligned : ndarray of float32
        ``moving`` shifted onto ``reference``.
    shift : ChannelShift
        The shift applied (pixels and micrometres).
    """
    source = beads if beads is not None else (reference, moving)
    shift = estimate_shift(source[0], source[1], voxel_size_um=voxel_size_um)
    return apply_shift(moving, shift.shift_px), shift


#: An estimated chromatic shift larger than this (pixels) is not trusted: a field with too little structure,
#: not a lens; the channels are then left as they are (a known shift can always be given instead).
MAX_AUTO_SHIFT_PX = 3.0


def align_for_ratio(
    yellow: np.ndarray, red: np.ndarray, alignment: str | Sequence[float] = "auto"
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The red channel moved onto the yellow one before the emission ratio is formed.

    Parameters
    ----------
    yellow, red : ndarray
        The two Nile Red channels, (Z, Y, X) or (Y, X).
    alignment : {"auto", "none"} or sequence of 3 float
        ``auto``: the translation is estimated from the image (:func:`estimate_shift`, phase correlation to
        1/20 pixel without the slow refinement: within 0.05 px of the simulator's shift; an estimate beyond
        :data:`MAX_AUTO_SHIFT_PX` is not applied); (z, y, x) pixels: a known translation (e.g. from beads);
        ``none``: unchanged.

    Returns
    -------
    red : ndarray of float32
        The aligned red channel.
    shift_px : tuple of 3 float
        The (z, y, x) shift applied (zeros for ``none``).
    """
    r = np.asarray(red, dtype=np.float32)
    px = ratio_shift(yellow, r, alignment)
    if px == (0.0, 0.0, 0.0):
        return r, px
    return apply_shift(r, px), px


def ratio_shift(
    yellow: np.ndarray, red: np.ndarray, alignment: str | Sequence[float] = "auto"
) -> tuple[float, float, float]:
    """The (z, y, x) shift :func:`align_for_ratio` applies to red (zeros where it leaves red as it is)."""
    if isinstance(alignment, str):
        if alignment == "none":
            return (0.0, 0.0, 0.0)
        if alignment != "auto":
            raise InputError("channel_alignment", f"must be 'auto', 'none' or (z, y, x), got {alignment!r}")
        y = np.asarray(yellow, dtype=np.float32)
        r = np.asarray(red, dtype=np.float32)
        if y.ndim == 3 and y.shape[0] == 1:  # one plane stored as (1, Y, X): register in 2D
            px = (0.0, *estimate_shift(y[0], r[0], refine=False).shift_px[1:])
        else:
            px = estimate_shift(y, r, refine=False).shift_px
        if float(np.linalg.norm(px)) > MAX_AUTO_SHIFT_PX:
            return (0.0, 0.0, 0.0)
    else:
        px = tuple(float(v) for v in alignment)  # type: ignore[assignment]
        if len(px) != 3:
            raise InputError("channel_alignment", f"a shift needs (z, y, x), got {list(alignment)!r}")
    px = (float(px[0]), float(px[1]), float(px[2]))
    if max(abs(v) for v in px) < 1e-3:
        return (0.0, 0.0, 0.0)
    return px


#: Voxels read beyond a region along each shifted axis (besides the shift itself) so that the cubic spline
#: of :func:`apply_shift` on the region equals that of the whole image there (its prefilter decays as
#: 0.268 ** distance: 20 voxels leave < 1e-11 of the signal).
SHIFT_HALO = 20


def shift_region(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    region: Sequence[tuple[int, int]],
    shape: Sequence[int],
    shift_px: Sequence[float],
) -> np.ndarray:
    """``apply_shift(whole, shift_px)[region]`` reading only the region and a halo around it.

    Parameters
    ----------
    read : callable
        Returns the (Z, Y, X) image at the slices it is given.
    region : sequence of (start, stop)
        The (z, y, x) region wanted.
    shape : sequence of int
        The whole image's (Z, Y, X) shape.
    shift_px : sequence of 3 float
        As for :func:`apply_shift`.
    """
    ext = []
    for (a, b), n, s in zip(region, shape, shift_px, strict=True):
        h = 0 if s == 0 else SHIFT_HALO + int(np.ceil(abs(s)))
        ext.append((max(a - h, 0), min(b + h, int(n))))
    block = read(tuple(slice(a, b) for a, b in ext))
    if max(abs(float(v)) for v in shift_px) == 0:
        return np.asarray(block, dtype=np.float32)
    moved = apply_shift(block, shift_px)
    inner = tuple(slice(a - e0, b - e0) for (a, b), (e0, _) in zip(region, ext, strict=True))
    return moved[inner]
