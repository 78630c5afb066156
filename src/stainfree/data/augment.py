"""Augmentation of training patches.

Image (``signal``) and target are transformed together: the same flips, 90-degree rotations (lossless), and
optionally free rotation and zoom (interpolated; nearest neighbour for masks). Intensity changes touch the
input only: a random gain and offset on chosen channels (never on a ratio) and Gaussian noise. Every random
draw comes from a per-sample seed, so a patch's augmentation is a pure function of its global sample index.

Two implementations share that contract: :class:`BatchAugmenter` applies the lossless recipe (flips, 90-degree
turns, gain / offset / noise, masking for pretraining) to whole batches on the device they train on, so a GPU
is not starved by per-sample work on the host; :class:`Augmenter` runs MONAI dictionary transforms per sample
when the recipe interpolates (free rotation, zoom). :func:`build_augmenter` picks the one a config needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    MapTransform,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandRotated,
    RandZoomd,
)


class RandGaind(RandomizableTransform, MapTransform):
    """Map chosen channels of ``key`` to ``gain * x + offset + noise``: one random gain from ``gain_range``
    and one offset from ``offset_range`` (normalized units) per sample, and Gaussian noise of a standard
    deviation drawn from [0, ``noise_std``]."""

    def __init__(
        self,
        key: str,
        gain_range: Sequence[float],
        channels: Sequence[int] | None,
        prob: float,
        offset_range: Sequence[float] = (0.0, 0.0),
        noise_std: float = 0.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, [key])
        self.key = key
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.offset_range = (float(offset_range[0]), float(offset_range[1]))
        self.channels = None if channels is None else list(channels)
        self.noise_std = float(noise_std)
        self._gain = 1.0
        self._offset = 0.0
        self._std = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._gain = float(self.R.uniform(*self.gain_range))
        # draw offset and noise only when they are on, so that a recipe without them consumes the random
        # stream exactly as before they existed (same augmentations, same benchmark figures)
        if self.offset_range != (0.0, 0.0):
            self._offset = float(self.R.uniform(*self.offset_range))
        if self.noise_std > 0:
            self._std = float(self.R.uniform(0.0, self.noise_std))

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        x = d[self.key].clone()
        chans = range(x.shape[0]) if self.channels is None else self.channels
        for c in chans:
            x[c] = x[c] * self._gain + self._offset
            if self._std > 0:
                x[c] += torch.from_numpy(
                    self.R.standard_normal(tuple(x[c].shape)).astype(np.float32) * self._std
                )
        d[self.key] = x
        return d


class RandMaskd(RandomizableTransform, MapTransform):
    """Hide a share of ``key`` under Gaussian noise in random blocks of 1/8 of the patch on a side (every
    channel at once): the pretext task of masked-image pretraining, where the target is the unmasked input."""

    def __init__(self, key: str, fraction: float) -> None:
        RandomizableTransform.__init__(self, 1.0)
        MapTransform.__init__(self, [key])
        self.key = key
        self.fraction = float(fraction)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        x = d[self.key].clone()
        spatial = tuple(int(s) for s in x.shape[1:])
        block = tuple(max(1, s // 8) for s in spatial)
        grid = tuple(-(-s // b) for s, b in zip(spatial, block, strict=True))
        hidden = self.R.random(grid) < self.fraction
        mask = np.ones(spatial, dtype=bool)
        for idx in zip(*np.nonzero(hidden), strict=True):
            mask[tuple(slice(i * b, (i + 1) * b) for i, b in zip(idx, block, strict=True))] = False
        keep = torch.from_numpy(mask)
        noise = torch.from_numpy(self.R.standard_normal(tuple(x.shape)).astype(np.float32))
        d[self.key] = torch.where(keep, x, noise)
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
        2 or 3 (3: rotations in the Y-X plane only; flips and zoom on every axis asked for).
    rotation_degrees, scale_range, flip_axes, rot90, gain_range, offset_range, gain_channels, noise_std,
    mask_fraction, prob
        See :class:`stainfree.config.AugmentConfig` (``rot90`` needs square Y-X patches).
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
        rot90: bool = False,
        gain_range: Sequence[float] = (0.75, 1.5),
        offset_range: Sequence[float] = (0.0, 0.0),
        gain_channels: Sequence[int] | None = None,
        noise_std: float = 0.0,
        mask_fraction: float = 0.0,
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
        if rot90:
            transforms.append(
                RandRotate90d(
                    keys=keys, prob=0.75, max_k=3, spatial_axes=(spatial_dims - 2, spatial_dims - 1)
                )
            )
        g0, g1 = float(gain_range[0]), float(gain_range[1])
        o0, o1 = float(offset_range[0]), float(offset_range[1])
        if not (g0 == 1.0 and g1 == 1.0 and o0 == 0.0 and o1 == 0.0 and noise_std <= 0):
            transforms.append(RandGaind("signal", (g0, g1), gain_channels, prob, (o0, o1), noise_std))
        if mask_fraction > 0:
            transforms.append(RandMaskd("signal", mask_fraction))
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


def mask_blocks(spatial: Sequence[int], hidden: np.ndarray) -> np.ndarray:
    """Boolean keep-mask of ``spatial`` shape from a grid of hidden blocks (1/8 of the patch on a side)."""
    block = tuple(max(1, int(s) // 8) for s in spatial)
    keep = ~np.asarray(hidden, dtype=bool)
    for axis, b in enumerate(block):
        keep = np.repeat(keep, b, axis=axis)
    return keep[tuple(slice(0, int(s)) for s in spatial)]


class BatchAugmenter:
    """Seeded lossless augmentation of a batch ``{"signal", "target", "seed"}`` on the batch's device.

    Each sample's draws (flips, a 90-degree turn in Y-X, whether the intensity change applies, gain, offset,
    noise level, noise and hidden blocks) come from its own ``seed`` alone: the augmentation of a patch does
    not depend on the batch it is in, on the device, or on resuming.

    Parameters
    ----------
    spatial_dims : int
        2 or 3 (3: 90-degree turns in the Y-X plane only).
    flip_axes, rot90, gain_range, offset_range, gain_channels, noise_std, mask_fraction, prob
        See :class:`stainfree.config.AugmentConfig` (``rot90`` needs square Y-X patches).
    """

    batched = True

    def __init__(
        self,
        *,
        spatial_dims: int,
        flip_axes: Sequence[int] = (-2, -1),
        rot90: bool = True,
        gain_range: Sequence[float] = (1.0, 1.0),
        offset_range: Sequence[float] = (0.0, 0.0),
        gain_channels: Sequence[int] | None = None,
        noise_std: float = 0.0,
        mask_fraction: float = 0.0,
        prob: float = 0.5,
    ) -> None:
        self.spatial_dims = int(spatial_dims)
        self.flip_axes = [int(a) % self.spatial_dims for a in flip_axes]
        self.rot90 = bool(rot90)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.offset_range = (float(offset_range[0]), float(offset_range[1]))
        self.gain_channels = None if gain_channels is None else [int(c) for c in gain_channels]
        self.noise_std = float(noise_std)
        self.mask_fraction = float(mask_fraction)
        self.prob = float(prob)
        self.intensity = not (
            self.gain_range == (1.0, 1.0) and self.offset_range == (0.0, 0.0) and self.noise_std <= 0
        )

    def draws(self, seed: int, spatial: Sequence[int]) -> dict[str, Any]:
        """The random choices for one sample of ``spatial`` shape (pure function of ``seed``)."""
        rng = np.random.default_rng(int(seed) % (2**63))
        flips = [a for a in self.flip_axes if rng.random() < 0.5]
        turns = int(rng.integers(1, 4)) if self.rot90 and rng.random() < 0.75 else 0
        apply = bool(rng.random() < self.prob) and self.intensity
        gain = float(rng.uniform(*self.gain_range))
        offset = float(rng.uniform(*self.offset_range))
        std = float(rng.uniform(0.0, self.noise_std)) if self.noise_std > 0 else 0.0
        noise_seed = int(rng.integers(2**62))
        keep = None
        if self.mask_fraction > 0:
            grid = tuple(-(-int(s) // max(1, int(s) // 8)) for s in spatial)
            keep = mask_blocks(spatial, rng.random(grid) < self.mask_fraction)
        return {
            "flips": flips,
            "turns": turns,
            "apply": apply,
            "gain": gain,
            "offset": offset,
            "std": std,
            "noise_seed": noise_seed,
            "keep": keep,
        }

    def _one(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one channel-first sample (no batch axis)."""
        d = self.draws(seed, tuple(x.shape[1:]))
        dims = [1 + a for a in d["flips"]]
        if dims:
            x, y = x.flip(dims), y.flip(dims)
        if d["turns"]:
            plane = (self.spatial_dims - 1, self.spatial_dims)
            x, y = torch.rot90(x, d["turns"], dims=plane), torch.rot90(y, d["turns"], dims=plane)
        gen = None
        if d["apply"] or d["keep"] is not None:
            gen = torch.Generator(device=x.device).manual_seed(d["noise_seed"])
        if d["apply"]:
            x = x.clone()
            chans = list(range(x.shape[0])) if self.gain_channels is None else self.gain_channels
            sel = x[chans] * d["gain"] + d["offset"]
            if d["std"] > 0:
                noise = torch.randn(sel.shape, generator=gen, device=x.device, dtype=torch.float32)
                sel = sel + noise.to(sel.dtype) * d["std"]
            x[chans] = sel
        if d["keep"] is not None:
            keep = torch.from_numpy(d["keep"]).to(x.device)
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=torch.float32)
            x = torch.where(keep, x, noise.to(x.dtype))
        return x.contiguous(), y.contiguous()

    def batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Augment a collated batch; ``batch["seed"]`` holds one seed per sample (removed from the result)."""
        out = {k: v for k, v in batch.items() if k != "seed"}
        seeds = [int(s) for s in batch["seed"].tolist()]
        pairs = [self._one(x, y, s) for x, y, s in zip(batch["signal"], batch["target"], seeds, strict=True)]
        out["signal"] = torch.stack([p[0] for p in pairs])
        out["target"] = torch.stack([p[1] for p in pairs])
        return out

    def __call__(self, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """Augment one sample (channel first, no batch axis) with the draws of ``seed``."""
        x, y = self._one(sample["signal"].float(), sample["target"], int(seed))
        return {"signal": x, "target": y}


def build_augmenter(
    config: Any, *, spatial_dims: int, task: str, input_transform: str = "none"
) -> Augmenter | BatchAugmenter | None:
    """The augmentation of an :class:`~stainfree.config.AugmentConfig`: a :class:`BatchAugmenter` when every
    transform is lossless (no free rotation, no zoom), an :class:`Augmenter` otherwise, None when disabled."""
    if config is None or not config.enabled:
        return None
    gain_channels = config.gain_channels
    if gain_channels is None:
        gain_channels = default_gain_channels(0, input_transform)
    elif input_transform == "ratiometric":
        gain_channels = [c for c in gain_channels if c != 1]
    common: dict[str, Any] = {
        "spatial_dims": spatial_dims,
        "flip_axes": config.flip_axes,
        "rot90": config.rot90,
        "gain_range": config.gain_range,
        "offset_range": config.offset_range,
        "gain_channels": gain_channels,
        "noise_std": config.noise_std,
        "mask_fraction": config.mask_fraction,
        "prob": config.prob,
    }
    if config.rotation_degrees <= 0 and tuple(config.scale_range) == (1.0, 1.0):
        return BatchAugmenter(**common)
    return Augmenter(
        **common,
        rotation_degrees=config.rotation_degrees,
        scale_range=config.scale_range,
        target_is_mask=task != "regression",
    )
