"""Optics of the digital microscope: microscope profiles, Gaussian PSFs, bright-field, camera noise, C_max.

Fluorescence PSFs are Gaussian approximations (after Zhang, Zerubia & Olivo-Marin 2007): sigma_xy =
0.21 lambda / NA and sigma_z = 0.66 lambda n / NA^2 for a widefield microscope, both divided by sqrt(2) for a
(spinning-disk) confocal; a super-resolution profile (``sdsim``) divides the lateral one by its
``lateral_gain`` instead.
A widefield PSF also carries a broad out-of-focus halo (a fraction of the light blurred 4x more).

Bright-field is a weak-object, partially coherent defocus model: every z-slice of the sample adds phase
``phi = 2 pi / lambda (n - n_medium) dz`` (and a weak absorption); a focal plane at defocus ``D`` from a slice
sees it through the phase transfer function ``2 sin(pi lambda D q^2)`` (the Fourier form of the
transport-of-intensity Laplacian), damped by the condenser aperture ``exp(-(pi NA_c D q)^2)`` and cut at the
objective pupil ``q < NA / lambda``. The sum over slices is a convolution along z, computed with FFTs in all
three axes. The transmitted-light focus sits ``brightfield_focus_offset_um`` from the fluorescence focus, so
structures in the nominal focal plane keep some contrast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from stainfree.types import Floats

#: Microscope profiles: objective, immersion, camera, pixel size, Nile Red ratio scale and chromatic shift.
MICROSCOPES: dict[str, dict] = {
    "spinning_disk": {
        "description": "spinning-disk confocal, 60x/1.2 water objective, sCMOS camera",
        "na": 1.2,
        "immersion_index": 1.333,
        "confocal": True,
        "haze_fraction": 0.0,
        "voxel_size_um": (0.29, 0.108, 0.108),
        "read_noise": 1.6,
        "condenser_na": 0.55,
        "brightfield_wavelength_um": 0.55,
        "brightfield_focus_offset_um": -0.5,
        "nilered_ratio_scale": 1.0,
        "chromatic_shift_um": (0.1, 0.05, -0.04),
    },
    "sdsim": {
        "description": "super-resolution spinning-disk confocal (SD-SIM), 60x/1.2 water objective, sCMOS: "
        "lateral FWHM about 0.127 um, half the widefield limit",
        "na": 1.2,
        "immersion_index": 1.333,
        "confocal": True,
        "lateral_gain": 2.0,
        "haze_fraction": 0.0,
        "voxel_size_um": (0.2, 0.054, 0.054),
        "read_noise": 1.6,
        "condenser_na": 0.55,
        "brightfield_wavelength_um": 0.55,
        "brightfield_focus_offset_um": -0.5,
        "nilered_ratio_scale": 1.0,
        "chromatic_shift_um": (0.1, 0.05, -0.04),
    },
    "widefield": {
        "description": "widefield epifluorescence, 40x/0.95 air objective, CCD camera",
        "na": 0.95,
        "immersion_index": 1.0,
        "confocal": False,
        "haze_fraction": 0.25,
        "voxel_size_um": (0.3, 0.13, 0.13),
        "read_noise": 4.0,
        "condenser_na": 0.35,
        "brightfield_wavelength_um": 0.58,
        "brightfield_focus_offset_um": -0.8,
        "nilered_ratio_scale": 1.3,
        "chromatic_shift_um": (0.15, 0.09, 0.07),
    },
}

#: Emission wavelengths (um) of the fluorescence targets (others: 0.52, a GFP-like label).
EMISSION_UM: dict[str, float] = {
    "dna": 0.46,
    "membrane": 0.67,
    "mitochondria": 0.58,
    "er": 0.52,
    "yellow": 0.58,
    "red": 0.65,
    "gfp": 0.51,
}


def psf_sigma_um(
    wavelength_um: float,
    na: float,
    immersion_index: float,
    confocal: bool,
    lateral_gain: float | None = None,
) -> np.ndarray:
    """Gaussian PSF standard deviations (z, y, x) in um.

    ``lateral_gain`` (super-resolution profiles such as ``sdsim``): the lateral sigma is the widefield one
    divided by it (2: half the diffraction limit) instead of by sqrt(2); the axial one stays confocal.
    """
    sxy = 0.21 * wavelength_um / na
    sz = 0.66 * wavelength_um * immersion_index / na**2
    f = np.sqrt(2.0) if confocal else 1.0
    fxy = float(lateral_gain) if lateral_gain else f
    return np.array([sz / f, sxy / fxy, sxy / fxy])


def blur(
    density: np.ndarray,
    sigma_um: Floats,
    voxel_um: Floats,
    haze_fraction: float = 0.0,
) -> np.ndarray:
    """Convolve a density with the Gaussian PSF (plus an optional 4x broader halo); float32, same shape."""
    sig = np.asarray(sigma_um, float) / np.asarray(voxel_um, float)
    d = density.astype(np.float32, copy=False)
    out = ndimage.gaussian_filter(d, sig, mode="constant", truncate=3.0)
    if haze_fraction > 0:
        halo = ndimage.gaussian_filter(d, 4.0 * sig, mode="constant", truncate=2.5)
        out = (1.0 - haze_fraction) * out + haze_fraction * halo
    return out


def camera(
    photons: np.ndarray, rng: np.random.Generator, read_noise: float, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shot noise, Gaussian read noise, offset and 16-bit digitisation (gain 1 count per electron).

    Returns
    -------
    noisy : uint16 counts
    clean : float32 expected counts (photons + offset)
    """
    lam = np.clip(photons, 0, None)
    noisy = rng.poisson(lam).astype(np.float32)
    if read_noise > 0:
        noisy += np.float32(read_noise) * rng.standard_normal(lam.shape, dtype=np.float32)
    noisy += np.float32(offset)
    np.rint(noisy, out=noisy)
    np.clip(noisy, 0, 65535, out=noisy)
    clean = lam.astype(np.float32) + np.float32(offset)
    return noisy.astype(np.uint16), clean


def c_max(noisy: np.ndarray, clean: np.ndarray) -> float:
    """sqrt(SNR / (1 + SNR)), SNR = var(clean) / var(noisy - clean): the best r a predictor can reach."""
    noise = noisy.astype(np.float32) - clean
    vn = float(np.var(noise, dtype=np.float64))
    vs = float(np.var(clean, dtype=np.float64))
    if vn <= 0:
        return 1.0
    snr = vs / vn
    return float(np.sqrt(snr / (1.0 + snr)))


def moments(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Sums (n, sum clean, sum clean^2, sum noise, sum noise^2) for C_max over several frames."""
    noise = noisy.astype(np.float32) - clean
    c = clean.astype(np.float64)
    nz = noise.astype(np.float64)
    return np.array([c.size, c.sum(), (c * c).sum(), nz.sum(), (nz * nz).sum()])


def c_max_from_moments(m: np.ndarray) -> float:
    """C_max from summed :func:`moments` (same value as :func:`c_max` on the concatenated frames)."""
    n, sc, scc, sn, snn = (float(v) for v in m)
    vs = scc / n - (sc / n) ** 2
    vn = snn / n - (sn / n) ** 2
    if vn <= 0:
        return 1.0
    snr = vs / vn
    return float(np.sqrt(snr / (1.0 + snr)))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (flattened)."""
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def shift_subpixel(image: np.ndarray, shift_vox: Sequence[float]) -> np.ndarray:
    """Translate a volume by a sub-voxel shift (z, y, x), linear interpolation (content moves by +shift)."""
    return ndimage.shift(image, shift_vox, order=1, mode="nearest").astype(np.float32)


def brightfield(
    ri: np.ndarray,
    voxel_um: Floats,
    wavelength_um: float,
    na: float,
    condenser_na: float,
    n_medium: float,
    absorption: np.ndarray | None = None,
    focus_offset_um: float = 0.0,
) -> np.ndarray:
    """Noise-free bright-field intensity z-stack (1 = empty illumination) of a refractive-index volume.

    Parameters
    ----------
    ri : (Z, Y, X) refractive index.
    voxel_um : (z, y, x) voxel size; the focal planes are the z planes.
    wavelength_um, na, condenser_na : illumination wavelength, objective and condenser numerical apertures.
    n_medium : refractive index of the medium (no contrast).
    absorption : optional (Z, Y, X) absorbance per voxel (fraction of light lost), adds amplitude contrast.
    focus_offset_um : focal plane of image ``i`` lies at ``i * dz + offset`` (the transmitted-light focus
        differs from the fluorescence focus), so in-focus structures are not exactly invisible.

    Returns
    -------
    ndarray float32 (Z, Y, X)
    """
    nz, ny, nx = ri.shape
    dz, dy, dx = (float(v) for v in voxel_um)
    phase = (2.0 * np.pi / wavelength_um) * (ri.astype(np.float32) - n_medium) * dz
    length = int(sfft.next_fast_len(2 * nz))
    vol = np.zeros((length, ny, nx), np.float32)
    vol[:nz] = phase
    fp = sfft.rfftn(vol, workers=-1)
    fa = None
    if absorption is not None:
        vol[:nz] = absorption
        fa = sfft.rfftn(vol, workers=-1)
    qy = sfft.fftfreq(ny, d=dy)[:, None]
    qx = sfft.rfftfreq(nx, d=dx)[None, :]
    q2 = (qy**2 + qx**2).astype(np.float64)
    pupil = (q2 <= (na / wavelength_um) ** 2).astype(np.float64)
    # kernel along m = focus - slice; defocus of the slice relative to focus D = -m dz
    m = np.arange(length)
    m = np.where(m < length // 2 + 1, m, m - length)
    kp = np.zeros((length, ny, qx.shape[1]), np.float32)
    ka = np.zeros_like(kp) if fa is not None else None
    for i, mi in enumerate(m):
        if abs(mi) >= nz:
            continue
        defocus = -mi * dz - focus_offset_um
        env = np.exp(-((np.pi * condenser_na * defocus) ** 2) * q2) * pupil
        kp[i] = 2.0 * np.sin(np.pi * wavelength_um * defocus * q2) * env
        if ka is not None:
            ka[i] = -2.0 * np.cos(np.pi * wavelength_um * defocus * q2) * env * np.exp(-(mi**2) / 2.0)
    kfp = sfft.fft(kp, axis=0, workers=-1)
    acc = fp * kfp
    if fa is not None and ka is not None:
        acc += fa * sfft.fft(ka, axis=0, workers=-1)
    # fp is the 3D rfft (z full, y full, x half); kfp is z-FFT of a kernel already in (qy, qx) space
    # so multiply in z-frequency x (qy, qx): both share that layout.
    out = sfft.irfftn(acc, s=(length, ny, nx), workers=-1)[:nz]
    return np.clip(1.0 + out, 0.0, None).astype(np.float32)
