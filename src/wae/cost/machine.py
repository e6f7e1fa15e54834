"""The machine and PyTorch build a measurement ran on; recorded beside every number."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from ..runtime import usable_cores

__all__ = ["machine_info"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    # Distinct (physical id, core id) pairs; hyper-threads share a core.
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.strip().split("\n\n"):
        kv = dict(
            (k.strip(), v.strip())
            for k, v in (ln.split(":", 1) for ln in block.splitlines() if ":" in ln)
        )
        if "core id" in kv:
            cores.add((kv.get("physical id", "0"), kv["core id"]))
    return len(cores) or None


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
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
    return info
