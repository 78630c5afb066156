"""Nile Red: lipid-environment-dependent brightness and red/yellow emission ratio per object.

Nile Red is nearly dark in water and bright in lipids; its emission shifts to the blue (more "yellow") in
neutral lipid (lipid droplets) and to the red in polar membranes. Every object gets a brightness and a ratio
R/Y drawn from its class's log-normal distribution (:data:`NILE_RED`); the microscope's filter set scales all
ratios (``ratio_scale``). Lipid droplets are the brightest class with the lowest ratio; peroxisomes, early
and late endosomes and lysosomes share overlapping brightness but have distinct ratios.
"""

from __future__ import annotations

import numpy as np

from stainfree.types import COMPARTMENTS

#: class -> (relative brightness, brightness log-sd, ratio R/Y median, ratio log-sd).
NILE_RED: dict[str, tuple[float, float, float, float]] = {
    "extracellular": (0.0, 0.0, 1.6, 0.0),
    "cytosol": (0.025, 0.1, 1.6, 0.05),
    "nucleus": (0.006, 0.1, 1.6, 0.05),
    "er": (0.32, 0.1, 1.25, 0.05),
    "nuclear_membrane": (0.3, 0.1, 1.25, 0.05),
    "nuclear_reticulum": (0.28, 0.1, 1.25, 0.05),
    "golgi": (0.38, 0.12, 1.05, 0.06),
    "lipid_droplet": (1.0, 0.12, 0.45, 0.08),
    "mitochondria": (0.14, 0.12, 1.5, 0.06),
    "peroxisome": (0.42, 0.15, 0.8, 0.06),
    "early_endosome": (0.45, 0.15, 0.95, 0.06),
    "late_endosome": (0.48, 0.15, 1.12, 0.06),
    "lysosome": (0.45, 0.15, 1.32, 0.06),
    "plasma_membrane": (0.4, 0.1, 0.85, 0.05),
    "filopodia": (0.4, 0.1, 0.85, 0.05),
}


def draw_spectra(
    rng: np.random.Generator, n_instances: dict[str, int], ratio_scale: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-instance brightness and R/Y ratio lookup tables (index = instance id, entry 0 unused).

    Parameters
    ----------
    rng : Generator.
    n_instances : compartment -> largest instance id.
    ratio_scale : microscope factor on every ratio.

    Returns
    -------
    dict compartment -> (brightness, ratio), float arrays of length n + 1.
    """
    out = {}
    for cls in COMPARTMENTS:
        n = int(n_instances.get(cls, 0))
        b0, bsd, r0, rsd = NILE_RED[cls]
        bright = b0 * np.exp(rng.normal(0.0, bsd, n + 1))
        ratio = ratio_scale * r0 * np.exp(rng.normal(0.0, rsd, n + 1))
        bright[0], ratio[0] = 0.0, 0.0
        out[cls] = (bright, ratio)
    return out


def nilered_density(
    labels: np.ndarray, inst: np.ndarray, tables: dict[str, tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Yellow and red emission densities (relative photons) from the label and instance maps.

    A voxel of an object with brightness ``b`` and ratio ``R`` emits ``b / (1 + R)`` yellow and
    ``b R / (1 + R)`` red.
    """
    m = int(inst.max()) + 1
    lut_y = np.zeros((len(COMPARTMENTS) + 1, m), np.float32)
    lut_r = np.zeros_like(lut_y)
    for c, cls in enumerate(COMPARTMENTS, start=1):
        bright, ratio = tables[cls]
        n = min(len(bright), m)
        lut_y[c, :n] = bright[:n] / (1.0 + ratio[:n])
        lut_r[c, :n] = bright[:n] * ratio[:n] / (1.0 + ratio[:n])
    return lut_y[labels, inst], lut_r[labels, inst]
