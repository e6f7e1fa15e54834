"""Learning-rate schedules with a JSON-only state, so a resumed stage continues exactly.

Our own small implementation rather than torch.optim.lr_scheduler: the learning rate is a pure
function of (epoch, step, a few scalars), set on the optimiser before every step, and the
state that `--resume` needs is three numbers, not a pickled object.
"""

from __future__ import annotations

import math
from typing import Any

from .config import ScheduleConfig

__all__ = ["LRSchedule", "Monitor"]


class Monitor:
    """Tracks the best value of a metric and how many epochs passed without improving it.

    ``mode`` "max" for accuracies, "min" for losses; an improvement must beat the best by the
    relative ``threshold``.
    """

    def __init__(self, mode: str, threshold: float = 1e-4) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode, self.threshold = mode, threshold
        self.best: float | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        margin = abs(self.best) * self.threshold
        return value > self.best + margin if self.mode == "max" else value < self.best - margin

    def update(self, value: float) -> bool:
        """Record an epoch's value; True if it improved on the best."""
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
            return True
        self.bad_epochs += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])


class LRSchedule:
    """lr(epoch, step) for one stage of ``epochs`` epochs of ``steps_per_epoch`` steps.

    Call :meth:`lr` before each optimiser step and :meth:`end_epoch` with the monitored metric
    after each epoch (only the plateau schedule uses it).
    """

    def __init__(
        self,
        cfg: ScheduleConfig,
        base_lr: float,
        epochs: int,
        steps_per_epoch: int,
        monitor_mode: str = "max",
    ) -> None:
        self.cfg, self.base_lr = cfg, base_lr
        self.epochs, self.steps = epochs, max(1, steps_per_epoch)
        self.scale = 1.0  # plateau: product of the reductions so far
        self.plateau = Monitor(monitor_mode, cfg.threshold)

    def lr(self, epoch: int, step: int) -> float:
        """Learning rate for step `step` (0-based) of epoch `epoch` (0-based)."""
        c = self.cfg
        t = epoch * self.steps + step  # steps done before this one
        warm = c.warmup_epochs * self.steps
        if c.name == "constant":
            lr = self.base_lr
        elif c.name == "step":
            drops = sum(epoch >= m for m in c.milestones) if c.milestones else epoch // c.step_size
            lr = self.base_lr * c.gamma**drops
        elif c.name == "cosine":
            # The cosine runs over the steps after the warm-up, reaching min_lr at the end.
            p = min(1.0, max(0, t - warm) / max(1, self.epochs * self.steps - warm))
            lr = c.min_lr + (self.base_lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * p))
        else:  # plateau
            lr = self.base_lr * self.scale
        if c.name != "cosine":
            lr = max(lr, min(c.min_lr, self.base_lr))
        if t < warm:
            lr *= c.warmup_start + (1 - c.warmup_start) * t / warm
        return lr

    def end_epoch(self, metric: float | None) -> bool:
        """Feed the epoch's monitored metric; True if the plateau schedule cut the lr."""
        if self.cfg.name != "plateau" or metric is None:
            return False
        self.plateau.update(metric)
        if self.plateau.bad_epochs > self.cfg.patience:
            self.scale *= self.cfg.gamma
            self.plateau.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.plateau.load_state_dict(state["plateau"])
