"""`wae bench --quick` produces a well-formed table and JSON (no timing assertions), and
optimize_for_inference keeps the outputs within 1e-5 while doing its rewrites."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import wae
from wae.apps.bench import format_parts_markdown, time_parts, wae_parts
from wae.cli import build_parser, main
from wae.models import WAENet
from wae.optimize import FusedConv2d, OptimizeError, WAEInference, optimize_for_inference

QUICK_BACKENDS = ["eager", "channels_last", "optimized", "ort", "ort_optimized"]


def test_quick_bench_json_and_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["bench", "--quick", "--json", "--output-dir", str(tmp_path), "--name", "q"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backbone"] == "small_vgg_28" and doc["batch_size"] == 1 and doc["threads"] == 1
    assert isinstance(doc["speedup"], float) and doc["speedup"] > 0
    assert set(doc["best"]) == {"full", "half", "wae"}
    for model in ("full", "half", "wae"):
        assert doc["best"][model]["backend"] in QUICK_BACKENDS
        per = doc["backends"][model]
        assert set(per) == set(QUICK_BACKENDS)
        for entry in per.values():
            assert entry["status"] == "ok", entry
            assert entry["median_ms"] > 0 and entry["iqr_ms"] >= 0 and entry["n"] >= 1
    best = doc["best"]
    assert doc["speedup"] == pytest.approx(best["full"]["median_ms"] / best["wae"]["median_ms"])
    assert doc["machine"]["cpu_model"] and doc["settings"]["backends"] == QUICK_BACKENDS
    assert len(doc["load_avg_start"]) == 3

    saved = json.loads((tmp_path / "q.json").read_text())
    assert saved["configs"][0]["speedup"] == doc["speedup"]
    md = (tmp_path / "q.md").read_text()
    header = "| model | GMACs | " + " | ".join(QUICK_BACKENDS) + " | best | speed-up (best) |"
    assert header in md and "load average" in md
    rows = [line for line in md.splitlines() if line.startswith(("| full", "| half", "| wae"))]
    assert len(rows) == 3 and all(r.count("|") == header.count("|") + 1 for r in rows)


def test_bench_rejects_unknown_backend(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--quick", "--backends", "tensorrt"])
    assert "invalid choice" in capsys.readouterr().err


def test_time_parts_table() -> None:
    res = time_parts("small_vgg_28", threads=1, min_run_time=0.02, rounds=1, warmup=1)
    assert set(res["parts"]) == {"channels_last", "optimized", "ort", "ort_optimized"}
    for parts in res["parts"].values():
        for key in ("encoder", "I_L network", "I_H network", "heads", "whole", "glue"):
            assert key in parts
        assert parts["whole"]["median_ms"] > 0
    assert sum(res["mac_share"].values()) == pytest.approx(1.0)
    md = format_parts_markdown(res)
    assert "| encoder |" in md and "| layout conversions |" in md and "| whole |" in md


def test_wae_parts_are_the_model_s_own() -> None:
    """The parts time_parts times are WAENet's modules, and together compute its output."""
    model = wae.create_model("wae_small_vgg_28").eval()
    x = torch.rand(2, 1, 28, 28)
    parts = wae_parts(model, x)
    assert list(parts) == ["encoder", "I_L network", "I_H network", "heads", "whole"]
    assert parts["I_L network"][0] is model.low_net and parts["I_H network"][0] is model.high_net
    assert parts["whole"][0] is model
    with torch.no_grad():
        low, high = parts["encoder"][0](x)
        f_low, f_high = parts["I_L network"][0](low), parts["I_H network"][0](high)
        assert torch.equal(parts["heads"][0](f_low, f_high), model(x))
    opt = optimize_for_inference(model)
    assert parts["heads"][1][0].shape == wae_parts(opt, x)["heads"][1][0].shape


def test_bench_writes_under_runs_by_default() -> None:
    args = build_parser().parse_args(["bench", "--quick"])
    assert args.output_dir == Path("runs/bench")


# --- optimize_for_inference ------------------------------------------------------------------


MODELS = {
    "wae": lambda: wae.create_model("wae_small_vgg_28"),
    "full": lambda: wae.create_model("small_vgg_28_full"),
    "half": lambda: wae.create_model("small_vgg_28_half"),
    "wavelet": lambda: WAENet.from_backbone(
        "small_vgg", num_classes=10, in_chans=1, input_size=28, decomposer="wavelet", width=32
    ),
    "low_only": lambda: WAENet.from_backbone(
        "small_vgg", num_classes=10, in_chans=1, input_size=28, use_high=False, width=32
    ),
}


CASES = [(name, None) for name in MODELS] + [("wae", False), ("half", False)]


@pytest.mark.parametrize(("name", "fuse"), CASES)
def test_optimize_keeps_outputs(name: str, fuse: bool | None, randomise_stats) -> None:
    x = torch.rand(3, 1, 28, 28)
    model = randomise_stats(MODELS[name](), x)
    with torch.no_grad():
        ref = model(x)
    opt = optimize_for_inference(model, fuse_mkldnn=fuse, check=x, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in opt.modules())
    with torch.no_grad():
        assert (opt(x) - ref).abs().max() <= 1e-5
        assert (opt(x[:1]) - ref[:1]).abs().max() <= 1e-5  # another batch size re-packs
    if name in ("wae", "wavelet", "low_only"):
        assert isinstance(opt, WAEInference)
    if fuse is None and torch.backends.mkldnn.is_available():
        assert any(isinstance(m, FusedConv2d) for m in opt.modules())
    if fuse is False:
        assert not any(isinstance(m, FusedConv2d) for m in opt.modules())
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    copy.deepcopy(opt)  # packed oneDNN weights must not break copying


def test_fused_residual_block(randomise_stats) -> None:
    """conv -> BN -> (+ identity) -> ReLU, the ResNet bottleneck's tail, becomes one op."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += x
            return torch.relu(out)

    x = torch.randn(2, 8, 9, 9)
    block = randomise_stats(Block(), x)
    opt = optimize_for_inference(block, check=x)
    if torch.backends.mkldnn.is_available():
        fused = [m for m in opt.modules() if isinstance(m, FusedConv2d)]
        assert [(m.add, m.relu) for m in fused] == [(False, True), (True, True)]
    with torch.no_grad():
        assert torch.allclose(opt(x), block(x), atol=1e-5)


def test_optimize_check_raises() -> None:
    x = torch.rand(2, 1, 28, 28)
    model = wae.create_model("small_vgg_28_full")
    with pytest.raises(OptimizeError, match="changed the outputs"):
        optimize_for_inference(model, check=x, atol=-1.0)  # no result can meet this


def test_report_says_what_the_cpu_offers_low_precision() -> None:
    from wae.apps.bench.report import _features_line

    assert "none of AMX" in _features_line({"flags": [], "capability": "AVX2"})
    assert "amx_bf16" in _features_line({"flags": ["amx_bf16"], "capability": "AVX512"})
    assert "not recorded" in _features_line(None)


def test_bench_backends_are_the_service_s() -> None:
    """The backends live in the service layer (wae.cost.backends), where the deploy-speed
    columns of demo, accelerate and reproduce use them; bench's names stay importable."""
    from wae import cost
    from wae.apps import bench
    from wae.apps.bench import backends as bench_backends
    from wae.apps.bench import matrix
    from wae.cost import backends as service

    for name in ("ALL_BACKENDS", "PRECISIONS", "RUNTIME", "BackboneCache", "prepare_backend"):
        assert getattr(bench_backends, name) is getattr(service, name)
    assert bench.BackendUnavailable is cost.BackendUnavailable is service.BackendUnavailable
    assert bench.ALL_BACKENDS == cost.ALL_BACKENDS and "compile" in cost.ALL_BACKENDS
    assert matrix.measure_grouped is service.measure_grouped
    assert set(cost.DEPLOY_BACKENDS) <= set(cost.ALL_BACKENDS)
