"""The Lightning Trainer of a run: checkpoints (periodic, last, best by the monitor), early stopping, time
limit, gradient clipping, progress bar and CSV log; and reading that log and those checkpoints back."""

from __future__ import annotations

import contextlib
import datetime
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stainfree.config import TrainingJob

log = logging.getLogger(__name__)


def make_trainer(
    job: TrainingJob,
    out: Path,
    *,
    monitor: str,
    max_steps: int,
    val_every: int,
    time_left: float | None,
    progress: bool,
    replan: bool = False,
    log_every: int = 1,
) -> tuple[Any, Any]:
    """The Trainer of a resolved job and its best-checkpoint callback.

    Parameters
    ----------
    job : TrainingJob
        Resolved job (batch, steps and patch filled in).
    out : Path
        Run folder: ``checkpoints/`` and ``logs/metrics.csv`` go there.
    monitor : str
        ``val_loss`` (minimised), ``val_r`` or ``val_f1`` (maximised).
    max_steps, val_every : int
        Steps of the run and validation interval.
    time_left : float, optional
        Seconds after which training stops (the rest of ``train.max_time``); with ``replan`` (a run sized to
        it), the step count and the schedule are re-planned from the measured pace as it trains.
    progress : bool
        Show a progress bar.
    log_every : int
        Steps between rows of the training log and between refreshes of the bar (each reads the loss back
        from the device: on a GPU, once a step would make every step wait for the one before).
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    tc = job.train
    ckpt_dir = out / "checkpoints"

    class _StopAtMinLr(Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            if lr < tc.min_lr:
                log.info("learning rate %.3g below min_lr %.3g: stopping", lr, tc.min_lr)
                trainer.should_stop = True

    every: dict[str, Any] = (
        {"every_n_train_steps": tc.checkpoint_every_n_steps}
        if tc.checkpoint_every_n_steps is not None
        else {"train_time_interval": datetime.timedelta(minutes=tc.checkpoint_every_minutes)}
    )
    periodic = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step{step:07d}",
        save_top_k=-1,
        save_last=True,
        auto_insert_metric_name=False,
        **every,
    )

    class _KeepNewest(Callback):
        """Delete all but the newest ``keep_checkpoints`` periodic checkpoints (a long GPU run would
        otherwise fill the disk with them)."""

        def _prune(self) -> None:
            prune_checkpoints(ckpt_dir, tc.keep_checkpoints)

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.is_global_zero:
                self._prune()

        def on_train_end(self, trainer: Any, *args: Any) -> None:
            if trainer.is_global_zero:
                self._prune()

    mode = "min" if monitor == "val_loss" else "max"
    best_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    callbacks: list = [periodic, best_cb, _StopAtMinLr(), _KeepNewest()]
    if replan and time_left is not None:
        callbacks.append(BudgetPlanner(time_left, every=max(1, val_every // 2)))
    if tc.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=tc.early_stopping_patience, check_finite=False)
        )
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        class _StepsBar(RichProgressBar):
            """Rich bar labelled by the job (the run is one long epoch of ``max_steps`` steps)."""

            def _get_train_description(self, current_epoch: int) -> str:
                return f"training {job.name}"

        callbacks.append(_StepsBar(refresh_rate=log_every))
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        max_time=None if time_left is None else datetime.timedelta(seconds=time_left),
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=log_every,
        precision="32" if tc.precision == "auto" else tc.precision,  # (the recipe resolves auto)
        accelerator=tc.accelerator,
        devices=tc.devices,
        strategy=tc.strategy,
        num_nodes=tc.num_nodes,
        gradient_clip_val=tc.gradient_clip,
        callbacks=callbacks,
        logger=CSVLogger(save_dir=out, name="logs", version=""),
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=out,
    )
    return trainer, best_cb


def prune_checkpoints(ckpt_dir: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest periodic checkpoints (``step*.ckpt``); returns those removed."""
    steps = sorted(Path(ckpt_dir).glob("step*.ckpt"))
    removed = steps[: max(0, len(steps) - int(keep))]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


class BudgetPlanner:
    """Keeps a time-budgeted run's length matched to its budget: every ``every`` steps, the steps that still
    fit (from the pace measured so far) set the Trainer's ``max_steps`` and the module's ``max_steps`` (the
    length of its cosine schedule), so that the schedule ends when the time does, whatever the load on the
    machine. A Lightning callback (built lazily so that this module imports without Lightning)."""

    def __new__(cls, seconds: float, every: int) -> Any:
        import time

        from lightning.pytorch.callbacks import Callback

        class _Planner(Callback):
            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                self.t0, self.step0 = time.perf_counter(), int(trainer.global_step)

            def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
                done = int(trainer.global_step) - self.step0
                if done < every or done % every:
                    return
                elapsed = time.perf_counter() - self.t0
                fits = int(done * max(0.0, seconds * 0.97 - elapsed) / max(elapsed, 1e-9))
                total = max(int(trainer.global_step) + 1, int(trainer.global_step) + fits)
                trainer.fit_loop.epoch_loop.max_steps = total
                pl_module.max_steps = total

        return _Planner()


def read_rows(metrics_csv: Path, *, before_step: int) -> Any:
    """Rows of a CSV log with step < ``before_step`` (the CSV logger of a resumed run starts a new file)."""
    import pandas as pd

    if not metrics_csv.is_file():
        return None
    m = pd.read_csv(metrics_csv)
    return m[m["step"] < before_step] if "step" in m else m


def prepend_rows(metrics_csv: Path, earlier: Any) -> None:
    """Put the rows of the interrupted run before those of the resumed one."""
    import pandas as pd

    from stainfree.io.atomic import atomic_path

    new = pd.read_csv(metrics_csv) if metrics_csv.is_file() else pd.DataFrame()
    merged = pd.concat([earlier, new], ignore_index=True)
    with atomic_path(metrics_csv) as tmp:
        merged.to_csv(tmp, index=False)


def model_state(ckpt: str | Path, *, ema: bool = False) -> dict[str, Any]:
    """The network's state dict inside a Lightning checkpoint of :class:`TrainModule` (the moving average
    of the weights with ``ema``, when the checkpoint has one)."""
    from stainfree.models.bundle import safe_load

    state = safe_load(ckpt)["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "model."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def summary(metrics_csv: Path) -> dict[str, Any]:
    """First and last training loss and the best validation numbers from the CSV log."""
    if not metrics_csv.is_file():
        return {}
    import pandas as pd

    m = pd.read_csv(metrics_csv)
    out: dict[str, Any] = {}
    if "train_loss" in m:
        tl = m["train_loss"].dropna()
        if len(tl):
            out["first_train_loss"] = float(tl.iloc[0])
            out["final_train_loss"] = float(tl.iloc[-1])
    for name, best in (("val_loss", "min"), ("val_r", "max"), ("val_f1", "max")):
        if name in m:
            v = m[name].dropna()
            if len(v):
                out[f"best_{name}"] = float(v.min() if best == "min" else v.max())
                out[f"final_{name}"] = float(v.iloc[-1])
    return out


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Lightning's informational logging and routine warnings (restored afterwards)."""
    names = (
        "lightning.pytorch",
        "lightning.fabric",
        "lightning",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (
                ".*does not have many workers.*",
                ".*number of training batches.*",
                ".*checkpoint.*",
                ".*LeafSpec.*",
                ".*Experiment logs directory.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
