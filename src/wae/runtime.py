"""Host and precision facts that several services need: usable cores, and which autocast.

Each lives here once so that training, evaluation, benchmarking and export agree.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["AMP_DTYPES", "autocast", "is_out_of_memory", "usable_cores"]

# Messages of the allocators when memory runs out: CUDA raises torch.OutOfMemoryError, the
# CPU allocator a plain RuntimeError naming the failed allocation.
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")

# The reduced-precision names a config or option may give, and their torch dtypes.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def usable_cores() -> int:
    """Cores this process may run on (the container's affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def autocast(
    device: torch.device | str, amp: str | bool | None
) -> contextlib.AbstractContextManager:
    """The autocast context for `device`, or a no-op when `amp` is falsy.

    ``amp``: "bf16", "fp16", or True for the device's usual choice (fp16 on CUDA, bf16 on
    the CPU, whose oneDNN kernels have no fast fp16 path). fp16 on the CPU is taken as bf16.
    """
    if not amp:
        return contextlib.nullcontext()
    device = torch.device(device)
    if device.type == "cuda":
        dtype = AMP_DTYPES.get(amp, torch.float16) if isinstance(amp, str) else torch.float16
    else:
        dtype = torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or the error it was raised from) is an allocator running out."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:  # follow `raise ... from e` chains
        seen.add(id(e))
        if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
            return True
        if isinstance(e, RuntimeError) and any(m in str(e).lower() for m in _OOM_MARKERS):
            return True
        e = e.__cause__
    return False
