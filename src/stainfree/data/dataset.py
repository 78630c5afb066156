"""Datasets of training patches over images preprocessed once and kept in memory.

:func:`prepare_images` reads and preprocesses every manifest row once (load once, sample many);
:class:`PatchDataset` is a map-style dataset whose item ``i`` is global sample ``start + i``, cut at the
position given by :func:`stainfree.data.patching.sample_patch` (and augmented with a seed derived from the
same index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from stainfree.data.patching import foreground_index, patch_slices, sample_patch, sample_rng
from stainfree.data.preprocess import pad_to_min_shape, prepare_input_with_stats, prepare_target


@dataclass
class PreparedImages:
    """Preprocessed signal/target pairs in memory.

    Attributes
    ----------
    signals, targets : list of ndarray
        (C, Z, Y, X) arrays on the model grid (``zstack_to_2d``: (C*Z, 1, Y, X) and (C, 1, Y, X)).
    signal_stats, target_stats : list of list of dict
        Per image, per channel normalization statistics.
    sources : list of str
        Where each pair came from.
    signal_names, target_names : list of str
        Channel names of the first pair (network inputs are named after the transform for ratiometric data).
    n_z : int or None
        Planes of the input stack (``zstack_to_2d``).
    """

    signals: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    signal_stats: list[list[dict]] = field(default_factory=list)
    target_stats: list[list[dict]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    signal_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    n_z: int | None = None

    def subset(self, idx: Sequence[int]) -> PreparedImages:
        """The pairs at ``idx``."""
        return PreparedImages(
            [self.signals[i] for i in idx],
            [self.targets[i] for i in idx],
            [self.signal_stats[i] for i in idx],
            [self.target_stats[i] for i in idx],
            [self.sources[i] for i in idx],
            self.signal_names,
            self.target_names,
            self.n_z,
        )

    def __len__(self) -> int:
        return len(self.signals)


def prepare_pair(
    signal: np.ndarray,
    target: np.ndarray,
    data_config: Any,
    *,
    task: str,
    signal_meta: Any = None,
    target_meta: Any = None,
    signal_channels: Sequence[str | int] | None = None,
    target_channels: Sequence[str | int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict]]:
    """Preprocess one (C, Z, Y, X) pair with prepare_input / prepare_target (with row channel overrides)."""
    cfg = data_config
    if signal_channels is not None or target_channels is not None:
        update = {}
        if signal_channels is not None:
            update["signal_channels"] = list(signal_channels)
        if target_channels is not None:
            update["target_channels"] = list(target_channels)
        cfg = data_config.model_copy(update=update)
    x, xs = prepare_input_with_stats(signal, cfg, signal_meta)
    y, ys = prepare_target(target, cfg, target_meta, task=task)
    if x.shape[1:] != y.shape[1:]:
        from stainfree.errors import InputError

        raise InputError(
            getattr(signal_meta, "path", "") or "signal",
            f"after preprocessing, signal {x.shape[1:]} and target {y.shape[1:]} differ in shape",
        )
    return x, y, xs, ys


class PatchDataset(Dataset):
    """Patches of in-memory images; item ``i`` is the patch of global sample index ``start + i``.

    Parameters
    ----------
    signals, targets : list of ndarray
        (C, Z, Y, X) arrays (targets float32, or int64 labels).
    patch_shape : sequence of int
        (z, y, x) for 3D models, (y, x) for 2D models (patches are then cut from single planes).
    seed : int
        Seed of the patch positions and augmentation.
    length : int
        Number of items.
    start : int
        Global index of item 0 (``global_step * batch_size`` when resuming).
    augment : callable, optional
        ``augment(sample, seed) -> sample`` (:class:`stainfree.data.augment.Augmenter`); an augmenter with
        ``batched = True`` (:class:`~stainfree.data.augment.BatchAugmenter`) is not called here: each item
        then carries its ``seed`` for the batch-wise augmentation on the training device.
    stream : int
        Independent patch streams (training 0, validation 1) from the same seed.
    foreground_fraction : float
        Share of the patches centred on a foreground voxel of the target (classes drawn uniformly among
        those present); the per-class voxel lists are computed once here. 0 = uniform patches only.
    multiclass : bool, optional
        Whether one-channel integer targets are label maps (see
        :func:`stainfree.data.patching.foreground_index`); None decides from the dtype.
    foreground_labels : sequence of int, optional
        Label maps: the labels patches are centred on (None: every label > 0).
    locations : sequence of (image, corner), optional
        Fixed patches instead of random ones (item ``i`` is ``locations[i]``; ``length`` is ignored), e.g.
        a grid over held-out validation regions.
    """

    def __init__(
        self,
        signals: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        patch_shape: Sequence[int],
        *,
        seed: int,
        length: int,
        start: int = 0,
        augment: Any = None,
        stream: int = 0,
        foreground_fraction: float = 0.0,
        multiclass: bool | None = None,
        foreground_labels: Sequence[int] | None = None,
        locations: Sequence[tuple[int, tuple[int, ...]]] | None = None,
    ) -> None:
        self.spatial_dims = len(patch_shape)
        self.patch3 = (
            tuple(int(p) for p in patch_shape) if self.spatial_dims == 3 else (1, *map(int, patch_shape))
        )
        self.signals = [pad_to_min_shape(s, self.patch3) for s in signals]
        self.targets = [pad_to_min_shape(t, self.patch3, mode="edge") for t in targets]
        self.shapes = [s.shape[1:] for s in self.signals]
        self.seed = int(seed)
        self.locations = None if locations is None else [(int(i), tuple(c)) for i, c in locations]
        self.length = int(length) if self.locations is None else len(self.locations)
        self.start = int(start)
        self.augment = augment
        self.stream = int(stream)
        if not 0.0 <= float(foreground_fraction) <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.foreground_fraction = float(foreground_fraction)
        self.foreground = (
            [foreground_index(t, multiclass=multiclass, labels=foreground_labels) for t in self.targets]
            if self.foreground_fraction > 0
            else None
        )

    def __len__(self) -> int:
        return self.length

    def location(self, i: int) -> tuple[int, tuple[int, ...]]:
        """Image index and start corner (z, y, x) of item ``i``."""
        if self.locations is not None:
            return self.locations[i]
        return sample_patch(
            self.seed + 7919 * self.stream,
            self.start + int(i),
            self.shapes,
            self.patch3,
            foreground=self.foreground,
            foreground_fraction=self.foreground_fraction,
        )

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        image, corner = self.location(i)
        sl = (slice(None), *patch_slices(corner, self.patch3))
        x = torch.from_numpy(np.ascontiguousarray(self.signals[image][sl], dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(self.targets[image][sl]))
        if self.spatial_dims == 2:
            x, y = x[:, 0], y[:, 0]
        sample = {"signal": x, "target": y}
        if self.augment is not None:
            aug_seed = int(
                sample_rng(self.seed, self.start + int(i), stream=100 + self.stream).integers(2**31)
            )
            if getattr(self.augment, "batched", False):  # augmented per batch on the training device
                sample["seed"] = torch.tensor(aug_seed, dtype=torch.int64)
            else:
                sample = self.augment(sample, aug_seed)
        return sample
