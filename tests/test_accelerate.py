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
