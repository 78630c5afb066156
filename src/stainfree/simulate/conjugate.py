"""Conjugate EM / immunofluorescence of myelinated axons, with exact registration truth.

A field is a cross-section of white matter: non-overlapping axons (ellipses, about 0.3-1.5 um in radius),
most wrapped in a myelin sheath (g-ratio about 0.7) where a smooth random density allows, mitochondria in
some axons and a few glial nuclei. It is drawn once on a fine canvas (``fine_pixel_um``), from which come:

- the immunofluorescence (IF) of myelin basic protein: myelin area fraction per IF pixel, Gaussian PSF,
  background haze, Poisson photons and read noise, at the coarse ``if_pixel_um`` (:func:`simulate_conjugate`);
- EM-like images at ``em_pixel_um``: heavy-metal contrast (dark myelin, dark membranes, grey axoplasm and
  neuropil), granular texture, uneven staining and EM noise; no fluorescence. :func:`em_tile` samples a tile
  through a known similarity transform (translation, rotation, small scale change) and returns that
  transform from tile pixels to IF pixels (the truth); :func:`training_pair` returns the whole field's EM and
  IF resampled to a common pixel size (the registered training pairs).

Every array is a function of the seed (:class:`numpy.random.Generator`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import SimilarityTransform

from stainfree.register.transform import about_center, compose, rescale, similarity, warp_into

# EM grey levels (0 black, 1 white) of the classes of the fine canvas
_EM_LEVEL = {
    "neuropil": 0.62,
    "axoplasm": 0.78,
    "myelin": 0.12,
    "membrane": 0.30,
    "mito": 0.42,
    "nucleus": 0.5,
}
_CLASSES = {"neuropil": 0, "axoplasm": 1, "myelin": 2, "membrane": 3, "mito": 4, "nucleus": 5}


@dataclass(frozen=True)
class ConjugateField:
    """One simulated field.

    Attributes
    ----------
    classes : ndarray of uint8 (Y, X)
        Class map on the fine canvas (0 neuropil, 1 axoplasm, 2 myelin, 3 membrane, 4 mitochondria,
        5 nucleus).
    em_clean : ndarray of float32 (Y, X)
        Noise-free EM contrast on the fine canvas (texture included).
    fluorescence : ndarray of float32 (Y', X')
        The MBP immunofluorescence at ``if_pixel_um`` (photons, noisy).
    mbp : ndarray of float32 (Y', X')
        Myelin area fraction per IF pixel (the noise-free stain density).
    fine_pixel_um, if_pixel_um : float
        Pixel sizes of the canvas and of the IF image.
    seed : int
        The seed it was drawn from.
    """

    classes: np.ndarray
    em_clean: np.ndarray
    fluorescence: np.ndarray
    mbp: np.ndarray
    fine_pixel_um: float
    if_pixel_um: float
    seed: int


def _axons(rng: np.random.Generator, size_um: float, density: np.ndarray) -> list[tuple[float, ...]]:
    """Non-overlapping axons: (cy, cx, r, thickness, axis ratio, angle, has_mito) in um."""
    out: list[tuple[float, ...]] = []
    centers = np.zeros((0, 2))
    radii = np.zeros(0)
    n_try = int(size_um * size_um * 0.9)
    for _ in range(n_try):
        cy, cx = rng.uniform(0, size_um, 2)
        r = float(np.clip(rng.lognormal(np.log(0.55), 0.35), 0.25, 1.6))
        gy = min(int(cy / size_um * density.shape[0]), density.shape[0] - 1)
        gx = min(int(cx / size_um * density.shape[1]), density.shape[1] - 1)
        myelinated = rng.random() < density[gy, gx] and r > 0.3
        t = r * (1 / rng.uniform(0.62, 0.78) - 1) if myelinated else 0.0
        outer = r + t + 0.05
        if len(centers):
            d = np.hypot(centers[:, 0] - cy, centers[:, 1] - cx)
            if np.any(d < radii + outer):
                continue
        centers = np.vstack([centers, [cy, cx]])
        radii = np.append(radii, outer)
        out.append((cy, cx, r, t, rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), float(rng.random() < 0.4)))
    return out


def _paint(classes: np.ndarray, px: float, rng: np.random.Generator, axons: list[tuple[float, ...]]) -> None:
    """Draw axons (axoplasm, membrane, myelin, mitochondria) into the class map."""
    h, w = classes.shape
    for cy, cx, r, t, ratio, ang, mito in axons:
        ext = r + t + 0.1
        y0, y1 = max(0, int((cy - ext) / px)), min(h, int((cy + ext) / px) + 2)
        x0, x1 = max(0, int((cx - ext) / px)), min(w, int((cx + ext) / px) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = (yy + 0.5) * px - cy, (xx + 0.5) * px - cx
        c, s = np.cos(ang), np.sin(ang)
        u, v = c * dx + s * dy, (-s * dx + c * dy) / ratio
        d = np.hypot(u, v)  # elliptical radius (um along the long axis)
        view = classes[y0:y1, x0:x1]
        view[d < r + t] = _CLASSES["myelin"] if t > 0 else _CLASSES["axoplasm"]
        view[d < r] = _CLASSES["axoplasm"]
        view[np.abs(d - r) < 0.6 * px + 0.012] = _CLASSES["membrane"]
        if t > 0:
            view[np.abs(d - (r + t)) < 0.6 * px + 0.012] = _CLASSES["membrane"]
        if mito and r > 0.4:
            a = rng.uniform(0, 2 * np.pi)
            my, mx = 0.45 * r * np.sin(a), 0.45 * r * np.cos(a)
            md = np.hypot((u - mx) / 0.25, (v - my) / 0.12)
            view[(md < 1.0) & (d < r - 0.05)] = _CLASSES["mito"]


def _nuclei(classes: np.ndarray, px: float, rng: np.random.Generator, size_um: float, n: int) -> None:
    """A few glial nuclei (ellipses of 2-3.5 um) drawn over the axons."""
    h, w = classes.shape
    yy, xx = np.ogrid[0:h, 0:w]
    for _ in range(n):
        cy, cx = rng.uniform(0, size_um, 2)
        a, b, ang = rng.uniform(2.0, 3.5), rng.uniform(1.5, 2.5), rng.uniform(0, np.pi)
        dy, dx = (yy + 0.5) * px - cy, (xx + 0.5) * px - cx
        c, s = np.cos(ang), np.sin(ang)
        d = np.hypot((c * dx + s * dy) / a, (-s * dx + c * dy) / b)
        classes[d < 1.0] = _CLASSES["nucleus"]
        classes[np.abs(d - 1.0) < px / min(a, b)] = _CLASSES["membrane"]


def simulate_conjugate(
    seed: int = 0,
    *,
    size_um: float = 102.4,
    fine_pixel_um: float = 0.025,
    if_pixel_um: float = 0.1,
    n_nuclei: int = 3,
    photons: float = 60.0,
) -> ConjugateField:
    """Simulate one field of myelinated axons: the fine EM canvas and the coarse MBP immunofluorescence.

    Parameters
    ----------
    seed : int
        Seed of every random draw.
    size_um : float
        Side of the square field (um); a multiple of ``if_pixel_um``.
    fine_pixel_um : float
        Pixel of the canvas EM tiles are sampled from; ``if_pixel_um`` must be an integer multiple of it.
    if_pixel_um : float
        Pixel size of the immunofluorescence image.
    n_nuclei : int
        Glial nuclei (no MBP) in the field.
    photons : float
        Peak photons of fully myelinated IF pixels.

    Returns
    -------
    ConjugateField
    """
    rng = np.random.default_rng(seed)
    k = round(if_pixel_um / fine_pixel_um)
    if k < 1 or abs(k * fine_pixel_um - if_pixel_um) > 1e-9:
        raise ValueError("if_pixel_um must be an integer multiple of fine_pixel_um")
    n_if = round(size_um / if_pixel_um)
    n = n_if * k
    # smooth myelination density: some regions almost free of myelin (the content filter's business)
    dens = ndimage.gaussian_filter(rng.normal(size=(48, 48)), 4, mode="wrap")
    dens = np.clip(0.5 + 1.6 * (dens - dens.mean()) / (dens.std() or 1.0) * 0.5, 0.0, 1.0)
    classes = np.zeros((n, n), np.uint8)
    _paint(classes, fine_pixel_um, rng, _axons(rng, size_um, dens))
    _nuclei(classes, fine_pixel_um, rng, size_um, n_nuclei)
    # EM contrast with texture: granular neuropil, speckled axoplasm, lamellar-dark myelin, heterochromatin
    levels = np.array([_EM_LEVEL[c] for c in _CLASSES], np.float32)
    em = levels[classes]
    grain = ndimage.gaussian_filter(rng.normal(size=(n, n)).astype(np.float32), 1.2)
    em += 0.35 * grain * np.isin(classes, (0, 1, 5))
    blobs = ndimage.gaussian_filter(rng.normal(size=(n // 8, n // 8)).astype(np.float32), 2)
    blobs = ndimage.zoom(blobs, 8, order=1)
    em -= 0.25 * np.clip(blobs * 4, 0, None) * (classes == _CLASSES["nucleus"])
    em = ndimage.gaussian_filter(em, 0.7).astype(np.float32)
    # immunofluorescence of MBP: myelin fraction per IF pixel, PSF, haze, photons
    myelin = (classes == _CLASSES["myelin"]).astype(np.float32)
    mbp = myelin.reshape(n_if, k, n_if, k).mean(axis=(1, 3))
    sigma_px = 0.21 * 0.52 / 1.3 / if_pixel_um  # 520 nm emission, NA 1.3
    haze = ndimage.gaussian_filter(rng.normal(size=(n_if, n_if)), 40)
    haze = 0.1 + 0.05 * haze / (haze.std() or 1.0)
    expected = photons * (ndimage.gaussian_filter(mbp, sigma_px) + np.clip(haze, 0.02, None)) + 2.0
    fluo = rng.poisson(expected).astype(np.float32) + rng.normal(0, 1.5, expected.shape).astype(np.float32)
    return ConjugateField(
        classes=classes,
        em_clean=em,
        fluorescence=fluo,
        mbp=mbp.astype(np.float32),
        fine_pixel_um=fine_pixel_um,
        if_pixel_um=if_pixel_um,
        seed=seed,
    )


def _em_noise(image: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """EM acquisition: uneven staining (smooth gain), contrast and brightness of the session, noise."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gain = 1.0 + 0.1 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    out = image * gain * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)
    out += rng.normal(0, noise, image.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def em_tile(
    field: ConjugateField,
    center_um: tuple[float, float],
    *,
    shape: tuple[int, int] = (300, 300),
    em_pixel_um: float = 0.05,
    rotation_deg: float = 0.0,
    scale_change: float = 0.0,
    noise: float = 0.06,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, SimilarityTransform]:
    """An EM tile of the field, placed by a known similarity transform.

    Parameters
    ----------
    field : ConjugateField
    center_um : (y, x)
        Tile centre in the field (um).
    shape : (rows, cols)
        Tile size in EM pixels.
    em_pixel_um : float
        The tile's nominal pixel size; its true pixel size is ``em_pixel_um * (1 + scale_change)``.
    rotation_deg : float
        Rotation of the tile in the field.
    scale_change : float
        Relative error of the nominal pixel size (the small scale change of the issue).
    noise : float
        Standard deviation of the EM noise (grey levels 0-1).
    rng : Generator, optional
        Draws the noise and staining (default: seeded from the field's seed and the placement).

    Returns
    -------
    tile : ndarray of float32 (rows, cols)
    tile_to_if : SimilarityTransform
        Maps tile pixels (x, y) to pixels of ``field.fluorescence`` (the registration truth).
    """
    if rng is None:
        rng = np.random.default_rng([field.seed, int(center_um[0] * 1000), int(center_um[1] * 1000)])
    s = em_pixel_um * (1.0 + scale_change)
    # tile pixel -> field um (centre of pixel (i, j) of a grid of pitch q sits at (j + 0.5) q)
    tile_to_um = about_center(shape, s, rotation_deg, (center_um[1], center_um[0]))

    def um_to_pixels(q: float) -> SimilarityTransform:
        return similarity(1.0 / q, 0.0, (-0.5, -0.5))

    tile_to_fine = compose(um_to_pixels(field.fine_pixel_um), tile_to_um)
    tile_to_if = compose(um_to_pixels(field.if_pixel_um), tile_to_um)
    clean = warp_into(field.em_clean, tile_to_fine, shape, order=1, cval=float(_EM_LEVEL["neuropil"]))
    return _em_noise(clean, rng, noise), tile_to_if


def random_placement(
    rng: np.random.Generator,
    field: ConjugateField,
    *,
    shape: tuple[int, int] = (300, 300),
    em_pixel_um: float = 0.05,
    max_rotation_deg: float = 10.0,
    max_scale_change: float = 0.05,
    region_um: tuple[float, float, float, float] | None = None,
) -> dict[str, float]:
    """A random tile placement inside the field (or inside ``region_um`` = (y0, x0, y1, x1)), whole tile in.

    Returns a dict of ``center_um`` (y, x), ``rotation_deg`` and ``scale_change`` for :func:`em_tile`.
    """
    size = field.fluorescence.shape[0] * field.if_pixel_um
    y0, x0, y1, x1 = region_um if region_um is not None else (0.0, 0.0, size, size)
    half = 0.5 * np.hypot(*shape) * em_pixel_um * (1 + max_scale_change) + 0.5
    if y1 - y0 < 2 * half or x1 - x0 < 2 * half:
        raise ValueError("the region is too small for the tile")
    return {
        "cy": float(rng.uniform(y0 + half, y1 - half)),
        "cx": float(rng.uniform(x0 + half, x1 - half)),
        "rotation_deg": float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
        "scale_change": float(rng.uniform(-max_scale_change, max_scale_change)),
    }


def training_pair(
    field: ConjugateField,
    *,
    em_pixel_um: float = 0.05,
    noise: float = 0.06,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The field's EM (acquired at ``em_pixel_um``) and IF, registered, on the IF pixel grid.

    The EM is sampled from the canvas at ``em_pixel_um`` with EM noise and then resampled to the IF pixel size
    with :func:`stainfree.register.transform.rescale`, as a tile is before prediction.

    Returns
    -------
    em, fluorescence : ndarray of float32 (Y', X')
    """
    if rng is None:
        rng = np.random.default_rng([field.seed, 7])
    n = field.fluorescence.shape[0]
    m = round(n * field.if_pixel_um / em_pixel_um)
    size = n * field.if_pixel_um
    em, _ = em_tile(field, (size / 2, size / 2), shape=(m, m), em_pixel_um=em_pixel_um, noise=noise, rng=rng)
    em_if, _ = rescale(em, em_pixel_um / field.if_pixel_um)
    return em_if, field.fluorescence.copy()
