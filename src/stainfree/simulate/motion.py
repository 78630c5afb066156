"""Time-lapse motion of organelles: Brownian diffusion plus directed (motor-driven) runs, inside the cell.

Every movable object gets a diffusion coefficient (vesicles and peroxisomes: ``D``; lipid droplets: ``D / 2``;
mitochondria and Golgi stacks: ``D / 5``) and a fraction of endosomes and lysosomes a constant velocity in
the coverslip plane. A step that would carry an object's centre out of its cell's cytoplasm (or onto the
plasma membrane) is rejected: the object stays and a directed object turns around, so objects never leave
their cell. Cells, nuclei, membranes and the ER do not move.
"""

from __future__ import annotations

import numpy as np

from stainfree.simulate.geometry import Scene

DIFFUSION_FACTOR: dict[str, float] = {"mitochondria": 0.2, "golgi": 0.2, "lipid_droplet": 0.5}
DIRECTED_CLASSES = ("early_endosome", "late_endosome", "lysosome")


def assign_motion(
    scene: Scene, rng: np.random.Generator, diffusion: float, speed: float, directed_fraction: float
) -> None:
    """Set ``diffusion`` and ``velocity`` (um/s) of every movable object in place."""
    for ob in scene.objects:
        ob.diffusion = diffusion * DIFFUSION_FACTOR.get(ob.cls, 1.0)
        if ob.cls in DIRECTED_CLASSES and rng.random() < directed_fraction:
            phi = rng.uniform(0, 2 * np.pi)
            ob.velocity = speed * np.array([0.0, np.sin(phi), np.cos(phi)])
        else:
            ob.velocity = np.zeros(3)


def trajectories(scene: Scene, rng: np.random.Generator, n_frames: int, dt: float) -> np.ndarray:
    """Cumulative displacement (n_frames, n_objects, 3) um of every object; frame 0 is the drawn position."""
    n = len(scene.objects)
    out = np.zeros((n_frames, n, 3))
    if n == 0 or n_frames == 1:
        return out
    vox = np.asarray(scene.voxel_um)
    shape = np.asarray(scene.shape)
    centers = np.array([ob.center for ob in scene.objects])
    diff = np.array([ob.diffusion for ob in scene.objects])
    vel = np.array([ob.velocity for ob in scene.objects])
    cells = np.array([ob.cell for ob in scene.objects])
    pos = np.zeros((n, 3))
    for t in range(1, n_frames):
        step = rng.normal(0.0, 1.0, (n, 3)) * np.sqrt(2.0 * diff * dt)[:, None] * np.array([0.5, 1.0, 1.0])
        step += vel * dt
        cand = centers + pos + step
        idx = np.rint(cand / vox).astype(int)
        inside = np.all((idx >= 0) & (idx < shape), axis=1)
        ok = np.zeros(n, bool)
        where = tuple(idx[inside].T)
        # the centre must stay in the own cell's cytoplasm, off the plasma membrane
        ok[inside] = (scene.cyto_cell[where] == cells[inside]) & (scene.top_labels[where] == 0)
        pos[ok] += step[ok]
        vel[~ok] *= -1.0
        out[t] = pos
    return out
