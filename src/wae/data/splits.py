"""Seeded index selection: class-balanced subsets and stratified train/val splits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import fail_if

if TYPE_CHECKING:
    from .datasets import LabeledDataset

__all__ = ["balanced_subset", "stratified_split", "train_val_split"]


def _class_ranks(targets: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle, then rank each item within its class. Returns ``(perm, rank)``, both ``(N,)``:
    ``perm[k]`` is an original index and ``rank[k]`` its position among its class."""
    perm = torch.randperm(len(targets), generator=g)
    t = targets[perm]
    order = torch.sort(t, stable=True).indices
    counts = torch.bincount(t)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(perm)
    rank[order] = torch.arange(len(t)) - starts[t[order]]
    return perm, rank


def balanced_subset(targets: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Seeded, class-balanced choice of ``n`` indices into ``targets`` (int64 ``(N,)``).

    Classes are taken round-robin (in a seeded class order) from seeded per-class shuffles, so
    class counts differ by at most one unless a class runs out. Returns sorted int64 ``(n,)``.
    """
    fail_if(n < 1, f"subset must be a positive number of images, got {n}.")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    if n >= len(targets):
        return torch.arange(len(targets))
    g = torch.Generator().manual_seed(seed)
    perm, rank = _class_ranks(targets, g)
    num_classes = int(targets.max()) + 1
    class_order = torch.randperm(num_classes, generator=g)
    key = rank * num_classes + class_order[targets[perm]]  # unique per item
    return perm[torch.argsort(key)[:n]].sort().values


def stratified_split(
    targets: torch.Tensor, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded per-class split of indices into ``(train, val)``, sorted int64 tensors.

    Each class gives ``round(count * val_fraction)`` items to val, and at least one if it has
    two or more (small classes, e.g. face identities, would otherwise never be validated).
    """
    fail_if(not 0 < val_fraction < 1, f"val_fraction must be in (0, 1), got {val_fraction}.")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    perm, rank = _class_ranks(targets, torch.Generator().manual_seed(seed))
    counts = torch.bincount(targets)
    n_val = torch.round(counts.double() * val_fraction).long()
    n_val = torch.where(counts >= 2, n_val.clamp(min=1), n_val)
    is_val = rank < n_val[targets[perm]]
    fail_if(
        not is_val.any(),
        f"Too few images ({len(targets)}) to hold out {val_fraction:.0%} per class for "
        f"validation. Add images or provide a separate val folder.",
    )
    return perm[~is_val].sort().values, perm[is_val].sort().values


def train_val_split(
    dataset: LabeledDataset, val_fraction: float = 0.1, seed: int = 0
) -> tuple[LabeledDataset, LabeledDataset]:
    """Seeded, stratified split of ``dataset`` into (train, val).

    Train keeps augmentation; val gets the eval transform.
    """
    tr, va = stratified_split(dataset.targets, val_fraction, seed)
    return dataset.with_indices(tr, True, "train"), dataset.with_indices(va, False, "val")
