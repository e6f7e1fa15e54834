"""wae.precision: which precisions a device takes (fp32 always first), casting a model once
for reduced-precision inference, and the note on what this CPU makes of bf16 and int8.

The bench's use of them (`wae bench --precision`) is in test_bench_precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wae import host
from wae.errors import WAEError
from wae.precision import (
    FLOAT_DTYPES,
    INFERENCE_PRECISIONS,
    PrecisionError,
    cast_for_inference,
    check_precisions,
    cpu_precision_note,
)


def test_the_precision_tables() -> None:
    assert INFERENCE_PRECISIONS == ("fp32", "bf16", "fp16", "int8")
    assert FLOAT_DTYPES == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    assert issubclass(PrecisionError, WAEError) and issubclass(PrecisionError, ValueError)


@pytest.mark.parametrize(
    ("asked", "device", "expected"),
    [
        (["int8"], "cpu", ["fp32", "int8"]),  # fp32 added: the reference of every speed-up
        (["int8", "fp32", "bf16", "int8"], "cpu", ["fp32", "bf16", "int8"]),  # ordered, once
        (["fp32"], "cpu", ["fp32"]),
        (["fp16", "bf16"], "cuda", ["fp32", "bf16", "fp16"]),
        (["fp16"], torch.device("cuda", 1), ["fp32", "fp16"]),
    ],
)
def test_check_precisions_orders_and_adds_fp32(asked, device, expected) -> None:
    assert check_precisions(asked, device) == expected


@pytest.mark.parametrize(
    ("asked", "device", "match"),
    [
        ([], "cpu", "No precision given"),
        (["fp8", "int4"], "cpu", r"Unknown precision\(s\) \['fp8', 'int4'\]"),
        (["FP16"], "cpu", "Unknown precision"),  # names are exact
        (["fp16"], "cpu", "fp16 is a GPU precision"),
        (["bf16", "int8"], "cuda:0", "int8 runs on the CPU only .* not on cuda"),
        (["int8"], "mps", "not on mps"),
    ],
)
def test_check_precisions_refuses(asked, device, match) -> None:
    with pytest.raises(PrecisionError, match=match):
        check_precisions(asked, device)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cast_for_inference_casts_parameters_and_buffers(precision: str) -> None:
    model = _net().train()
    low = cast_for_inference(model, precision)
    dtype = FLOAT_DTYPES[precision]
    assert low is not model and not low.training and model.training  # a copy, in eval mode
    bn = low[1]
    assert bn.weight.dtype == bn.running_mean.dtype == bn.running_var.dtype == dtype
    assert bn.num_batches_tracked.dtype == torch.int64  # integer buffers stay as they are
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.rand(2, 1, 6, 6)
    with torch.no_grad():
        ref = model.eval()(x)
        got = low(x.to(dtype))
    assert got.dtype == dtype
    assert torch.allclose(got.float(), ref, atol=0.05, rtol=0.05)


def test_cast_for_inference_refuses_int8_and_returns_fp32_as_is() -> None:
    model = _net()
    assert cast_for_inference(model, "fp32") is model
    with pytest.raises(PrecisionError, match="takes fp32, bf16, fp16, not 'int8'"):
        cast_for_inference(model, "int8")


def test_cpu_precision_note_follows_the_flags() -> None:
    bare = {"flags": [], "capability": "AVX2"}
    assert "slower than fp32" in cpu_precision_note("bf16", bare)
    assert "gain over fp32 is small" in cpu_precision_note("int8", bare)
    # AVX-512 alone makes neither native; each precision has its own instructions.
    avx512 = {"flags": ["avx512f"]}
    assert cpu_precision_note("bf16", avx512) and cpu_precision_note("int8", avx512)
    assert cpu_precision_note("bf16", {"flags": ["avx512_bf16"]}) == ""
    assert cpu_precision_note("int8", {"flags": ["avx512_bf16"]}) != ""
    assert cpu_precision_note("int8", {"flags": ["amx_int8"]}) == ""
    for precision in ("fp32", "fp16"):
        assert cpu_precision_note(precision, bare) == ""


def test_cpu_precision_note_reads_this_cpu_when_not_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "cpu_features", lambda: {"flags": ["amx_bf16"], "capability": "x"})
    assert cpu_precision_note("bf16") == ""
    assert "VNNI" in cpu_precision_note("int8")
    monkeypatch.setattr(host, "cpu_features", lambda: {"flags": [], "capability": "x"})
    assert "neither AMX nor AVX-512 BF16" in cpu_precision_note("bf16")
