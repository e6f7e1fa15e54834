"""What code embedding the trainer sees while it runs: callbacks, and the error that stops it."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import WAEError

__all__ = ["TrainHooks", "TrainingError"]


class TrainingError(WAEError, RuntimeError):
    """Training cannot go on (a non-finite loss, a model that does not fit the stage...)."""


class TrainHooks:
    """Callbacks for embedding code and tests; override what you need (all are no-ops).

    ``stage`` and ``epoch`` are 1-based, ``step`` 0-based within the epoch.
    """

    def on_step(self, stage: int, epoch: int, step: int, model: nn.Module, loss: float) -> None:  # noqa: D401
        """After each optimiser step."""

    def on_epoch_end(self, stage: int, epoch: int, row: dict[str, Any], model: nn.Module) -> None:
        """After each epoch's checkpoint is written."""
