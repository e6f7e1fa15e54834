"""The machine and PyTorch build a measurement ran on; recorded beside every number."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

import torch

from ..runtime import usable_cores

__all__ = [
    "FAST_PRECISION_FLAGS",
    "LOW_PRECISION_FLAGS",
    "cpu_features",
    "machine_info",
    "runs_fast",
]

#: The CPU flags that decide how fast bf16 and int8 convolutions run through oneDNN: AMX
#: tiles, AVX-512 BF16 and VNNI dot products (without them bf16 is emulated, int8 is slower).
LOW_PRECISION_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f")
#: The flags any one of which makes a reduced precision native on the CPU (oneDNN, OpenVINO).
FAST_PRECISION_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "int8": ("amx_int8", "avx512_vnni")}


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo's text, read once ("" where it does not exist: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
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


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Describe the machine and PyTorch build; included in every profile and table header.

    ``threads`` is the intra-op thread count used for the measurement (default: the current
    ``torch.get_num_threads()``).
    """
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable_cores(),  # what a container actually lets us use
        "threads": int(threads) if threads is not None else torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cpu_features": cpu_features(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
    return info
