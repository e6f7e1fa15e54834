"""wae.runtime's precision choices: resolve_precision (runtime.precision -> what trains) and
autocast, on faked CPU flags and GPU capabilities; no training."""

from __future__ import annotations

import typing

import pytest
import torch

import wae.cost
import wae.host
from wae.errors import WAEError
from wae.runtime import (
    PRECISIONS_TRAIN,
    DeviceError,
    autocast,
    describe_precision,
    resolve_precision,
)
from wae.train.schema import RuntimeConfig

CPU = torch.device("cpu")


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    """``cpu_flags(*flags)``: make wae.host.cpu_features (what wae.host.runs_fast
    reads) report these low-precision flags."""

    def fake(*flags: str) -> None:
        monkeypatch.setattr(
            wae.host,
            "cpu_features",
            lambda: {"flags": list(flags), "capability": "AVX512"},
        )

    return fake


@pytest.mark.parametrize("flags", [("amx_bf16", "amx_tile"), ("avx512_bf16", "avx512f")])
def test_auto_is_bf16_on_a_cpu_with_fast_bf16(cpu_flags, flags):
    cpu_flags(*flags)
    assert resolve_precision("auto", CPU) == ("bf16", None)
    assert resolve_precision("bf16", CPU) == ("bf16", None)


def test_auto_is_fp32_with_a_note_on_a_cpu_without(cpu_flags):
    cpu_flags("avx512f", "avx512_vnni")  # AVX-512 without its BF16 extension is not enough
    used, note = resolve_precision("auto", CPU)
    assert used == "fp32"
    assert "no AMX or AVX-512 BF16" in note and "slower than fp32" in note and "fp32" in note


def test_explicit_bf16_on_a_slow_cpu_runs_with_a_note(cpu_flags):
    cpu_flags()
    used, note = resolve_precision("bf16", CPU)
    assert used == "bf16" and "slower than fp32" in note


def test_fp32_needs_no_cpu_facts(monkeypatch):
    monkeypatch.setattr(wae.host, "cpu_features", lambda: pytest.fail("read the CPU flags"))
    assert resolve_precision("fp32", CPU) == ("fp32", None)
    assert resolve_precision("fp32", "cuda") == ("fp32", None)


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_fp16_off_cuda_is_refused(cpu_flags, device):
    cpu_flags("amx_bf16")
    with pytest.raises(DeviceError) as e:
        resolve_precision("fp16", device)
    assert isinstance(e.value, WAEError) and isinstance(e.value, ValueError)
    msg = str(e.value)
    assert 'runtime.precision = "fp16" needs CUDA' in msg and '"bf16"' in msg and "\n" not in msg
    if device == "cpu":
        assert "AMX or AVX-512 BF16" in msg


def test_mps_auto_is_fp32():
    used, note = resolve_precision("auto", "mps")
    assert used == "fp32" and note


def test_cuda_auto_follows_the_gpus_bf16(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", cuda) == ("bf16", None)
    assert resolve_precision("fp16", cuda) == ("fp16", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", cuda) == ("fp16", None)
    with pytest.raises(DeviceError, match="needs a GPU with bf16"):
        resolve_precision("bf16", cuda)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("fp8", CPU)


def test_the_schema_and_runtime_list_the_same_precisions():
    assert typing.get_args(typing.get_type_hints(RuntimeConfig)["precision"]) == PRECISIONS_TRAIN


@pytest.mark.parametrize("amp", [None, False, "fp32"])
def test_autocast_off(amp):
    with autocast(CPU, amp):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("amp", ["bf16", True])  # True: the CPU's usual choice, bf16
def test_autocast_bf16_on_cpu(amp):
    with autocast(CPU, amp):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_autocast_fp16_on_cpu_is_refused_not_turned_into_bf16():
    with pytest.raises(DeviceError, match="needs CUDA"):
        autocast(CPU, "fp16")


def test_describe_precision():
    fell_back = {
        "precision": "fp32",
        "precision_requested": "auto",
        "precision_note": "this CPU has no AMX or AVX-512 BF16, so ... training in fp32",
    }
    text = describe_precision({"a": fell_back, "b": dict(fell_back)})
    assert text.startswith('Training precision: fp32 (runtime.precision = "auto"): this CPU')
    assert text.count("this CPU") == 1 and " for " not in text and "float32" in text
    bf16 = {"precision": "bf16", "precision_requested": "bf16", "precision_note": None}
    mixed = describe_precision({"a": bf16, "b": fell_back, "old": {}})
    assert "bf16 autocast (float32 master weights) for a" in mixed
    assert "fp32 for b" in mixed and "not recorded for old" in mixed
