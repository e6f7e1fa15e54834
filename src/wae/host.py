"""What this machine offers the process: usable cores, the CPU's reduced-precision
instructions, and whether an error is an allocator running out of memory.

Core facts (nothing here imports the rest of `wae`), so that models, runtime and cost ask
one module: :mod:`wae.runtime` and :mod:`wae.cost` re-export them under their old names.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

import torch

__all__ = [
    "FAST_PRECISION_FLAGS",
    "LOW_PRECISION_FLAGS",
    "cpu_features",
    "cpu_model",
    "is_out_of_memory",
    "physical_cores",
    "runs_fast",
    "usable_cores",
]

#: The CPU flags that decide how fast bf16 and int8 convolutions run through oneDNN: AMX
#: tiles, AVX-512 BF16 and VNNI dot products (without them bf16 is emulated, int8 is slower).
LOW_PRECISION_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f")
#: The flags any one of which makes a reduced precision native on the CPU (oneDNN, OpenVINO).
FAST_PRECISION_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "int8": ("amx_int8", "avx512_vnni")}

# Messages of the allocators when memory runs out: CUDA raises torch.OutOfMemoryError, the
# CPU allocator a plain RuntimeError naming the failed allocation.
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def usable_cores() -> int:
    """Cores this process may run on (the container's affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo's text, read once ("" where it does not exist: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name ("unknown" where neither /proc/cpuinfo nor platform says)."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Physical cores of the machine (None where /proc/cpuinfo does not say)."""
    # Distinct (physical id, core id) pairs; hyper-threads share a core.
    cores = set()
    for block in _cpuinfo().strip().split("\n\n"):
        kv = dict(
            (k.strip(), v.strip())
            for k, v in (ln.split(":", 1) for ln in block.splitlines() if ":" in ln)
        )
        if "core id" in kv:
            cores.add((kv.get("physical id", "0"), kv["core id"]))
    return len(cores) or None


def cpu_features() -> dict[str, Any]:
    """``{"flags": the present ones of LOW_PRECISION_FLAGS, "capability": the ISA PyTorch's
    CPU kernels dispatch to (e.g. "AVX512", "AVX2")}``; flags empty where /proc/cpuinfo is
    not readable (not Linux)."""
    present = (
        ln.split(":", 1)[1].split() for ln in _cpuinfo().splitlines() if ln.startswith("flags")
    )
    flags = set(next(present, []))  # the first CPU's flags (every core lists the same)
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return {"flags": [f for f in LOW_PRECISION_FLAGS if f in flags], "capability": capability}


def runs_fast(precision: str, features: dict[str, Any] | None = None) -> bool:
    """Whether this CPU has native instructions for `precision` ("bf16" or "int8"; fp32 is
    always native). `features`: :func:`cpu_features`'s result, read when not given."""
    if precision not in FAST_PRECISION_FLAGS:
        return precision == "fp32"
    flags = set((features if features is not None else cpu_features()).get("flags", []))
    return bool(flags & set(FAST_PRECISION_FLAGS[precision]))


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
