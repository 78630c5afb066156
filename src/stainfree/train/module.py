"""The LightningModule: one training step, one validation step, the optimizer. Nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


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
        ``none`` or ``plateau`` (ReduceLROnPlateau on ``monitor`` after each validation).
    plateau_factor, plateau_patience : float, int
        Plateau schedule.
    monitor : str
        ``val_loss`` (minimised) or ``val_f1`` (maximised).
    val_every_n_steps : int
        How often validation (and so the plateau schedule) runs.
    seed : int
        Seeds torch's generator at each step (dropout), so a resumed run draws what an uninterrupted one does.
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
        monitor: str = "val_loss",
        val_every_n_steps: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.task = task
        self.lr = lr
        self.betas = tuple(betas)
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.monitor = monitor
        self.val_every_n_steps = val_every_n_steps
        self.seed = seed
        self._val_counts: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)
        logits = self.model(batch["signal"])
        loss = self.loss_fn(logits, batch["target"])
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(logits))
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["signal"])
        loss = self.loss_fn(logits, batch["target"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits))
        if self.task != "regression":
            self._val_counts.append(
                confusion_counts(logits.float(), batch["target"], self.task, logits.shape[1])
            )
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.task != "regression" and self._val_counts:
            counts = torch.stack(self._val_counts).sum(dim=0)
            self.log("val_f1", f1_from_counts(counts), prog_bar=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        if self.scheduler_name != "plateau":
            return opt
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt,
            mode="max" if self.monitor == "val_f1" else "min",
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
