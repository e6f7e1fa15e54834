"""A thin CLI: every command parses, calls one library function and prints. What a command
decides (bench presets, result names and files, the JSON headline; reproduce's --subset and
output directory; flags turned into config overrides) lives in the library, where a Python
caller gets it too. Nothing here trains or times a model: the expensive calls are stubbed."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

import wae.apps.bench.service as bench_service
from wae.apps import bench
from wae.apps.reproduce.plan import default_output, parse_subset
from wae.cli import CommandHelpFormatter, build_parser, main
from wae.encoders import DEFAULT_ENCODER
from wae.errors import WAEError
from wae.train import load_config
from wae.train.overrides import format_override, parse_override

# --- flags -> config overrides ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024",
        "none",
        "true",
        "1e3",
        "[1, 2]",
        "/data/my images",
        'C:\\data\\"quoted"',
        "tab\there\nnewline\x7f",
        "données ✓ 😀",
        "",
        2024,
        0.01,
        1e-05,
        True,
        False,
        None,
        [0.01, 0.05],
        ["a", "1"],
    ],
)
def test_format_override_reads_back_as_the_value(value: Any) -> None:
    path, got = parse_override(format_override("data.data_dir", value))
    assert path == ["data", "data_dir"]
    assert got == value and type(got) is type(value)


def test_format_override_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(TypeError, match="config override"):
        format_override("data.data_dir", object())
    with pytest.raises(TypeError, match="config override"):
        format_override("eval.noise_vars", [0.01, None])


def test_demo_data_dir_stays_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wae demo --data-dir 2024` names the folder "2024", as `wae train --data-dir 2024`."""
    import wae.cli.demo as cli_demo

    seen: dict[str, Any] = {}

    def fake_run_demo(output: str, **kw: Any) -> dict[str, Any]:
        seen.update(kw)
        return {}

    monkeypatch.setattr(cli_demo, "run_demo", fake_run_demo)
    monkeypatch.setattr(cli_demo, "format_results", lambda results: "table")
    argv = ["demo", "--data-dir", "2024", "--set", "data.subset=600", "-o", "out"]
    assert main(argv) == 0
    assert seen["overrides"][0] == "data.subset=600"  # the user's --set first, as before
    cfg = load_config(seen["recipe"] or "fashion_mnist_baseline", seen["overrides"])
    assert cfg.data.data_dir == "2024" and cfg.data.subset == 600


def test_train_flags_become_overrides_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "-c", "fashion_mnist", "--print-config", "--data-dir", "2024"]
    argv += ["--device", "cpu", "--max-epochs-this-run", "3"]
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["data"]["data_dir"] == "2024"
    assert cfg["runtime"]["device"] == "cpu" and cfg["runtime"]["max_epochs_this_run"] == 3


# --- every command shares the help layout -----------------------------------------------------


def test_every_command_is_built_by_add_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"bench", "profile", "reproduce"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert isinstance(p.formatter_class(prog=name), CommandHelpFormatter), name
        text = p.format_help()
        assert f"examples:\n  wae {name}" in text or "examples:\n  torchrun " in text, name


# --- the bench service ------------------------------------------------------------------------


def _fake_doc(backbones: list[str]) -> dict[str, Any]:
    best = {m: {"backend": "eager", "median_ms": ms} for m, ms in (("full", 4.0), ("wae", 2.0))}
    config = {
        "config": {"backbone": backbones[0], "input_size": 28, "batch_size": 1, "threads": 1},
        "speedup": 2.0,
        "best": best,
        "half_speedup": 1.5,
        "speedup_per_backend": {"eager": 2.0},
        "mac_ratio": {"wae": 3.0},
        "models": {"full": {"eager": best["full"]}, "wae": {"eager": best["wae"]}},
    }
    return {"machine": {"cpu_model": "test"}, "speedup": 2.0, "configs": [config]}


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """run_bench and format_markdown stubbed: the calls run_bench got, and no timing."""
    calls: list[dict[str, Any]] = []

    def fake_run_bench(backbones: list[str], **kw: Any) -> dict[str, Any]:
        calls.append({"backbones": backbones, **kw})
        kw["log"]("timing")
        return _fake_doc(backbones)

    monkeypatch.setattr(bench_service, "run_bench", fake_run_bench)
    monkeypatch.setattr(bench_service, "format_markdown", lambda doc: "| the table |")
    return calls


def test_bench_service_writes_its_results_from_python(
    tmp_path: Path, fake_bench: list[dict[str, Any]]
) -> None:
    lines: list[str] = []
    result = bench.run_benchmark(quick=True, output_dir=tmp_path, name="q", log=lines.append)
    assert result.paths == [tmp_path / "q.md", tmp_path / "q.json"]
    assert (tmp_path / "q.md").read_text() == "| the table |\n"
    assert json.loads((tmp_path / "q.json").read_text()) == result.doc
    assert lines == ["timing", f"wrote {tmp_path / 'q'}.md and .json"]
    (call,) = fake_bench
    quick = bench.QUICK_SETTINGS
    assert call["backbones"] == quick["backbone"] and call["threads"] == quick["threads"]
    assert call["min_run_time"] == quick["min_run_time"] and call["encoder"] == DEFAULT_ENCODER
    head = result.headline()
    assert head["speedup"] == 2.0 and head["backbone"] == quick["backbone"][0]
    assert head["mac_ratio"] == 3.0 and head["configs"] == result.doc["configs"]


def test_bench_service_without_saving_writes_nothing(
    tmp_path: Path, fake_bench: list[dict[str, Any]]
) -> None:
    result = bench.run_benchmark(quick=True, output_dir=tmp_path / "out", save=False)
    assert result.paths == [] and not (tmp_path / "out").exists()
    assert result.markdown == "| the table |"


def test_bench_service_checks_before_timing(
    tmp_path: Path, fake_bench: list[dict[str, Any]]
) -> None:
    (tmp_path / "q.md").mkdir()  # the result file's name is taken by a folder
    with pytest.raises(WAEError, match="is a directory"):
        bench.run_benchmark(quick=True, output_dir=tmp_path, name="q")
    with pytest.raises(WAEError, match="Batch sizes"):
        bench.run_benchmark(quick=True, batch_size=[0], save=False)
    assert fake_bench == []  # nothing was timed


def test_bench_service_parts_times_every_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_bench: list[dict[str, Any]]
) -> None:
    calls: list[tuple[str, int, str]] = []

    def fake_time_parts(backbone: str, *, batch_size: int, threads: str, **kw: Any) -> dict:
        calls.append((backbone, batch_size, threads))
        return {"backbone": backbone}

    monkeypatch.setattr(bench_service, "time_parts", fake_time_parts)
    monkeypatch.setattr(bench_service, "format_parts_markdown", lambda r: f"| {r['backbone']} |")
    result = bench.run_benchmark(
        quick=True, parts=True, batch_size=[1, 2], output_dir=tmp_path, name="q"
    )
    assert calls == [("small_vgg_28", 1, "1"), ("small_vgg_28", 2, "1")] and fake_bench == []
    assert result.paths == [tmp_path / "q-parts.md", tmp_path / "q-parts.json"]
    assert result.doc == {"parts": [{"backbone": "small_vgg_28"}] * 2}
    assert result.headline() == result.doc
    assert (tmp_path / "q-parts.md").read_text() == "| small_vgg_28 |\n| small_vgg_28 |\n"


def test_bench_settings_and_names() -> None:
    s = bench.bench_settings(quick=False, rounds=5, backbone=None)
    assert s["rounds"] == 5 and s["backbone"] == list(bench.DEFAULT_SETTINGS["backbone"])
    s["backbone"].append("x")  # a copy: the preset is untouched
    assert "x" not in bench.DEFAULT_SETTINGS["backbone"]
    with pytest.raises(TypeError, match="Unknown bench setting"):
        bench.bench_settings(batch_sizes=[1])
    assert bench.result_stem("mine", quick=True) == "mine"
    assert bench.result_stem(quick=True, parts=True) == "quick-parts"
    assert re.fullmatch(r"bench-\d{8}-\d{6}", bench.result_stem())
    assert bench.headline({"parts": []}) == {"parts": []}


def test_bench_cli_prints_the_service_s_headline(
    tmp_path: Path, fake_bench: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--quick", "--json", "--output-dir", str(tmp_path), "--name", "q"]
    argv += ["--rounds", "2", "--threads", "all"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == bench.headline(_fake_doc(["small_vgg_28"]))
    assert f"wrote {tmp_path / 'q'}.md and .json" in err
    assert fake_bench[0]["rounds"] == 2 and fake_bench[0]["threads"] == ["all"]
    assert main(["bench", "--quick", "--no-save", "--output-dir", str(tmp_path / "n")]) == 0
    assert capsys.readouterr().out == "| the table |\n" and not (tmp_path / "n").exists()


# --- the reproduce service --------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, want", [(None, None), ("all", "all"), ("1000", 1000), (" 12 ", 12), (600, 600)]
)
def test_parse_subset(given: Any, want: Any) -> None:
    assert parse_subset(given) == want


@pytest.mark.parametrize(
    "given, match",
    [("0", "must be positive, got 0"), ("-3", "must be positive"), ("half", "'half'")],
)
def test_parse_subset_refuses(given: str, match: str) -> None:
    with pytest.raises(WAEError, match=match):
        parse_subset(given)


def test_default_output() -> None:
    assert default_output("fashion-mnist") == "runs/reproduce-fashion-mnist"
    assert default_output("/data/faces/", quick=True) == "runs/reproduce-faces-quick"
    assert default_output("/") == "runs/reproduce-data"


def test_reproduce_cli_hands_the_service_its_choices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import wae.apps.reproduce

    seen = []
    monkeypatch.setattr(wae.apps.reproduce, "run_reproduce", seen.append)
    assert main(["reproduce", "--quick", "--subset", "1000", "--plan"]) == 0
    (opts,) = seen
    assert opts.output == "runs/reproduce-fashion-mnist-quick" and opts.subset == 1000
    assert opts.plan_only and capsys.readouterr().out == ""  # --plan: no report line
    assert main(["reproduce", "--subset", "0"]) == 2
    assert "--subset must be positive, got 0." in capsys.readouterr().err
    assert len(seen) == 1  # refused before the service was called
