"""The teacher's soft targets computed once per run (``teacher.cache = true``).

Distillation runs the frozen teacher on every training batch; on a CPU that forward costs
about as much as the student's whole step. When the training images are the same every
epoch (``data.augment = false``), the teacher's logits for each of them are the same too: they
are computed here in one pass over the training set (in the run's precision, as the step
would), kept in memory (N x K float32: 40 MB for a million images of 10 classes), and each
batch looks its own up by index. Validation batches still run the teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..distill import teacher_outputs

__all__ = ["IndexedDataset", "teacher_logits"]


class IndexedDataset(Dataset):
    """`dataset`'s items with their index: ``(x, y, i)``, so a batch can look up its rows."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        x, y = self.dataset[i]
        return x, y, i


def teacher_logits(
    teacher: torch.nn.Module,
    dataset: Dataset,
    *,
    batch: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager[Any]],
    batch_size: int = 500,
) -> torch.Tensor:
    """The teacher's logits (N, K), float32 on its device, for each image of `dataset` in
    order; `batch` moves a CPU batch to the device (and memory format), `autocast` is the
    run's precision context."""
    rows = []
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with autocast():
            rows.append(teacher_outputs(teacher, batch(x))[0])
    return torch.cat(rows)
