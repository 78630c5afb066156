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


#: Version 2 of the constants (``SimulationConfig.nilered_model: v2``): the contrast of v1 made closer to
#: Nile Red images of live cells, where mitochondria are visible tubules and vesicles bright puncta above
#: the ER meshwork. Only brightness changes (ratios as v1): mitochondria 0.14 -> 0.30 (v1 had them darker
#: than the ER, contrast-to-noise 0.07), ER and nuclear envelope / reticulum 0.8x, vesicles (peroxisome,
#: endosomes, lysosome) and Golgi 1.5x. See benchmarks/separability.py for the separability before / after.
NILE_RED_V2: dict[str, tuple[float, float, float, float]] = {
    **NILE_RED,
    "er": (0.26, 0.1, 1.25, 0.05),
    "nuclear_membrane": (0.24, 0.1, 1.25, 0.05),
    "nuclear_reticulum": (0.22, 0.1, 1.25, 0.05),
    "golgi": (0.57, 0.12, 1.05, 0.06),
    "mitochondria": (0.30, 0.12, 1.5, 0.06),
    "peroxisome": (0.63, 0.15, 0.8, 0.06),
    "early_endosome": (0.68, 0.15, 0.95, 0.06),
    "late_endosome": (0.72, 0.15, 1.12, 0.06),
    "lysosome": (0.68, 0.15, 1.32, 0.06),
}


def nilered_table(model: str = "v1") -> dict[str, tuple[float, float, float, float]]:
    """The per-class constants (brightness, its log-sd, ratio median, its log-sd) of a version."""
    tables = {"v1": NILE_RED, "v2": NILE_RED_V2}
    if model not in tables:
        raise ValueError(f"unknown Nile Red model {model!r}; use {sorted(tables)}")
    return tables[model]


def draw_spectra(
    rng: np.random.Generator, n_instances: dict[str, int], ratio_scale: float, model: str = "v1"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-instance brightness and R/Y ratio lookup tables (index = instance id, entry 0 unused).

    Parameters
    ----------
    rng : Generator.
    n_instances : compartment -> largest instance id.
    ratio_scale : microscope factor on every ratio.
    model : version of the constants (:func:`nilered_table`).

    Returns
    -------
    dict compartment -> (brightness, ratio), float arrays of length n + 1.
    """
    out = {}
    table = nilered_table(model)
    for cls in COMPARTMENTS:
        n = int(n_instances.get(cls, 0))
        b0, bsd, r0, rsd = table[cls]
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
