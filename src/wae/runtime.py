"""Device and precision choices that several services need: which autocast, which training
precision this device runs well, and which device a spelling names.

Each lives here once so that training, evaluation, benchmarking and export agree. The host's
facts (usable cores, out-of-memory errors) live in the core module :mod:`wae.host` and are
re-exported here for the services that import them from this module.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

import torch

from .errors import WAEError
from .host import is_out_of_memory, runs_fast, usable_cores

__all__ = [
    "AMP_DTYPES",
    "PRECISIONS_TRAIN",
    "DeviceError",
    "autocast",
    "check_device",
    "describe_precision",
    "is_out_of_memory",
    "resolve_precision",
    "usable_cores",
]

# The reduced-precision names a config or option may give, and their torch dtypes.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# runtime.precision's values (wae.train.schema.RuntimeConfig spells the same as a Literal).
PRECISIONS_TRAIN = ("auto", "fp32", "bf16", "fp16")
_NO_FAST_BF16 = "this CPU has no AMX or AVX-512 BF16"


def autocast(
    device: torch.device | str, amp: str | bool | None
) -> contextlib.AbstractContextManager:
    """The autocast context for `device`, or a no-op for None, False or "fp32".

    ``amp``: "bf16", "fp16", or True for the device's usual choice (fp16 on CUDA, bf16
    elsewhere: the CPU's oneDNN kernels have no fast fp16 path). "fp16" off CUDA raises
    :class:`DeviceError`.
    """
    if not amp or amp == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    if amp is True:
        amp = "fp16" if device.type == "cuda" else "bf16"
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of fp32, {', '.join(AMP_DTYPES)} or a bool, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise DeviceError(_no_fp16("fp16 autocast", device))
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def _no_fp16(what: str, device: torch.device) -> str:
    """The refusal of fp16 off CUDA (the CPU's oneDNN kernels have no fast fp16 path)."""
    if device.type == "cpu":
        return (
            f'{what} needs CUDA; on the CPU use "bf16" (fast where the CPU has AMX or AVX-512 '
            f'BF16) or "fp32".'
        )
    return f'{what} needs CUDA; on {device.type} use "bf16" or "fp32".'


def resolve_precision(requested: str, device: torch.device | str) -> tuple[str, str | None]:
    """(the training precision used on `device`: "fp32", "bf16" or "fp16", a note or None)
    for ``runtime.precision`` = `requested` (one of :data:`PRECISIONS_TRAIN`).

    "auto" is bf16 on a CUDA GPU that supports it (else fp16), bf16 on a CPU with AMX-BF16 or
    AVX-512 BF16, else fp32 (the note says why); fp32 on MPS. An explicit "bf16" is kept on a
    CPU without those instructions, with a note that it is slower than fp32 there. "fp16" off
    CUDA, and "bf16" on a GPU without bf16, raise :class:`DeviceError`.
    """
    if requested not in PRECISIONS_TRAIN:
        raise ValueError(f"precision must be one of {PRECISIONS_TRAIN}, got {requested!r}")
    device = torch.device(device)
    if requested == "fp32":
        return "fp32", None
    if device.type == "cuda":
        return _cuda_precision(requested)
    if requested == "fp16":
        raise DeviceError(_no_fp16('runtime.precision = "fp16"', device))
    if device.type != "cpu":  # MPS: wae does not autocast there unless asked to
        if requested == "auto":
            return "fp32", f"on {device.type}, auto trains in fp32"
        return requested, None
    # Without AMX or AVX-512 BF16, oneDNN converts bf16 to and from float32 around float32
    # arithmetic: slower than plain fp32.
    if runs_fast("bf16"):
        return "bf16", None
    if requested == "auto":
        return "fp32", f"{_NO_FAST_BF16}, so bf16 would be slower than fp32: training in fp32"
    return "bf16", f"{_NO_FAST_BF16}, so bf16 is slower than fp32 here: training in bf16 as asked"


def _cuda_precision(requested: str) -> tuple[str, str | None]:
    """resolve_precision on CUDA: bf16 where the GPU has it, fp16 otherwise."""
    # Native bf16 only (Ampere or newer): emulated bf16 is slower than fp16 autocast.
    has_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return ("bf16" if has_bf16 else "fp16"), None
    if requested == "bf16" and not has_bf16:
        raise DeviceError(
            'runtime.precision = "bf16" needs a GPU with bf16 (Ampere or newer), and this one '
            'has none: use "fp16" (or "auto", which picks it here) or "fp32".'
        )
    return requested, None


def describe_precision(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence for a report on the training precision of `runs` ({name: the run's
    results.json}): the precision each used, what was asked, and the notes (why fp32)."""
    words = {
        "fp32": "fp32",
        "bf16": "bf16 autocast (float32 master weights)",
        "fp16": "fp16 autocast (float32 master weights)",
    }
    groups: dict[str, list[str]] = {}
    for name, r in runs.items():  # runs trained before wae recorded it have no "precision"
        groups.setdefault(r.get("precision") or "not recorded", []).append(name)
    parts = [
        words.get(p, p) + (f" for {', '.join(names)}" if len(groups) > 1 else "")
        for p, names in groups.items()
    ]
    asked = sorted(
        {r["precision_requested"] for r in runs.values() if r.get("precision_requested")}
    )
    notes = list(
        dict.fromkeys(r["precision_note"] for r in runs.values() if r.get("precision_note"))
    )
    text = "Training precision: " + "; ".join(parts)
    if asked:
        text += " (runtime.precision = " + " / ".join(f'"{a}"' for a in asked) + ")"
    if notes:
        text += ": " + "; ".join(notes)
    return text + ". Test accuracies are computed in float32."


class DeviceError(WAEError, ValueError):
    """A device that is misspelt or not on this machine, or a precision it cannot train in."""


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
