"""Augmentation of training patches with MONAI dictionary transforms.

Image (``signal``) and target are transformed together: the same rotation, zoom and flips, with
nearest-neighbour interpolation for masks. A random intensity gain applies to chosen signal channels only
(never to a ratio). Every random draw comes from :meth:`Augmenter.__call__`'s seed, so a patch's augmentation
is a pure function of its global sample index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, MapTransform, RandFlipd, RandomizableTransform, RandRotated, RandZoomd


class RandGaind(RandomizableTransform, MapTransform):
    """Multiply chosen channels of ``key`` by one random gain drawn from ``gain_range``."""

    def __init__(
        self, key: str, gain_range: Sequence[float], channels: Sequence[int] | None, prob: float
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, [key])
        self.key = key
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.channels = None if channels is None else list(channels)
        self._gain = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._gain = float(self.R.uniform(*self.gain_range))

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        x = d[self.key].clone()
        chans = range(x.shape[0]) if self.channels is None else self.channels
        for c in chans:
            x[c] = x[c] * self._gain
        d[self.key] = x
        return d


def default_gain_channels(n_channels: int, input_transform: str) -> list[int] | None:
    """Channels that get an intensity gain: all, except the ratio channel of a ratiometric input."""
    if input_transform == "ratiometric":
        return [0]
    return None


class Augmenter:
    """Seeded augmentation of a ``{"signal", "target"}`` dictionary of tensors (channel first, no batch).

    Parameters
    ----------
    spatial_dims : int
        2 or 3 (3: rotation in the Y-X plane only; flips and zoom on every axis asked for).
    rotation_degrees, scale_range, flip_axes, gain_range, gain_channels, prob
        See :class:`stainfree.config.AugmentConfig`.
    target_is_mask : bool
        Interpolate the target with nearest neighbour (segmentation).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        rotation_degrees: float = 15.0,
        scale_range: Sequence[float] = (0.9, 1.1),
        flip_axes: Sequence[int] = (-2, -1),
        gain_range: Sequence[float] = (0.75, 1.5),
        gain_channels: Sequence[int] | None = None,
        prob: float = 0.5,
        target_is_mask: bool = False,
    ) -> None:
        keys = ["signal", "target"]
        smooth = "bilinear"
        zoom_mode = "trilinear" if spatial_dims == 3 else "bilinear"
        transforms: list = []
        if rotation_degrees > 0:
            transforms.append(
                RandRotated(
                    keys=keys,
                    range_x=math.radians(rotation_degrees),
                    prob=prob,
                    keep_size=True,
                    mode=[smooth, "nearest" if target_is_mask else smooth],
                    padding_mode="reflection",
                )
            )
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not (lo == 1.0 and hi == 1.0):
            transforms.append(
                RandZoomd(
                    keys=keys,
                    prob=prob,
                    min_zoom=lo,
                    max_zoom=hi,
                    mode=[zoom_mode, "nearest" if target_is_mask else zoom_mode],
                    padding_mode="reflect",
                    keep_size=True,
                )
            )
        for ax in flip_axes:
            axis = ax % spatial_dims
            transforms.append(RandFlipd(keys=keys, prob=0.5, spatial_axis=axis))
        g0, g1 = float(gain_range[0]), float(gain_range[1])
        if not (g0 == 1.0 and g1 == 1.0):
            transforms.append(RandGaind("signal", (g0, g1), gain_channels, prob))
        self.compose = Compose(transforms)
        self.target_is_mask = target_is_mask

    def __call__(self, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """Augment one sample with every random draw seeded by ``seed``."""
        self.compose.set_random_state(seed=int(seed) % (2**32))
        dtype = sample["target"].dtype
        out = self.compose({"signal": sample["signal"], "target": sample["target"].float()})
        signal = (
            torch.as_tensor(np.asarray(out["signal"]))
            if not torch.is_tensor(out["signal"])
            else out["signal"]
        )
        target = (
            torch.as_tensor(np.asarray(out["target"]))
            if not torch.is_tensor(out["target"])
            else out["target"]
        )
        signal = signal.as_tensor() if hasattr(signal, "as_tensor") else signal
        target = target.as_tensor() if hasattr(target, "as_tensor") else target
        if self.target_is_mask:
            target = target.round()
        return {"signal": signal.float().contiguous(), "target": target.to(dtype).contiguous()}


def build_augmenter(
    config: Any, *, spatial_dims: int, task: str, input_transform: str = "none"
) -> Augmenter | None:
    """An :class:`Augmenter` from an :class:`~stainfree.config.AugmentConfig`, or None when disabled."""
    if config is None or not config.enabled:
        return None
    gain_channels = config.gain_channels
    if gain_channels is None:
        gain_channels = default_gain_channels(0, input_transform)
    elif input_transform == "ratiometric":
        gain_channels = [c for c in gain_channels if c != 1]
    return Augmenter(
        spatial_dims=spatial_dims,
        rotation_degrees=config.rotation_degrees,
        scale_range=config.scale_range,
        flip_axes=config.flip_axes,
        gain_range=config.gain_range,
        gain_channels=gain_channels,
        prob=config.prob,
        target_is_mask=task != "regression",
    )
