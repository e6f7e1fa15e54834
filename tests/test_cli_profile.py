"""`wae profile`: the JSON contract and errors."""

from __future__ import annotations

import json

import pytest

from wae.cli import main


def test_profile_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "profile --backbone small_vgg --input-size 28 --in-chans 1 --num-classes 10 --json"
    argv += " --min-run-time 0.05 --rounds 1 --threads 1"
    assert main(argv.split()) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("baseline", "half_res", "wae"):
        entry = doc[key]
        assert entry["macs"] > 0 and entry["params"] > 0 and entry["latency_ms"] > 0
        assert set(entry["parts"]) >= ({"encoder", "heads"} if key == "wae" else {"network"})
    assert doc["mac_ratio"] == pytest.approx(doc["baseline"]["macs"] / doc["wae"]["macs"])
    assert doc["speedup"] == pytest.approx(doc["baseline"]["latency_ms"] / doc["wae"]["latency_ms"])
    assert doc["settings"]["threads"] == 1 and doc["settings"]["input_shape"] == [1, 1, 28, 28]
    assert doc["paper_bound"] == pytest.approx(3.7647, abs=1e-3)


def test_profile_table_without_latency(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "profile --backbone small_vgg --input-size 28 --in-chans 1 --num-classes 10"
    assert main([*argv.split(), "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "GMACs" in out and "MAC ratio" in out and "3.76x" in out


def test_profile_unknown_backbone_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--backbone", "resnet5", "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "Unknown backbone 'resnet5'" in err and "Traceback" not in err


def test_profile_help_describes_and_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["profile", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "half size" in out and "inside WAE" in out  # the description
    assert "examples:" in out and "wae profile --backbone" in out
    words = " ".join(out.split())  # help wraps to the terminal's width
    assert "(default: vgg16)" in words and "(default: 224)" in words


def test_profile_out_of_memory_suggests_smaller(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import wae.cost.baselines as baselines

    def oom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(baselines, "compare", oom)
    argv = "profile --backbone small_vgg --input-size 28 --in-chans 1 --num-classes 10"
    assert main([*argv.split(), "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "smaller input size or batch size" in err and "Traceback" not in err
