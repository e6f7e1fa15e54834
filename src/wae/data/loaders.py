"""Reproducible DataLoaders: batch order and augmentation depend only on the seed (and epoch)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .errors import fail_if

__all__ = ["build_loader"]


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; extend that to numpy/random so
    # user transforms drawing from them are reproducible too.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _SeededLoader(DataLoader):
    """DataLoader whose main-process loading (``num_workers=0``) is reproducible too.

    Workers are seeded from ``generator`` by DataLoader itself; without workers, augmentation
    would draw from torch's global RNG and depend on whatever ran before. Here each batch is
    fetched under a private RNG stream seeded from ``generator``, and the global state is
    restored around it.
    """

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        if self.num_workers > 0 or self.generator is None:
            return it
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        return self._private_rng(it, torch.Generator().manual_seed(seed).get_state())

    @staticmethod
    def _private_rng(it: Iterator[Any], state: torch.Tensor) -> Iterator[Any]:
        while True:
            outer = torch.get_rng_state()
            torch.set_rng_state(state)
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                state = torch.get_rng_state()
                torch.set_rng_state(outer)
            yield batch


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    distributed: bool = False,
    *,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A reproducible DataLoader: order and augmentation depend only on ``seed`` (and epoch).

    Batches are ``(images (B, C, H, W) float32, labels (B,) int64)`` on the CPU; moving them
    to a device is the caller's job. With ``distributed``, a :class:`DistributedSampler`
    (seeded with ``seed``) shards the data over the ranks of the initialised process group;
    the caller must call ``loader.sampler.set_epoch(epoch)`` each epoch.
    """
    fail_if(batch_size < 1, f"batch_size must be >= 1, got {batch_size}.")
    fail_if(num_workers < 0, f"num_workers must be >= 0, got {num_workers}.")
    sampler = None
    rank = 0
    if distributed:
        dist = torch.distributed
        fail_if(
            not (dist.is_available() and dist.is_initialized()),
            "distributed=True but torch.distributed is not initialised. Launch with torchrun "
            "(or call torch.distributed.init_process_group) before building the loader, or "
            "drop --distributed.",
        )
        rank = dist.get_rank()
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False  # the sampler shuffles
    # Distinct augmentation streams per rank; the sampler keeps the shard order in sync.
    generator = torch.Generator().manual_seed(seed + rank)
    return _SeededLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
