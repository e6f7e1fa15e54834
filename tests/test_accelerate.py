"""`wae accelerate` and what it stands on: distillation in the engine, starting a student from a
trained network (model.init), backbones named in recipes, the pay-off stop."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_clean_error, tree_digest
from wae.apps.accelerate import AccelerateError, check_payoff, student_configs
from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.models import PlainNet
from wae.train import ConfigError, load_config, run_training

needs_fmnist = pytest.mark.skipif(
    not Path(DEFAULT_FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed"
)
TINY_DATA = [
    "data.subset=600",
    "data.val_subset=200",
    "eval.subset=300",
    "eval.noise_vars=[]",
    "runtime.progress=off",
    "runtime.verbose=false",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, one_thread) -> Path:
    """A finished tiny full-resolution SmallVGG run on Fashion-MNIST (width 16)."""
    if not Path(DEFAULT_FASHION_MNIST_DIR).is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    out = tmp_path_factory.mktemp("teacher") / "full"
    over = [*TINY_DATA, "model.kwargs.width=16", "stages.1.epochs=1"]
    run_training(
        "fashion_mnist_baseline", out, overrides=[*over, "stages.1.schedule.warmup_epochs=0"]
    )
    return out / "final"


# --- configuration ----------------------------------------------------------------------------


def test_distillation_needs_a_teacher_and_a_teacher_needs_distillation() -> None:
    with pytest.raises(ConfigError, match="teacher.checkpoint"):
        load_config("fashion_mnist", ["stages.2.losses={classification=0.5, distillation=0.5}"])
    with pytest.raises(ConfigError, match="no stage has a distillation loss"):
        load_config("fashion_mnist", ["teacher.checkpoint=runs/x/final"])
    with pytest.raises(ConfigError, match="temperature"):
        load_config("fashion_mnist", ["teacher.temperature=0"])


def test_recipes_name_any_backbone_with_its_image_size() -> None:
    over = ["model.name=timm:resnet18", "model.kwargs={}", "data.input_size=32", "data.in_chans=1"]
    cfg = load_config("fashion_mnist_baseline", [*over, "model.arch=full"])
    assert (cfg.model.name, cfg.model.arch) == ("timm:resnet18", "full")
    with pytest.raises(ConfigError, match="data.input_size"):
        load_config("fashion_mnist_baseline", ["model.name=resnet18", "model.kwargs={}"])
    with pytest.raises(ConfigError, match="is neither a registered model"):
        load_config("fashion_mnist_baseline", ["model.name=timm:no_such_net", *over[1:]])
    with pytest.raises(ConfigError, match="registered full model"):
        load_config("fashion_mnist_baseline", ["model.arch=wae"])


# --- the engine: model.init from a trained network, distillation ------------------------------


@needs_fmnist
def test_students_start_from_the_teacher_and_leave_it_untouched(teacher: Path, tmp_path) -> None:
    before = tree_digest(teacher)
    configs = student_configs(
        teacher,
        [
            *TINY_DATA,
            "stages.1.epochs=1",
            "stages.2.epochs=1",
            "stages.2.schedule.warmup_epochs=0",
            "stages.3.epochs=1",
        ],
    )
    wae_cfg = configs["wae"]
    assert wae_cfg.model.init == wae_cfg.teacher.checkpoint == str(teacher)
    assert wae_cfg.model.kwargs == {"width": 16} and wae_cfg.model.arch == "wae"
    half = configs["half"]
    assert half.model.arch == "half" and len(half.stages) == 1
    assert half.stages[0].epochs == 2  # the classifier and joint stages' epochs together
    assert half.stages[0].losses == wae_cfg.stages[1].losses  # the same distillation

    r = run_training(wae_cfg, tmp_path / "wae", stages=[1])  # stage 1 trains the WAE only
    state = load_file(tmp_path / "wae" / "stage1" / "model.safetensors")
    trained = load_file(teacher / "model.safetensors")
    copied = {k[len("low_net.body.") :]: v for k, v in state.items() if k.startswith("low_net.")}
    assert len(copied) > 10 and all(torch.equal(v, trained[f"net.{k}"]) for k, v in copied.items())
    assert r["stages"]["1"]["name"] == "wae"
    r = run_training(configs["half"], tmp_path / "half")
    rows = (tmp_path / "half" / "metrics.csv").read_text()
    assert "train_distillation" in rows.splitlines()[0]
    assert r["complete"] and 0 <= r["test"]["top1"] <= 100
    assert tree_digest(teacher) == before  # the teacher's files never change


def test_the_teacher_must_be_a_full_resolution_network(tiny_run: Path) -> None:
    with pytest.raises(AccelerateError, match="full-resolution"):
        student_configs(tiny_run / "final")


# --- the pay-off stop -------------------------------------------------------------------------


def test_accelerate_stops_where_wae_cannot_pay_off() -> None:
    base = "fashion_mnist_baseline"
    over = [
        "model.name=mobilenet_v3_large",
        "model.kwargs={}",
        "data.input_size=224",
        "data.in_chans=3",
        "model.arch=full",
    ]
    cfg = load_config(base, over)
    wae_cfg = load_config(cfg, ["model.arch=wae"])
    teacher = PlainNet.from_backbone("mobilenet_v3_large", num_classes=10)
    with pytest.raises(AccelerateError, match=r"MAC ratio.*0\.\d\dx.*--force"):
        check_payoff(wae_cfg, teacher, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_payoff(wae_cfg, teacher, 10, force=True, log=lambda m: None)
    assert report["ratio"] < 1.0


# --- the command ------------------------------------------------------------------------------


@needs_fmnist
def test_accelerate_quick_writes_the_table_and_verdict(teacher: Path, tmp_path, run_cli) -> None:
    out = tmp_path / "fast"
    code, err = run_cli(
        "accelerate",
        "--checkpoint",
        teacher,
        "-o",
        out,
        "--quick",
        "--force",
        "--latency-batch",
        "4",
        "--set",
        "runtime.progress=off",
    )
    assert code == 0, err
    doc = json.loads((out / "results.json").read_text())
    for key in ("baseline", "wae", "half"):
        assert 0 <= doc[key]["top1"] <= 100 and doc[key]["latency_ms"] > 0
    assert doc["speedup"] == doc["wae"]["speedup"] and doc["baseline"]["speedup"] == 1.0
    assert doc["verdict"][0].startswith("WAE keeps") and "I_R + KD" in doc["verdict"][1]
    assert (out / "results.md").read_text().count("|") > 20
    assert json.loads((out / "wae" / "config.json").read_text())["config"]["teacher"][
        "checkpoint"
    ] == str(teacher)


@pytest.mark.parametrize(
    "argv, expect",
    [
        ([], "--checkpoint"),
        (["--checkpoint", "x", "--model", "resnet18"], "once"),
        (["--model", "resnet18"], "--weights"),
        (["--checkpoint", "x", "--data", "fashion-mnist"], "go with --model"),
        (["--checkpoint", "/nonexistent/ckpt"], "not a wae checkpoint"),
        (["--checkpoint", "x", "--latency-batch", "0"], "--latency-batch"),
        (["--checkpoint", "x", "--backends", "tensorrt"], "invalid choice"),
    ],
)
def test_accelerate_refuses_bad_options_before_any_work(argv, expect, tmp_path, run_cli) -> None:
    code, err = run_cli("accelerate", "-o", tmp_path / "o", *argv)
    assert_clean_error(code, err, expect)
    assert not (tmp_path / "o").exists()


def test_accelerate_refuses_pickled_or_unfitting_weights(tmp_path, run_cli) -> None:
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            from PIL import Image

            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(root / c / f"{i}.png")
    pt = tmp_path / "w.pt"
    torch.save({}, pt)
    argv = [
        "accelerate",
        "-o",
        tmp_path / "o",
        "--model",
        "resnet18",
        "--data",
        root,
        "--input-size",
        "32",
    ]
    assert_clean_error(*run_cli(*argv, "--weights", pt), ".safetensors")
    wrong = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(2)}, wrong)
    assert_clean_error(*run_cli(*argv, "--weights", wrong), "do not fit")
    assert not (tmp_path / "o").exists()


# --- the fastest-backend columns ----------------------------------------------------------------


def _fake_timing(batch: int, deploy: list[str]) -> dict[int, dict]:
    """What cost.compare_batches returns, as far as fastest_fields reads it."""

    def at(scale: float) -> dict:
        ms = {"baseline": 4.0 * scale, "wae": 2.0 * scale, "half": 1.0 * scale}
        fast = {k: {"backend": "ort", "median_ms": v / 2, "iqr_ms": 0.01} for k, v in ms.items()}
        return {
            "fastest": fast,
            "speedup_fastest": {k: ms["baseline"] / v for k, v in ms.items()},
            "backends": {k: {"eager": {"status": "ok", "median_ms": v}} for k, v in ms.items()},
            "settings": {"backends": deploy},
        }

    return {batch: at(10.0), 1: at(1.0)}


def _fake_results(deploy: list[str], fields: bool = True) -> dict:
    from wae.apps.accelerate_report import fastest_fields

    timing = _fake_timing(64, deploy)
    r = {"latency_batch_size": 64, "test_images": 10000, "quick": False, "mac_ratio": 3.1}
    r["settings"] = {"threads": 2, "dtype": "float32", **({"backends": deploy} if fields else {})}
    r["machine"] = {"cpu_model": "cpu", "torch_version": "2.x"}
    for key in ("baseline", "wae", "half"):
        r[key] = {
            "top1": 90.0,
            "top5": 99.0,
            "macs": 1e6,
            "latency_ms": 40.0,
            "latency_iqr_ms": 0.1,
            "latency_ms_batch1": 3.91,
            "speedup": 1.5,
            **(fastest_fields(timing, 64, key) if fields else {}),
        }
    if fields:
        r["speedup_fastest"] = r["wae"]["speedup_fastest"]
        r["speedup_fastest_b1"] = r["wae"]["speedup_fastest_b1"]
    r["verdict"] = ["WAE keeps ..."]
    return r


def test_fastest_fields_name_each_row_s_fastest_backend() -> None:
    from wae.apps.accelerate_report import fastest_fields

    f = fastest_fields(_fake_timing(64, ["ort"]), 64, "wae")
    assert f["fastest_backend"] == "ort" and f["latency_ms_fastest"] == pytest.approx(10.0)
    assert f["fastest_backend_b1"] == "ort" and f["latency_b1_ms_fastest"] == pytest.approx(1.0)
    assert f["speedup_fastest"] == pytest.approx(2.0) == f["speedup_fastest_b1"]
    assert set(f["backends"]) == {"64", "1"}


def test_format_results_shows_the_fastest_backend_columns() -> None:
    from wae.apps.accelerate_report import format_results

    text = format_results(_fake_results(["optimized", "ort"]))
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header.endswith(
        "| CPU ms (batch 1) | fastest backend ms (batch 64) | fastest backend ms (batch 1) |"
    )
    wae_row = next(line for line in text.splitlines() if line.startswith("| WAE + KD"))
    assert "| 3.91 | 10.0 (ort) | 1.00 (ort) |" in wae_row  # eager columns kept
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len({r.count("|") for r in rows}) == 1  # every row has every column
    assert "2.00x the original's speed at batch 64 and 2.00x at batch 1" in text
    assert "optimized, ort for the fastest-backend columns" in text


def test_format_results_without_deploy_timing_keeps_the_eager_table() -> None:
    from wae.apps.accelerate_report import format_results

    for r in (_fake_results([]), _fake_results([], fields=False)):  # off, or an older result
        text = format_results(r)
        assert "fastest backend" not in text and "| 3.91 |" in text
        header = next(line for line in text.splitlines() if line.startswith("| model"))
        assert header.endswith("| CPU ms (batch 1) |")


def test_backends_option_reaches_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import wae.cli.accelerate as cli_accelerate
    import wae.cli.demo as cli_demo
    from wae.cli import build_parser

    seen: dict = {}
    for mod, fn in ((cli_accelerate, "accelerate"), (cli_demo, "run_demo")):
        monkeypatch.setattr(mod, fn, lambda *a, _fn=fn, **kw: seen.update({_fn: kw}) or {})
        monkeypatch.setattr(mod, "format_results", lambda results: "table")
    from wae.cli import main

    assert main(["accelerate", "--checkpoint", "c", "-o", "o", "--backends", "eager"]) == 0
    assert main(["demo", "-o", "o", "--backends", "optimized", "ort"]) == 0
    assert seen["accelerate"]["backends"] == ["eager"]
    assert seen["run_demo"]["backends"] == ["optimized", "ort"]
    args = build_parser().parse_args(["reproduce", "--backends", "eager", "--plan"])
    assert args.backends == ["eager"]
    assert build_parser().parse_args(["demo"]).backends is None  # the library's default


def test_time_and_results_carry_eager_and_the_fastest_backend(tmp_path: Path) -> None:
    """accelerate's timing step (cost.compare_batches) into results.json's keys and table."""
    from types import SimpleNamespace

    from wae.apps import accelerate as app
    from wae.models import create_model

    names = {
        "baseline": "small_vgg_28_full",
        "wae": "wae_small_vgg_28",
        "half": "small_vgg_28_half",
    }
    models = {k: create_model(n, width=4).eval() for k, n in names.items()}
    cfg = SimpleNamespace(data=SimpleNamespace(input_size=28, in_chans=1))
    lines: list[str] = []
    timing = app._time(models, cfg, 4, 1, 0.01, lines.append, ("optimized",))
    assert list(timing) == [4, 1] and "eager and optimized" in lines[0]
    score = {"top1": 90.0, "top5": 99.0, "num_images": 1000}
    trained = {k: {"test": score, "final_checkpoint": "c", "config": {}} for k in ("wae", "half")}
    r = app._results(tmp_path, tmp_path, score, trained, timing, 4)
    for key in names:
        row = r[key]
        assert row["latency_ms"] > 0 and row["latency_ms_batch1"] > 0  # eager, as before
        assert row["fastest_backend"] in ("eager", "optimized")
        assert row["fastest_backend_b1"] in ("eager", "optimized")
        assert row["latency_ms_fastest"] <= row["latency_ms"]
        assert row["latency_b1_ms_fastest"] <= row["latency_ms_batch1"]
        assert set(row["backends"]) == {"4", "1"}
    assert r["baseline"]["speedup_fastest"] == pytest.approx(1.0)
    assert r["speedup_fastest"] == r["wae"]["speedup_fastest"]
    assert r["speedup_fastest_b1"] == r["wae"]["speedup_fastest_b1"]
    assert r["settings"]["backends"] == ["optimized"]
    r["quick"] = False
    text = app.format_results(r)
    assert "fastest backend ms (batch 4)" in text
    assert f"({r['wae']['fastest_backend_b1']}) |" in text
    json.dumps(r)
