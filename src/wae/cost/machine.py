"""The machine and PyTorch build a measurement ran on; recorded beside every number.

The CPU facts themselves live in :mod:`wae.host` (models and runtime need them too); they are
re-exported here, where measurements have always found them.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from ..host import (
    FAST_PRECISION_FLAGS,
    LOW_PRECISION_FLAGS,
    cpu_features,
    cpu_model,
    physical_cores,
    runs_fast,
    usable_cores,
)

__all__ = [
    "FAST_PRECISION_FLAGS",
    "LOW_PRECISION_FLAGS",
    "cpu_features",
    "machine_info",
    "runs_fast",
]


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Describe the machine and PyTorch build; included in every profile and table header.

    ``threads`` is the intra-op thread count used for the measurement (default: the current
    ``torch.get_num_threads()``).
    """
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
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
