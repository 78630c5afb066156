"""The LightningModule: one training step, one validation step, the optimizer and its schedule, and an
exponential moving average of the weights. Nothing else."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from torch import nn

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel


def confusion_counts(logits: torch.Tensor, target: torch.Tensor, task: str, n_classes: int) -> torch.Tensor:
    """True positives, false positives and false negatives per foreground class, shape (K, 3).

    Binary: one class (logit > 0). Multiclass: classes 1..K-1 (0 is background), prediction = argmax.
    """
    if task == "binary":
        pred = logits > 0
        truth = target > 0.5
        tp = (pred & truth).sum()
        fp = (pred & ~truth).sum()
        fn = (~pred & truth).sum()
        return torch.stack([tp, fp, fn]).reshape(1, 3).to(torch.float64)
    pred = logits.argmax(dim=1)
    truth = target[:, 0] if target.ndim == logits.ndim else target
    rows = []
    for k in range(1, n_classes):
        p, t = pred == k, truth == k
        rows.append(torch.stack([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()]))
    return torch.stack(rows).to(torch.float64)


def pearson_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-channel sums (n, x, y, xx, yy, xy) of a batch, shape (C, 6), to pool Pearson r over batches."""
    c = pred.shape[1]
    x = pred.detach().transpose(0, 1).reshape(c, -1).to(torch.float64)
    y = target.detach().transpose(0, 1).reshape(c, -1).to(torch.float64)
    n = torch.full((c,), x.shape[1], dtype=torch.float64, device=x.device)
    return torch.stack([n, x.sum(1), y.sum(1), (x * x).sum(1), (y * y).sum(1), (x * y).sum(1)], dim=1)


def pearson_from_sums(sums: torch.Tensor) -> float:
    """Mean over channels of the Pearson r of pooled sums from :func:`pearson_sums` (0 for a constant)."""
    n, sx, sy, sxx, syy, sxy = sums.unbind(dim=1)
    cov = sxy - sx * sy / n
    var = (sxx - sx * sx / n) * (syy - sy * sy / n)
    r = torch.where(var > 0, cov / torch.sqrt(var.clamp_min(1e-300)), torch.zeros_like(cov))
    return float(r.mean())


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, floor: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then a cosine from 1 to ``floor`` at
    ``total_steps`` (and ``floor`` after it)."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


TensorList = tuple[torch.Tensor, ...] | list[torch.Tensor]


def ema_average(
    decay: float,
) -> Callable[[TensorList, TensorList, torch.Tensor | int], None]:
    """A ``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: an exponential moving average
    whose decay ramps up as ``(1 + n) / (10 + n)`` to ``decay``, so that the first weights do not dominate
    short runs.

    The decay stays a tensor on the weights' device and every weight of a group is updated by two fused
    (foreach) operations: no copy to the host per weight (on a GPU each one waited for the queue to drain).
    Integer buffers (batch-norm counters) take the network's value.
    """

    def avg(averaged: TensorList, current: TensorList, n: torch.Tensor | int) -> None:
        if not averaged:
            return
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        steps = torch.as_tensor(n, device=averaged[0].device, dtype=torch.float32)
        d = torch.clamp((1.0 + steps) / (10.0 + steps), max=decay)
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, torch._foreach_mul(current, 1.0 - d))

    return avg


def f1_from_counts(counts: torch.Tensor) -> float:
    """Mean F1 over the classes that occur (in truth or prediction); 1.0 when none does."""
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not bool(present.any()):
        return 1.0
    return float((2 * tp[present] / denom[present]).mean())


class TrainModule(pl.LightningModule):
    """Trains a network with a loss; validation logs ``val_loss`` (and ``val_f1`` for segmentation).

    Parameters
    ----------
    model : nn.Module
        The network.
    loss_fn : callable
        ``loss(logits, target) -> scalar``.
    task : str
        ``regression``, ``binary`` or ``multiclass``.
    lr, betas, weight_decay : float, tuple, float
        Adam.
    scheduler : str
        ``none``, ``plateau`` (ReduceLROnPlateau on ``monitor`` after each validation) or ``cosine``
        (linear warm-up over ``warmup_steps``, then cosine decay to 1 % of ``lr`` at ``max_steps``).
    plateau_factor, plateau_patience : float, int
        Plateau schedule.
    warmup_steps, max_steps : int
        Cosine schedule.
    ema_decay : float, optional
        Keep an exponential moving average of the weights (decay ramped up over the first steps); validation
        then scores the averaged weights, and :attr:`export_model` returns them.
    monitor : str
        ``val_loss`` (minimised), ``val_r`` or ``val_f1`` (maximised). Validation always logs ``val_loss``,
        plus ``val_r`` (Pearson r pooled over the validation patches, mean over channels) for regression
        and ``val_f1`` for segmentation.
    val_every_n_steps : int
        How often validation (and so the plateau schedule) runs.
    seed : int
        Seeds torch's generator at each step (dropout), so a resumed run draws what an uninterrupted one does.
    augment : object, optional
        Batch-wise augmentation with a ``batch(batch) -> batch`` method
        (:class:`stainfree.data.augment.BatchAugmenter`), applied on the device to training batches that carry
        per-sample ``seed`` s.
    channels_last : bool
        Train 3D networks on the CPU in the channels-last memory layout (weights and input batches): oneDNN's
        3D convolutions are faster in it (an fnet-size U-Net, batch 24 of 32 x 64 x 64, float32: 16.5 s
        instead of 18.8 s a step on 2 cores). Other devices and 2D networks keep the default layout.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        task: str = "regression",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 0.0,
        scheduler: str = "none",
        plateau_factor: float = 0.3,
        plateau_patience: int = 5,
        warmup_steps: int = 0,
        max_steps: int = 1000,
        ema_decay: float | None = None,
        monitor: str = "val_loss",
        val_every_n_steps: int = 100,
        seed: int = 0,
        augment: Any = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.augment = augment
        self.channels_last = channels_last
        self._layout: torch.memory_format | None = None
        self.model = model
        self.loss_fn = loss_fn
        self.task = task
        self.lr = lr
        beta1, beta2 = betas
        self.betas: tuple[float, float] = (beta1, beta2)
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.warmup_steps = int(warmup_steps)
        self.max_steps = int(max_steps)
        self.monitor = monitor
        self.val_every_n_steps = val_every_n_steps
        self.seed = seed
        self._val_counts: list[torch.Tensor] = []
        self._val_sums: list[torch.Tensor] = []
        self.ema: AveragedModel | None = None
        if ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(model, multi_avg_fn=ema_average(float(ema_decay)), use_buffers=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def export_model(self) -> nn.Module:
        """The weights to keep: the moving average when there is one, else the network itself."""
        return self.ema.module if self.ema is not None else self.model

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the weight average (inside the step, so that a checkpoint written at the
        end of the batch already holds the updated average)."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_fit_start(self) -> None:
        conv3d = any(isinstance(m, nn.Conv3d) for m in self.model.modules())
        if self.channels_last and self.device.type == "cpu" and conv3d:
            self._layout = torch.channels_last_3d
            self.model.to(memory_format=self._layout)  # type: ignore[call-overload]
            if self.ema is not None:
                self.ema.module.to(memory_format=self._layout)  # type: ignore[call-overload]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.augment is not None and isinstance(batch, dict) and "seed" in batch:
            batch = self.augment.batch(batch)
        if self._layout is not None and isinstance(batch, dict) and batch["signal"].dim() == 5:
            batch = {**batch, "signal": batch["signal"].contiguous(memory_format=self._layout)}
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)
        logits = self.model(batch["signal"])
        loss = self.loss_fn(logits, batch["target"])
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(logits))
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = []
        self._val_sums = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.export_model(batch["signal"])
        loss = self.loss_fn(logits, batch["target"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits))
        if self.task == "regression":
            self._val_sums.append(pearson_sums(logits.float(), batch["target"].float()))
        else:
            self._val_counts.append(
                confusion_counts(logits.float(), batch["target"], self.task, logits.shape[1])
            )
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.task == "regression" and self._val_sums:
            self.log("val_r", pearson_from_sums(torch.stack(self._val_sums).sum(dim=0)), prog_bar=True)
        if self.task != "regression" and self._val_counts:
            counts = torch.stack(self._val_counts).sum(dim=0)
            self.log("val_f1", f1_from_counts(counts), prog_bar=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        if self.scheduler_name == "cosine":
            # reads max_steps at every step: a time-budgeted run re-plans its length while it trains
            cosine = torch.optim.lr_scheduler.LambdaLR(
                opt,
                lambda step: warmup_cosine(step, warmup_steps=self.warmup_steps, total_steps=self.max_steps),
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
        if self.scheduler_name != "plateau":
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="min" if self.monitor == "val_loss" else "max",
            factor=self.plateau_factor,
            patience=self.plateau_patience,
            min_lr=0.0,
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": sched,
                "monitor": self.monitor,
                "interval": "step",
                "frequency": self.val_every_n_steps,
                "strict": False,
            },
        }
