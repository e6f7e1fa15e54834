"""Host and precision facts that several services need: usable cores, and which autocast.

Each lives here once so that training, evaluation, benchmarking and export agree.
"""

from __future__ import annotations

import contextlib
import os
import re

import torch

from .errors import WAEError

__all__ = [
    "AMP_DTYPES",
    "DeviceError",
    "autocast",
    "check_device",
    "is_out_of_memory",
    "usable_cores",
]

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


class DeviceError(WAEError, ValueError):
    """A device that is misspelt or not on this machine."""


_DEVICE = re.compile(r"auto|(cpu|mps|cuda)(:\d+)?")


def check_device(
    spec: str | torch.device, what: str = "device", *, available: bool = True
) -> torch.device:
    """``spec`` ("auto", "cpu", "cuda", "cuda:N", "mps" or a torch.device) as a torch.device.

    "auto" is CUDA when available, else MPS, else the CPU. With ``available`` the device must
    also exist on this machine; without, only the spelling is checked (a config written for a
    GPU machine can still be read on a laptop). Raises :class:`DeviceError` naming ``what``.
    """
    text = str(spec).strip()
    if not _DEVICE.fullmatch(text):
        raise DeviceError(f"{what} must be auto, cpu, cuda, cuda:N or mps, got {str(spec)!r}.")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    dev = torch.device(text)
    if available and dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            have = f"only {n} CUDA device(s)" if n else "no usable CUDA device"
            use = f"cuda:0 to cuda:{n - 1}, or cpu" if n else "cpu (or auto: the best one here)"
            raise DeviceError(f"{what} is {text!r} but this machine has {have}. Use {use}.")
    if available and dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"{what} is 'mps' but MPS is not available here. Use cpu.")
    return dev
