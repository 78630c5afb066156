"""Losses: MSE, L1 and MSE + SSIM for regression; weighted BCE, weighted CE and Dice+CE for segmentation.

Every loss takes ``(logits, target)`` with target shapes as :class:`stainfree.data.dataset.PatchDataset` gives
them: regression (B, C, ...) float, binary (B, 1, ...) float 0/1, multiclass (B, 1, ...) int64 labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("mse", "l1", "mse_ssim", "bce", "ce", "dice_ce")


def mse_ssim(logits: torch.Tensor, target: torch.Tensor, ssim_weight: float = 1.0) -> torch.Tensor:
    """MSE plus ``ssim_weight * (1 - SSIM)`` (MONAI's SSIMLoss, Gaussian window of 7 or less, data range
    the target batch's range), so that structure and contrast count beside the intensity error."""
    from monai.losses import SSIMLoss

    spatial = tuple(int(s) for s in logits.shape[2:])
    win = max(1, min(7, *spatial))
    win -= 1 - win % 2  # odd window
    rng = float((target.max() - target.min()).detach()) or 1.0
    ssim = SSIMLoss(spatial_dims=len(spatial), data_range=rng, win_size=win)
    # one channel at a time: SSIMLoss treats the channels as one image
    parts = [ssim(logits[:, c : c + 1].float(), target[:, c : c + 1].float()) for c in range(logits.shape[1])]
    return F.mse_loss(logits, target) + ssim_weight * torch.stack(parts).mean()


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits; positives weighted by ``pos_weight`` (mean over voxels)."""
    pw = (
        None
        if pos_weight is None
        else torch.tensor(float(pos_weight), dtype=logits.dtype, device=logits.device)
    )
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pw)


def weighted_ce(
    logits: torch.Tensor, target: torch.Tensor, class_weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Cross-entropy of logits (B, K, ...) and labels (B, 1, ...) or (B, ...); weighted mean as in torch."""
    if target.ndim == logits.ndim:
        target = target[:, 0]
    w = (
        None
        if class_weights is None
        else torch.tensor(list(class_weights), dtype=logits.dtype, device=logits.device)
    )
    return F.cross_entropy(logits, target.long(), weight=w)


def build_loss(
    name: str,
    *,
    task: str,
    pos_weight: float | None = None,
    class_weights: Sequence[float] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function ``loss(logits, target) -> scalar`` of a name and task.

    ``dice_ce`` is soft Dice plus cross-entropy. The Dice sums over the whole batch, not per patch, so that
    patches without any of a sparse structure (most patches of a small organelle) do not push every
    prediction to zero. Binary: ``pos_weight`` acts on the BCE term; multi-class: ``class_weights`` weigh
    both terms (MONAI's DiceCELoss).

    Parameters
    ----------
    name : {"mse", "l1", "mse_ssim", "bce", "ce", "dice_ce"}
        Loss.
    task : {"regression", "binary", "multiclass"}
        Task (checks that the loss fits it; ``dice_ce`` uses sigmoid for binary, softmax for multiclass).
    pos_weight : float, optional
        Binary BCE weight of positive voxels.
    class_weights : sequence of float, optional
        Multiclass CE weight per class.
    """
    if name == "mse":
        return nn.MSELoss()
    if name == "l1":
        return nn.L1Loss()
    if name == "mse_ssim":
        return mse_ssim
    if name == "bce":
        if task != "binary":
            raise ValueError("loss 'bce' needs task 'binary'")
        return lambda logits, target: weighted_bce(logits, target, pos_weight)
    if name == "ce":
        if task != "multiclass":
            raise ValueError("loss 'ce' needs task 'multiclass'")
        return lambda logits, target: weighted_ce(logits, target, class_weights)
    if name == "dice_ce":
        from monai.losses import DiceCELoss, DiceLoss

        if task == "binary":
            dice = DiceLoss(sigmoid=True, batch=True)

            def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                target = target.to(logits.dtype)
                return dice(logits, target) + weighted_bce(logits, target, pos_weight)

            return dice_bce
        if task == "multiclass":
            w = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
            dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, weight=w, batch=True)

            def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                if target.ndim == logits.ndim - 1:
                    target = target[:, None]
                dice_ce.to(logits.device)  # the class weights live in the loss module
                return dice_ce(logits, target.long())

            return loss
        raise ValueError("loss 'dice_ce' needs a segmentation task")
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
