"""A model as it would be deployed, still a module that scores (N, C, H, W) -> (N, K) float32:
cast once to bf16 (no autocast), or exported to ONNX and quantised to int8 (ONNX Runtime).
What `wae eval --precision` evaluates; kept apart from the checkpoint evaluation itself."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import LabeledDataset
from .precision import cast_for_inference

__all__ = ["CastInput", "OrtScores", "bf16_scorer", "int8_scorer"]


def bf16_scorer(scorer: nn.Module) -> nn.Module:
    """`scorer` cast once to bfloat16, fed bf16 inputs; float32 scores out."""
    return CastInput(cast_for_inference(scorer, "bf16"), torch.bfloat16)


class CastInput(nn.Module):
    """`model` fed its input cast to `dtype`; the scores come back float32: (N, C, H, W) ->
    (N, K). Running a model cast once to bf16 without autocast, as it would be deployed."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


class OrtScores(nn.Module):
    """An ONNX Runtime session as a module, (N, C, H, W) -> (N, K) float32 on the CPU."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .export import ort_run

        return ort_run(self.session, x)


def int8_scorer(
    scorer: nn.Module, train_ds: LabeledDataset, n: int, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """`scorer` exported (parity-checked), quantised to int8 by ONNX Runtime on `n` seeded
    images of `train_ds`, as a module; and the result's calibration entry."""
    from .export import check_parity, export_onnx, onnx_metadata, onnx_session
    from .quantize import calibration_images, quantize_onnx_int8

    calib = calibration_images(train_ds, n, seed=seed)
    with tempfile.TemporaryDirectory(prefix="wae-eval-int8-") as tmp:
        fp32 = export_onnx(
            scorer, Path(tmp) / "fp32.onnx", calib.shape[-2:], in_chans=calib.shape[1]
        )
        check_parity(scorer, fp32, calib[:4])  # a faulty export would pass as int8 error
        int8 = quantize_onnx_int8(fp32, Path(tmp) / "int8.onnx", calib)
        session = onnx_session(int8)  # the session holds the graph; the files can go
        quantization = onnx_metadata(int8)["quantization"]
    entry = {
        "images": int(calib.shape[0]),
        "split": "train",
        "seed": seed,
        "method": quantization["calibration"],
        "tool": quantization["tool"],
        "format": quantization["format"],
    }
    return OrtScores(session), {"calibration": entry}
