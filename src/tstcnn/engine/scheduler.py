"""Learning-rate schedules, stepped once per epoch; the paper's re-scheduler first.

:class:`PaperReScheduler` is section IV-C of Martin et al. (ICPR 2020): watch the training loss;
when the mean of the last ``recent_window`` (25) epochs is greater than the mean of the
``previous_window`` (35) epochs before them, reload the best saved state (weights and optimiser)
and multiply the learning rate by ``lr_factor`` (÷10); once it would go below ``lr_min`` (1e-5)
it goes back to the initial ``lr`` (0.01). Two changes are at least ``patience`` (50) epochs apart,
unless the validation accuracy drops below ``accuracy_drop`` (0.7) × the best seen, which triggers
a change at once. The loss windows slide over the whole history (they are not cleared by a change);
``patience`` counts epochs since the last change, or since the start.

Every schedule answers :meth:`step` with an :class:`LRChange` (or ``None``) that tells the trainer
the new rate and whether to reload the best state, and has ``state_dict`` / ``load_state_dict`` of
plain values so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, get_args

from tstcnn.config import SchedulerName, TrainConfig

__all__ = ["LRChange", "EpochScheduler", "PaperReScheduler", "CosineScheduler", "StepScheduler",
           "ConstantScheduler", "SCHEDULERS", "build_scheduler"]


@dataclass(frozen=True)
class LRChange:
    """A learning-rate change decided at the end of an epoch."""

    reason: str  # "loss_plateau" | "accuracy_drop" | "schedule"
    old_lr: float
    new_lr: float
    reload_best: bool


class EpochScheduler:
    """Base class: ``lr`` is the rate for the next epoch; :meth:`step` is called once at each epoch's end."""

    def __init__(self, lr: float) -> None:
        self.base_lr = lr
        self.lr = lr
        self.epoch = 0  # epochs stepped so far

    continuous = False  # a schedule that moves every epoch reports no individual changes

    def step(self, train_loss: float, val_accuracy: float) -> LRChange | None:
        self.epoch += 1
        old, self.lr = self.lr, self._lr_at(self.epoch)
        changed = self.lr != old and not self.continuous
        return LRChange("schedule", old, self.lr, reload_best=False) if changed else None

    def _lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = float(state["lr"])
        self.epoch = int(state["epoch"])


class ConstantScheduler(EpochScheduler):
    """The initial rate throughout."""

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr


class StepScheduler(EpochScheduler):
    """``lr × lr_factor ** (epoch // step_size)``."""

    def __init__(self, lr: float, step_size: int, lr_factor: float) -> None:
        super().__init__(lr)
        if step_size < 1:
            raise ValueError(f"step_size must be at least 1, got {step_size}")
        self.step_size, self.lr_factor = step_size, lr_factor

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.lr_factor ** (epoch // self.step_size)


class CosineScheduler(EpochScheduler):
    """Half a cosine from ``lr`` at epoch 0 to 0 at ``epochs``."""

    continuous = True

    def __init__(self, lr: float, epochs: int) -> None:
        super().__init__(lr)
        self.epochs = max(1, epochs)

    def _lr_at(self, epoch: int) -> float:
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))


class PaperReScheduler(EpochScheduler):
    """The re-scheduler of section IV-C (see the module docstring); every number comes from the arguments."""

    def __init__(self, lr: float = 0.01, *, recent_window: int = 25, previous_window: int = 35, patience: int = 50,
                 lr_factor: float = 0.1, lr_min: float = 1e-5, accuracy_drop: float = 0.7) -> None:
        super().__init__(lr)
        if recent_window < 1 or previous_window < 1:
            raise ValueError(f"loss windows must be at least 1 epoch, got {recent_window} and {previous_window}")
        if not 0 < lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {lr_factor}")
        self.recent_window, self.previous_window = recent_window, previous_window
        self.patience, self.lr_factor, self.lr_min, self.accuracy_drop = patience, lr_factor, lr_min, accuracy_drop
        self.losses: list[float] = []
        self.best_accuracy = 0.0
        self.last_change = 0  # epoch count at the last change (0: the start)

    def _loss_rises(self) -> bool:
        window = self.recent_window + self.previous_window
        if len(self.losses) < window:
            return False
        history = self.losses[-window:]
        previous, recent = history[: self.previous_window], history[self.previous_window:]
        return sum(recent) / len(recent) > sum(previous) / len(previous)

    def _next_lr(self) -> float:
        lowered = self.lr * self.lr_factor
        # Relative tolerance: 0.01 × 0.1³ is 1.0000000000000002e-05, which is "reaching 1e-5", not below it.
        return self.base_lr if lowered < self.lr_min * (1 - 1e-9) else lowered

    def step(self, train_loss: float, val_accuracy: float) -> LRChange | None:
        self.epoch += 1
        self.losses.append(float(train_loss))
        self.best_accuracy = max(self.best_accuracy, float(val_accuracy))
        if val_accuracy < self.accuracy_drop * self.best_accuracy:
            reason = "accuracy_drop"
        elif self.epoch - self.last_change >= self.patience and self._loss_rises():
            reason = "loss_plateau"
        else:
            return None
        old, self.lr = self.lr, self._next_lr()
        self.last_change = self.epoch
        return LRChange(reason, old, self.lr, reload_best=True)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "losses": list(self.losses), "best_accuracy": self.best_accuracy,
                "last_change": self.last_change}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.losses = [float(v) for v in state["losses"]]
        self.best_accuracy = float(state["best_accuracy"])
        self.last_change = int(state["last_change"])


SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)


def build_scheduler(train: TrainConfig) -> EpochScheduler:
    """The schedule ``train.scheduler`` names, with every number from the config."""
    if train.scheduler == "paper":
        return PaperReScheduler(train.lr, recent_window=train.recent_window, previous_window=train.previous_window,
                                patience=train.patience, lr_factor=train.lr_factor, lr_min=train.lr_min,
                                accuracy_drop=train.accuracy_drop)
    if train.scheduler == "cosine":
        return CosineScheduler(train.lr, train.epochs)
    if train.scheduler == "step":
        return StepScheduler(train.lr, train.step_size, train.lr_factor)
    if train.scheduler == "constant":
        return ConstantScheduler(train.lr)
    raise ValueError(f"unknown scheduler {train.scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
