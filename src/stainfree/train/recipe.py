"""The training recipe: fill the settings a job leaves empty, and size the run to its time budget.

``recipe: auto`` chooses patch shape, batch size, network depth and width from the image sizes, the time
budget and the device; ``recipe: fixed`` uses the long-standing defaults. Settings the job gives are kept.
Pure functions of shapes and numbers (no torch), so they are tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from stainfree.config import TrainingJob

FIXED: dict[str, Any] = {
    "patch_3d": (32, 64, 64),
    "patch_2d": (256, 256),
    "batch": 8,
    "depth": 4,
    "base": 32,
    "steps": 1000,
}
VALIDATIONS_PER_RUN = 20


def _fit_side(limit: int, wanted: int, multiple: int) -> int:
    """The largest multiple of ``multiple`` that is <= min(limit, wanted) (at least ``multiple``)."""
    return max(multiple, (min(limit, wanted) // multiple) * multiple)


def auto_settings(
    image_shapes: Sequence[Sequence[int]],
    *,
    spatial_dims: int,
    budget_s: float | None,
    gpu: bool,
) -> dict[str, Any]:
    """Patch, batch, depth and width for little data under a time budget.

    Small budgets on a CPU get narrow networks and small patches (many steps beat a large network that
    sees few batches); a GPU or a budget of an hour or more gets fnet's width (32) and larger patches. Patches
    stay within 60 % of the smallest image along Y and X, so that a validation region can be carved beside
    them.

    Parameters
    ----------
    image_shapes : sequence of (z, y, x)
        Spatial shapes of the training images (on the model grid).
    spatial_dims : int
        2 or 3.
    budget_s : float, optional
        Training time budget in seconds.
    gpu : bool
        Whether training runs on a GPU.

    Returns
    -------
    dict
        ``patch`` (list), ``batch``, ``depth``, ``base``.
    """
    big = gpu or (budget_s is not None and budget_s >= 3600)
    min_y = min(int(s[-2]) for s in image_shapes)
    min_x = min(int(s[-1]) for s in image_shapes)
    yx_room = max(16, int(0.6 * min(min_y, min_x)))
    if spatial_dims == 2:
        side = _fit_side(yx_room, 256 if big else 128, 16)
        depth = 4 if side >= 128 else 3
        return {"patch": [side, side], "batch": 16 if gpu else 8, "depth": depth, "base": 32 if big else 16}
    min_z = min(int(s[0]) for s in image_shapes)
    depth = 3
    z = _fit_side(min_z, 32, 2**depth) if min_z >= 2**depth else 0
    if z == 0:  # thin stacks: fewer levels, so that z is still divisible
        depth = max(1, int(math.log2(max(1, min_z))))
        z = _fit_side(min_z, 32, 2**depth)
    side = _fit_side(yx_room, 128 if big else 64, 2**depth)
    return {"patch": [z, side, side], "batch": 8 if gpu else 4, "depth": depth, "base": 32 if big else 16}


def fill_settings(
    job: TrainingJob, image_shapes: Sequence[Sequence[int]], *, gpu: bool, bf16: bool = False
) -> TrainingJob:
    """A copy of ``job`` whose empty patch shape, batch size, depth and width, and an 'auto' precision are
    filled by its recipe.

    Parameters
    ----------
    job : TrainingJob
        The job; settings it gives are kept.
    image_shapes : sequence of (z, y, x)
        Spatial shapes of the training images on the model grid.
    gpu : bool
        Whether training runs on a GPU.
    bf16 : bool
        Whether the device (GPU or CPU) computes in bfloat16 natively ('auto' precision becomes
        'bf16-mixed').
    """
    dims = 3 if job.data.input_mode == "3d" else 2
    if job.recipe == "auto":
        chosen = auto_settings(image_shapes, spatial_dims=dims, budget_s=job.train.max_seconds(), gpu=gpu)
    else:
        chosen = {
            "patch": list(FIXED["patch_3d"] if dims == 3 else FIXED["patch_2d"]),
            "batch": FIXED["batch"],
            "depth": FIXED["depth"],
            "base": FIXED["base"],
        }
    data = job.data
    if data.patch_shape is None:
        data = data.model_copy(update={"patch_shape": list(chosen["patch"])})
    model = job.model.model_copy(
        update={
            "depth": job.model.depth if job.model.depth is not None else chosen["depth"],
            "base_channels": job.model.base_channels
            if job.model.base_channels is not None
            else chosen["base"],
        }
    )
    train = job.train
    if train.batch_size is None:
        train = train.model_copy(update={"batch_size": int(chosen["batch"])})
    if train.precision == "auto":
        train = train.model_copy(update={"precision": "bf16-mixed" if bf16 else "32"})
    return job.model_copy(update={"data": data, "model": model, "train": train})


def steps_for_budget(
    budget_s: float, step_s: float, *, val_batches: int, elapsed_s: float = 0.0, margin: float = 0.9
) -> int:
    """How many optimizer steps fit a time budget.

    Parameters
    ----------
    budget_s : float
        The whole budget in seconds.
    step_s : float
        Measured seconds of one training step.
    val_batches : int
        Batches of one validation (each about a third of a training step: no backward pass);
        :data:`VALIDATIONS_PER_RUN` validations are planned.
    elapsed_s : float
        Time already spent (reading, preprocessing, the measurement itself).
    margin : float
        Share of the remaining time planned for (checkpoints and start-up take the rest).
    """
    remaining = max(0.0, budget_s - elapsed_s) * margin
    validation = VALIDATIONS_PER_RUN * val_batches * step_s / 3.0
    return max(1, int((remaining - validation) / max(step_s, 1e-9)))


def validation_interval(max_steps: int) -> int:
    """Validate :data:`VALIDATIONS_PER_RUN` times per run, at most every 500 steps."""
    return max(1, min(500, max_steps // VALIDATIONS_PER_RUN))


def ema_decay_for(decay: float, max_steps: int) -> float:
    """The weight-average decay of a run: at most ``decay``, and short enough that the average spans about
    the last tenth of the run (a 100-step run averages its last ~10 steps, not weights from its start)."""
    return float(min(decay, max(0.5, 1.0 - 10.0 / max(1, max_steps))))
