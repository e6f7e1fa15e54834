"""Inference precisions: their names, casting a model once, and what the CPU makes of them.

Inference in reduced precision casts the weights **once** (``model.to(torch.bfloat16)``) and
feeds inputs of that dtype: no autocast, which re-casts every weight on every call (measured
slower than float32 for VGG16 at batch 1 on CPU). Training keeps float32 master weights under
autocast instead (:func:`wae.runtime.autocast`). int8 is post-training static quantization of
the exported graph (:mod:`wae.quantize`), so it has no PyTorch module form here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .errors import WAEError
from .runtime import AMP_DTYPES

__all__ = [
    "FLOAT_DTYPES",
    "INFERENCE_PRECISIONS",
    "PrecisionError",
    "cast_for_inference",
    "check_precisions",
    "cpu_precision_note",
]

#: Every inference precision wae knows, in the order reports list them.
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: The floating-point ones and their dtypes (the reduced ones are autocast's, one table).
FLOAT_DTYPES = {"fp32": torch.float32, **AMP_DTYPES}


class PrecisionError(WAEError, ValueError):
    """A precision that is misspelt or that this device cannot run."""


def check_precisions(precisions: Sequence[str], device: torch.device | str = "cpu") -> list[str]:
    """`precisions` deduplicated, fp32 first (always there: the reference of every speed-up).

    fp16 is refused on the CPU (oneDNN has no fast fp16 path: use bf16) and int8 off it
    (wae's int8 runs through ONNX Runtime's and OpenVINO's CPU kernels).
    """
    unknown = [p for p in precisions if p not in INFERENCE_PRECISIONS]
    if unknown or not precisions:
        what = f"Unknown precision(s) {unknown}" if unknown else "No precision given"
        raise PrecisionError(f"{what}; choose from {', '.join(INFERENCE_PRECISIONS)}.")
    kind = torch.device(device).type
    if kind == "cpu" and "fp16" in precisions:
        raise PrecisionError(
            "fp16 is a GPU precision: the CPU's oneDNN kernels have no fast fp16 path. On the "
            "CPU use bf16 (fast where the CPU has AMX or AVX-512 BF16) or int8."
        )
    if kind != "cpu" and "int8" in precisions:
        raise PrecisionError(
            f"int8 runs on the CPU only (ONNX Runtime and OpenVINO CPU kernels), not on "
            f"{kind}. Drop int8, or benchmark it with --device cpu."
        )
    return ["fp32"] + [p for p in INFERENCE_PRECISIONS if p in precisions and p != "fp32"]


def cast_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """A copy of `model` in eval mode with every floating-point parameter and buffer cast once
    to `precision`'s dtype (fp32 returns `model` itself). Feed it inputs of that dtype."""
    if precision not in FLOAT_DTYPES:
        raise PrecisionError(
            f"cast_for_inference takes {', '.join(FLOAT_DTYPES)}, not {precision!r}."
        )
    if precision == "fp32":
        return model
    return copy.deepcopy(model).eval().to(FLOAT_DTYPES[precision])


def cpu_precision_note(precision: str, features: dict | None = None) -> str:
    """Why `precision` may be slow on this CPU ("" when its fast instructions are present).

    `features`: :func:`wae.cost.cpu_features`'s result (read here when not given).
    """
    from .host import runs_fast

    if precision not in ("bf16", "int8") or runs_fast(precision, features):
        return ""
    if precision == "bf16":
        return (
            "this CPU has neither AMX nor AVX-512 BF16: bf16 is converted to and from float32 "
            "around float32 arithmetic, so it is slower than fp32 here"
        )
    return (
        "this CPU has neither AVX-512 VNNI nor AMX-INT8: int8 products run on plain "
        "AVX2/AVX-512 instructions, so the gain over fp32 is small here"
    )
