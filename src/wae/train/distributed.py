"""Process-group plumbing for torchrun: detect the environment, pick the device, reduce metrics.

``torchrun --nproc_per_node N -m wae train ...`` sets WORLD_SIZE / RANK / LOCAL_RANK (and the
rendezvous address); a plain ``wae train`` has none of them and runs as a single process.
The backend is NCCL on CUDA and gloo otherwise. All ranks must read the same files (a shared
filesystem on several nodes); only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..runtime import check_device

__all__ = ["DistEnv", "device_from_spec", "setup", "teardown"]


@dataclass
class DistEnv:
    """Where this process stands: rank, world size, local rank, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the process group (so we destroy it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the ranks (float64 on the CPU with gloo: exact for counts)."""
        if not self.distributed:
            return t
        t = t.to(self.device) if self.device.type == "cuda" else t
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (e.g. batch-norm running statistics) to every rank.

        DDP broadcasts them at the start of each forward, so after an epoch's last step each
        rank still holds its own update; validation and checkpoints need one model.
        """
        if not self.distributed:
            return
        for b in module.buffers():
            t = b.data if b.device.type == self.device.type else b.data.to(self.device)
            dist.broadcast(t, src=0)
            if t is not b.data:
                b.data.copy_(t)

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank (keeps the ranks in lock step)."""
        if not self.distributed:
            return flag
        return bool(self.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64)) > 0)


def device_from_spec(spec: str, local_rank: int = 0, what: str = "--device") -> torch.device:
    """ "auto" -> cuda:LOCAL_RANK when CUDA is available, else mps, else cpu; "cuda" ->
    cuda:LOCAL_RANK. A misspelt device, or one this machine lacks, raises a WAEError naming
    `what` (see ``wae.runtime.check_device``)."""
    dev = check_device(spec, what)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return dev


def setup(device: str = "auto") -> DistEnv:
    """Read the torchrun environment, pick the device and join the process group if needed.

    A process group someone else initialised (e.g. a notebook) is reused and left alone.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = device_from_spec(device, local, "runtime.device (--device)")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    env = DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
        env.owns_group = True
    elif dist.is_available() and dist.is_initialized():
        env.rank, env.world_size = dist.get_rank(), dist.get_world_size()
    return env


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        env.owns_group = False
