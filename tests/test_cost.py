"""Tests for wae.cost: counting conventions, grouping, latency bookkeeping, reports.

Timed tests use a tiny ``min_run_time`` and only assert that values are positive and finite, so
they pass on a slow, noisy 2-core machine.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wae.cost import (
    DEPLOY_BACKENDS,
    OTHER,
    PAPER_BOUND,
    QUICK_DEPLOY_BACKENDS,
    BaselineComparison,
    Latency,
    MeasureError,
    ModelProfile,
    compare,
    compare_baselines,
    compare_batches,
    comparison_to_dict,
    count_ops,
    fastest_of,
    format_table,
    machine_info,
    measure_latency,
    profile,
    resolve_backends,
)
from wae.errors import WAEError

FAST = {"min_run_time": 0.01, "warmup": 1}


class ToyWAE(nn.Module):
    """Small stand-in with the WAE's top-level child names, plus root-level work."""

    def __init__(self) -> None:
        super().__init__()
        self.wae = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.norm_low = nn.BatchNorm2d(3)
        self.norm_high = nn.BatchNorm2d(3)
        self.low_net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.high_net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head_low = nn.Linear(16, 10)
        self.head_fused = nn.Linear(20, 10)
        self.extra = nn.Conv2d(3, 2, 1)  # in no group -> "other"
        # A root-level parameter used by a functional op in forward() -> "other" too.
        self.root_proj = nn.Parameter(torch.randn(10, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.wae(x)
        low, high = self.norm_low(z[:, :3]), self.norm_high(z[:, 3:])
        fl = self.low_net(low).mean((2, 3))
        fh = self.high_net(high).mean((2, 3))
        e = self.extra(high).mean()
        out = self.head_low(fl) + self.head_fused(torch.cat([fl, fh], 1))
        return F.linear(out, self.root_proj) + e


WAE_PARTS = {
    "encoder": ["wae", "norm_low", "norm_high"],
    "I_L network": ["low_net"],
    "I_H network": ["high_net"],
    "heads": ["head_low", "head_fused"],
}


def tiny_convnet(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 10),
    )


# ------------------------------------------------------------------------------ counting


@pytest.mark.parametrize("stride,groups,bias", [(1, 1, False), (2, 2, True), (1, 4, True)])
def test_conv_macs_match_textbook_formula(stride: int, groups: int, bias: bool) -> None:
    n, cin, cout, k, h, w = 2, 8, 12, 3, 17, 15
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=1, groups=groups, bias=bias)
    x = torch.randn(n, cin, h, w)
    hout, wout = conv(x).shape[2:]
    # MACs = outputs * (inputs per group * kernel area); the bias add is not a MAC (not counted).
    expected = n * cout * hout * wout * (cin // groups) * k * k
    ops = count_ops(conv, x)
    assert ops.macs == expected
    assert ops.flops == 2 * expected  # FlopCounterMode counts 2 FLOPs per MAC
    assert ops.params == sum(p.numel() for p in conv.parameters())


def test_linear_macs_match_textbook_formula() -> None:
    lin = nn.Linear(64, 10)
    ops = count_ops(lin, torch.randn(4, 64))
    assert ops.macs == 4 * 64 * 10
    assert ops.flops == 2 * 4 * 64 * 10
    assert ops.params == 64 * 10 + 10


def test_elementwise_ops_not_counted() -> None:
    m = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
    ops = count_ops(m, torch.randn(1, 3, 8, 8))
    assert ops.flops == 0 and ops.macs == 0


def test_vgg16_gmacs() -> None:
    torchvision = pytest.importorskip("torchvision")
    # Built on the meta device: FlopCounterMode only needs shapes, so no weights, no compute.
    with torch.device("meta"):
        model = torchvision.models.vgg16()
        x = torch.empty(1, 3, 224, 224)
    ops = count_ops(model, x)
    assert ops.gmacs == pytest.approx(15.47, rel=0.01)
    assert ops.params == 138_357_544
    assert set(ops.by_child) == {"features", "avgpool", "classifier"}
    assert ops.parts[OTHER].flops == 0


def test_parts_group_sum_to_total_and_other_bucket() -> None:
    model = ToyWAE()
    x = torch.randn(2, 3, 32, 32)
    ops = count_ops(model, x, parts=WAE_PARTS)

    assert list(ops.parts) == [*WAE_PARTS, OTHER]
    assert sum(p.flops for p in ops.parts.values()) == ops.flops
    assert sum(p.params for p in ops.parts.values()) == ops.params
    assert all(p.macs == p.flops / 2 for p in ops.parts.values())

    # "other" holds the ungrouped child plus the root-level F.linear and its parameter.
    other = ops.parts[OTHER]
    assert other.children == ["extra"]
    root_flops = 2 * 2 * 10 * 10  # F.linear(out[2, 10], root_proj[10, 10])
    assert other.flops == ops.by_child["extra"] + root_flops
    assert other.params == ops.params_by_child["extra"] + 100
    assert ops.parts["heads"].children == ["head_low", "head_fused"]
    assert ops.parts["heads"].flops == 2 * 2 * (16 * 10 + 20 * 10)
    assert (
        ops.parts["I_L network"].flops == count_ops(model.low_net, torch.randn(2, 3, 16, 16)).flops
    )


def test_default_parts_one_per_child() -> None:
    model = ToyWAE()
    ops = count_ops(model, torch.randn(1, 3, 16, 16))
    children = [n for n, _ in model.named_children()]
    assert list(ops.parts) == [*children, OTHER]
    for c in children:
        assert ops.parts[c].flops == ops.by_child[c]
    assert sum(p.flops for p in ops.parts.values()) == ops.flops
    assert ops.parts["norm_low"].flops == 0  # BatchNorm is element-wise: not counted


def test_parts_longest_prefix_warning_and_conflict() -> None:
    model = nn.Sequential()
    model.add_module("layer1", nn.Linear(4, 4))
    model.add_module("layer10", nn.Linear(4, 8))
    x = torch.randn(1, 4)
    ops = count_ops(model, x, parts={"a": ["layer1"], "b": ["layer10"]})
    assert ops.parts["a"].children == ["layer1"]
    assert ops.parts["b"].children == ["layer10"]
    with pytest.warns(UserWarning, match="match no child"):
        count_ops(model, x, parts={"a": ["layer"], "typo": ["lyr"]})
    with pytest.raises(ValueError):
        count_ops(model, x, parts={"a": ["layer1"], "b": ["layer1"]})


def test_count_ops_restores_training_mode() -> None:
    model = ToyWAE().train()
    model.low_net.eval()
    count_ops(model, torch.randn(1, 3, 16, 16))
    assert model.training and model.wae.training and not model.low_net.training


# ------------------------------------------------------------------------------ latency


def _assert_sane(lat: Latency) -> None:
    for v in (lat.median_ms, lat.mean_ms, lat.min_ms, lat.max_ms):
        assert v > 0 and math.isfinite(v)
    assert lat.iqr_ms >= 0 and math.isfinite(lat.iqr_ms)
    assert lat.n_measurements >= 1 and lat.runs >= lat.n_measurements


def test_best_memory_format_recorded_and_model_restored() -> None:
    model = tiny_convnet(8).train()
    model[0].to(memory_format=torch.channels_last)  # a caller's own layout must survive
    w = model[0].weight
    ptr, was_cl = w.data_ptr(), w.is_contiguous(memory_format=torch.channels_last)
    lat = measure_latency(model, torch.randn(2, 3, 16, 16), memory_format="best", **FAST)
    _assert_sane(lat)
    assert lat.memory_format in {"contiguous_format", "channels_last"}
    assert set(lat.candidates) == {"contiguous_format", "channels_last"}
    assert lat.median_ms == lat.candidates[lat.memory_format] == min(lat.candidates.values())
    assert lat.batch_size == 2 and lat.dtype == "float32" and lat.device == "cpu"
    assert model[0].weight is w and w.data_ptr() == ptr
    assert w.is_contiguous(memory_format=torch.channels_last) == was_cl
    assert model.training


def test_fixed_memory_format_and_dtype_restored() -> None:
    model = tiny_convnet(4)
    lat = measure_latency(
        model, torch.randn(1, 3, 8, 8), memory_format="channels_last", dtype=torch.bfloat16, **FAST
    )
    _assert_sane(lat)
    assert lat.memory_format == "channels_last" and list(lat.candidates) == ["channels_last"]
    assert lat.dtype == "bfloat16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model[0].weight.is_contiguous()


def test_thread_count_restored() -> None:
    before = torch.get_num_threads()
    lat = measure_latency(tiny_convnet(4), torch.randn(1, 3, 8, 8), threads=1, **FAST)
    assert lat.threads == 1
    assert torch.get_num_threads() == before
    lat = measure_latency(tiny_convnet(4), torch.randn(1, 3, 8, 8), **FAST)
    assert lat.threads == before


# ------------------------------------------------------------------------------ reports


@pytest.fixture(scope="module")
def comparison() -> dict:
    models = {"baseline": tiny_convnet(16), "small": tiny_convnet(4)}
    return compare(
        models,
        (16, 12),
        batch_size=2,
        memory_format="contiguous",
        rounds=2,
        threads=1,
        parts={"small": {"body": ["0", "1", "2"], "head": ["5"]}},
        **FAST,
    )


def test_compare_arithmetic(comparison: dict) -> None:
    profiles = comparison["profiles"]
    ref = profiles["baseline"]
    assert comparison["reference"] == "baseline"
    assert comparison["speedup"]["baseline"] == pytest.approx(1.0)
    assert comparison["mac_ratio"]["baseline"] == pytest.approx(1.0)
    small = profiles["small"]
    assert comparison["speedup"]["small"] == pytest.approx(
        ref.latency.median_ms / small.latency.median_ms
    )
    assert comparison["mac_ratio"]["small"] == pytest.approx(ref.macs / small.macs)
    # Exact count: conv 3->w at 16x12 (x2 batch) plus linear w->10.
    assert ref.macs == 2 * (16 * 16 * 12 * 3 * 9 + 16 * 10)
    assert small.input_shape == [2, 3, 16, 12]
    assert set(small.ops.parts) == {"body", "head", OTHER}
    assert comparison["settings"]["threads"] == 1
    for p in profiles.values():
        _assert_sane(p.latency)
        assert p.latency.rounds == 2 and p.latency.threads == 1
        assert p.machine == comparison["machine"]


def test_compare_without_latency_and_bad_reference() -> None:
    models = {"a": tiny_convnet(4), "b": tiny_convnet(8)}
    res = compare(models, 8, latency=False, reference="a")
    assert res["speedup"] == {"a": None, "b": None}
    assert res["mac_ratio"]["b"] == pytest.approx(
        res["profiles"]["a"].macs / res["profiles"]["b"].macs
    )
    assert "latency (ms)" in format_table(res)
    with pytest.raises(KeyError):
        compare(models, 8, latency=False)  # no "baseline"


def test_format_table_contains_numbers(comparison: dict) -> None:
    table = format_table(comparison)
    machine = comparison["machine"]
    header = table.splitlines()[0]
    assert machine["cpu_model"] in header
    assert "threads: 1" in header and "batch: 2" in header and "float32" in header
    assert torch.__version__ in header
    for name, p in comparison["profiles"].items():
        assert name in table
        assert f"{p.macs / 1e9:.3f}" in table
        assert f"{p.params / 1e6:.3f}" in table
        assert f"{p.latency.median_ms:.3f} ± {p.latency.iqr_ms:.3f}" in table
        assert f"{comparison['speedup'][name]:.2f}x" in table
        assert f"{comparison['mac_ratio'][name]:.2f}x" in table
    assert "body" in table and "head" in table


def test_to_dict_json_serialisable(comparison: dict) -> None:
    text = json.dumps(comparison_to_dict(comparison))
    loaded = json.loads(text)
    assert loaded["profiles"]["small"]["ops"]["macs"] == comparison["profiles"]["small"].macs
    assert format_table(loaded) == format_table(comparison)  # tables from saved JSON too
    p = profile(ToyWAE(), 16, parts=WAE_PARTS, memory_format="best", name="toy", **FAST)
    assert isinstance(p, ModelProfile)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["name"] == "toy" and d["input_shape"] == [1, 3, 16, 16]
    assert d["latency"]["memory_format"] in {"contiguous_format", "channels_last"}
    assert set(d["ops"]["parts"]) == {*WAE_PARTS, OTHER}
    json.dumps(p.ops.to_dict())
    json.dumps(p.latency.to_dict())


def test_profile_without_latency_and_machine_info() -> None:
    p = profile(tiny_convnet(4), (8, 10), batch_size=3, latency=False)
    assert p.latency is None and p.input_shape == [3, 3, 8, 10]
    assert p.ops.input_shapes == [[3, 3, 8, 10]]
    info = machine_info()
    assert info["torch_version"] == torch.__version__
    assert info["threads"] == torch.get_num_threads()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    json.dumps(info)


# ------------------------------------------------------------------------------ printing


def test_profile_prints_as_compact_table() -> None:
    p = profile(ToyWAE(), 16, parts=WAE_PARTS, name="toy", **FAST)
    text = str(p)
    assert repr(p) == text and len(text) < 1000  # not the ~1,500-character dataclass repr
    lines = text.splitlines()
    assert lines[2].split() == [
        "model",
        "GMACs",
        "params",
        "(M)",
        "latency",
        "(ms)",
        "n",
        "mem",
        "format",
    ]
    assert "speed-up" not in text  # one model: no reference to compare against
    assert lines[4].startswith("toy") and f"{p.macs / 1e9:.3f}" in lines[4]
    assert f"{p.latency.median_ms:.3f} ± {p.latency.iqr_ms:.3f}" in lines[4]
    assert all(label in text for label in WAE_PARTS)
    counted = str(profile(tiny_convnet(4), 8, latency=False))
    assert "model " in counted and "dtype" not in counted.splitlines()[0]


def test_comparison_is_a_dict_that_prints_as_its_table(comparison: dict) -> None:
    assert isinstance(comparison, dict)
    assert str(comparison) == repr(comparison) == format_table(comparison)
    assert comparison.to_dict() == comparison_to_dict(comparison)


def test_machine_info_counts_usable_cores_once() -> None:
    from wae.runtime import usable_cores

    assert machine_info()["usable_cores"] == usable_cores()


# ------------------------------------------------------------------------------ baselines


@pytest.fixture(scope="module")
def small_wae() -> torch.nn.Module:
    from wae import WAENet

    return WAENet.from_backbone("small_vgg", num_classes=10, in_chans=1, input_size=28)


def test_profile_with_baselines_compares_the_trio(small_wae: torch.nn.Module) -> None:
    res = profile(small_wae, 28, baselines=True, latency=False)
    assert isinstance(res, BaselineComparison) and res["backbone"] == "small_vgg"
    assert list(res["profiles"]) == ["baseline", "half_res", "wae"]
    assert res["reference"] == "baseline" and res["settings"]["input_shape"] == [1, 1, 28, 28]
    # The caller's own model is the "wae" entry; the two baselines follow its spec.
    ref = compare_baselines("small_vgg", 28, num_classes=10, in_chans=1, latency=False)
    for name in ("baseline", "half_res", "wae"):
        assert res["profiles"][name].macs == ref["profiles"][name].macs
        assert res["profiles"][name].params == ref["profiles"][name].params
    assert res["mac_ratio"]["wae"] == pytest.approx(
        res["profiles"]["baseline"].macs / res["profiles"]["wae"].macs
    )
    text = str(res)
    assert text.startswith(format_table(res)) and text.endswith(res.summary())
    assert f"{PAPER_BOUND:.2f}x" in text and "not measured" in text
    doc = json.loads(json.dumps(res.to_report()))
    assert list(doc)[:3] == ["baseline", "half_res", "wae"] and doc["backbone"] == "small_vgg"


def test_baselines_need_a_backbone_name() -> None:
    with pytest.raises(WAEError, match="backbone"):
        profile(tiny_convnet(4), 16, baselines=True, latency=False)


def test_out_of_memory_advises_a_smaller_input(
    monkeypatch: pytest.MonkeyPatch, small_wae: torch.nn.Module
) -> None:
    import wae.cost.baselines as baselines
    from wae.models import BackboneError

    def oom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(baselines, "compare", oom)
    with pytest.raises(WAEError, match="smaller input size or batch size") as info:
        compare_baselines(small_wae, 28, latency=False)
    assert "larger" not in str(info.value)

    def probe_oom(*args: object, **kwargs: object) -> None:
        # WAENet's shape probe wraps the allocator's error in a BackboneError.
        try:
            oom()
        except RuntimeError as e:
            raise BackboneError("The backbone cannot run ... Use a larger input_size") from e

    monkeypatch.setattr(baselines, "_build", probe_oom)
    with pytest.raises(WAEError, match="smaller input size") as info:
        compare_baselines("small_vgg", 4000, latency=False)
    assert "larger" not in str(info.value)
    monkeypatch.setattr(baselines, "_build", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # anything else passes through untouched
        compare_baselines("small_vgg", 28, latency=False)


def test_cpu_features_lists_only_low_precision_flags_the_cpu_has() -> None:
    from wae.cost import LOW_PRECISION_FLAGS, cpu_features

    feats = cpu_features()
    assert set(feats["flags"]) <= set(LOW_PRECISION_FLAGS)
    assert isinstance(feats["capability"], str) and feats["capability"]
    assert machine_info()["cpu_features"] == feats
    try:
        with open("/proc/cpuinfo") as f:
            has_amx = " amx_bf16" in f.read()
    except OSError:
        return
    assert ("amx_bf16" in feats["flags"]) == has_amx


# ------------------------------------------------------------------------------ deploy backends


class NoExport(nn.Module):
    """A network the ONNX exporter cannot trace: every ONNX Runtime backend fails on it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("not exportable")
        return self.conv(x).mean((2, 3))


DEPLOY_FAST = {"min_run_time": 0.01, "warmup": 1, "rounds": 1, "threads": 1}


@pytest.fixture(scope="module")
def by_batch() -> dict:
    models = {"baseline": tiny_convnet(8), "small": tiny_convnet(4), "odd": NoExport()}
    return compare_batches(
        models,
        12,
        batches=(4, 1, 4),
        memory_format="contiguous",
        backends=["eager", "optimized", "ort"],
        **DEPLOY_FAST,
    )


def test_compare_batches_times_both_batches_on_every_backend(by_batch: dict) -> None:
    assert list(by_batch) == [4, 1]  # the repeated 4 timed once
    for b, res in by_batch.items():
        assert res["settings"]["input_shape"][0] == b
        assert res["settings"]["backends"] == ["optimized", "ort"]
        for name in ("baseline", "small"):
            per = res["backends"][name]
            assert list(per) == ["eager", "optimized", "ort"]
            assert all(e["status"] == "ok" and e["median_ms"] > 0 for e in per.values()), per
            assert per["eager"]["median_ms"] == res["profiles"][name].latency.median_ms
            fastest = res["fastest"][name]
            assert fastest == fastest_of(per)
            assert fastest["median_ms"] == min(e["median_ms"] for e in per.values())
            assert per[fastest["backend"]]["median_ms"] == fastest["median_ms"]
        ref, small = res["fastest"]["baseline"], res["fastest"]["small"]
        assert res["speedup_fastest"]["baseline"] == pytest.approx(1.0)
        assert res["speedup_fastest"]["small"] == pytest.approx(
            ref["median_ms"] / small["median_ms"]
        )
        json.dumps(comparison_to_dict(res))  # still JSON-ready


def test_a_backend_that_fails_is_reported_not_raised(by_batch: dict) -> None:
    for res in by_batch.values():
        per = res["backends"]["odd"]
        assert per["ort"]["status"] == "unavailable"
        assert "not exportable" in per["ort"]["error"]
        assert per["eager"]["status"] == "ok" and per["optimized"]["status"] == "ok"
        assert res["fastest"]["odd"]["backend"] in ("eager", "optimized")


def test_compare_batches_logs_unavailable_backends_and_eager_only_times_none() -> None:
    lines: list[str] = []
    models = {"baseline": tiny_convnet(4), "odd": NoExport()}
    res = compare_batches(
        models, 8, batches=(2,), backends=["ort"], log=lines.append, **DEPLOY_FAST
    )
    assert res[2]["backends"]["odd"]["ort"]["status"] == "unavailable"
    assert any("odd on ort" in line and "unavailable" in line for line in lines)
    eager = compare_batches(models, 8, batches=(1,), backends=["eager"], **DEPLOY_FAST)[1]
    assert eager["settings"]["backends"] == []
    assert {f["backend"] for f in eager["fastest"].values()} == {"eager"}
    counted = compare_batches(models, 8, batches=(1,), latency=False)[1]
    assert counted["fastest"] == {"baseline": None, "odd": None}
    assert counted["speedup_fastest"] == {"baseline": None, "odd": None}


def test_backends_are_checked_before_anything_is_timed() -> None:
    assert resolve_backends(None) == DEPLOY_BACKENDS and "compile" not in DEPLOY_BACKENDS
    assert resolve_backends(None, quick=True) == QUICK_DEPLOY_BACKENDS
    assert resolve_backends(["eager"]) == ()
    assert resolve_backends(["ort", "eager", "ort"]) == ("ort",)
    for bad in (["tensorrt"], [], ["ort", 3]):
        with pytest.raises(MeasureError, match="--backends"):
            resolve_backends(bad)
    models = {"baseline": tiny_convnet(4)}
    with pytest.raises(MeasureError, match="--backends"):
        compare_batches(models, 8, backends=["tensorrt"])
    with pytest.raises(MeasureError, match="batch"):
        compare_batches(models, 8, batches=(0,))
