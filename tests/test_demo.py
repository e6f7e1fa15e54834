"""`wae demo --quick` (and `--full --quick`): the whole main job on a sliver of Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_drawn_image
from wae.cli import main
from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.pretrained import DEMO_TEACHER, pretrained_dir

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed"
)


def test_demo_quick_writes_the_results_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out), "--latency-batch", "8"]) == 0
    printed = capsys.readouterr().out
    assert "QUICK" in printed and "speed-up" in printed and str(out) in printed
    assert "I_R + KD" in printed and "WAE keeps" in printed
    assert (
        "Training precision: " in printed and "Test accuracies are computed in float32" in printed
    )
    doc = json.loads((out / "results.json").read_text())
    for key in ("wae", "baseline", "half"):  # the keys scripts depend on
        assert 0 <= doc[key]["top1"] <= doc[key]["top5"] <= 100
        assert doc[key]["macs"] > 0 and doc[key]["latency_ms"] > 0
    assert doc["speedup"] == pytest.approx(doc["baseline"]["latency_ms"] / doc["wae"]["latency_ms"])
    assert doc["mac_ratio"] == pytest.approx(doc["baseline"]["macs"] / doc["wae"]["macs"])
    # The baseline row is the trained network the students started from and learnt from.
    wae_cfg = doc["configs"]["wae"]
    assert (
        wae_cfg["model"]["init"]
        == wae_cfg["teacher"]["checkpoint"]
        == str(out / "baseline" / "final")
    )
    assert doc["configs"]["half"]["model"]["arch"] == "half"
    assert set(doc["precision"]) == {"baseline", "wae", "half"}  # the recipe's "auto", resolved
    assert {c["runtime"]["precision"] for c in doc["configs"].values()} == {"auto"}
    assert doc["precision_summary"] in (out / "results.md").read_text()
    # The default demo accelerates the packaged network: copied, not trained.
    assert doc["demo"] == "fast" and doc["teacher_seconds"] == 0.0
    assert doc["teacher_source"]["packaged"] == DEMO_TEACHER
    shipped = pretrained_dir(DEMO_TEACHER) / "model.safetensors"
    assert (out / "baseline" / "final" / "model.safetensors").read_bytes() == shipped.read_bytes()
    assert doc["configs"]["wae"]["model"]["kwargs"]["encoder"] == "light"
    for cfg in doc["configs"].values():  # the teacher's logits computed once, no augmentation
        assert cfg["teacher"]["cache"] and not cfg["data"]["augment"]
    assert_drawn_image(out / "decomposition.png")
    assert (out / "wae" / "final" / "model.safetensors").is_file()
    # A second run reuses the three finished runs instead of training again.
    mtime = (out / "wae" / "final" / "model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--output", str(out), "--latency-batch", "8"]) == 0
    assert (out / "wae" / "final" / "model.safetensors").stat().st_mtime_ns == mtime


def test_demo_full_quick_trains_the_network_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--full", "--quick", "-o", str(out), "--latency-batch", "8"]
    assert main(argv) == 0
    assert "I_R + KD" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["demo"] == "full" and doc["teacher_seconds"] > 0
    assert doc["teacher_source"]["recipe"] == "fashion_mnist_baseline"
    assert (out / "baseline" / "metrics.csv").is_file()  # trained here, through the engine
    assert "encoder" not in doc["configs"]["wae"]["model"]["kwargs"]  # the paper's encoder
    for key in ("wae", "baseline", "half"):
        assert 0 <= doc[key]["top1"] <= doc[key]["top5"] <= 100


def test_demo_with_a_missing_recipe_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--full", "-o", str(tmp_path / "o"), "--recipe", str(tmp_path / "no.toml")]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_recipe_without_full_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "-o", str(tmp_path / "o"), "--recipe", "fashion_mnist_baseline"]) == 2
    assert "Add --full" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_checks_the_students_overrides_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--quick", "-o", str(tmp_path / "o"), "--student-set", "stages.9.lr=1"]
    assert main(argv) == 2
    assert "stages.9" in capsys.readouterr().err
    assert not (tmp_path / "o" / "baseline").exists()


def test_demo_trains_every_run_in_the_recipes_precision_and_says_which(tmp_path: Path) -> None:
    from wae.apps import accelerate, demo
    from wae.train import load_config

    base = load_config(demo.BASELINE_RECIPE)
    assert base.runtime.precision == "auto"
    tdir = tmp_path / "baseline" / "final"
    doc = accelerate.teacher_doc_from_config(base)
    students = accelerate.student_configs(tdir, [], doc=doc)  # the teacher's precision
    assert {c.runtime.precision for c in students.values()} == {"auto"}
    amp = accelerate.student_configs(tdir, ["runtime.amp=true"], doc=doc)  # would contradict
    assert {c.runtime.precision for c in amp.values()} == {"bf16"}
    # Each run's results.json says what it trained in; the table ends with it.
    note = (
        "this CPU has no AMX or AVX-512 BF16, so bf16 would be slower than fp32: training in fp32"
    )
    run = {"precision": "fp32", "precision_requested": "auto", "precision_note": note}
    for key in students:
        (tmp_path / key).mkdir()
        (tmp_path / key / "results.json").write_text(json.dumps(run))
    results: dict = {"configs": {k: {} for k in students}}
    accelerate.add_precision(results, tmp_path, baseline=run)
    assert results["precision"] == {"baseline": "fp32", "wae": "fp32", "half": "fp32"}
    assert note in results["precision_summary"]


def test_decomposition_figure_is_drawn(tmp_path: Path, one_thread: None) -> None:
    """The demo's figure from a (fresh, untrained) WAE: a picture, not an empty canvas."""
    from wae.apps.demo import _decomposition_figure
    from wae.models import create_model
    from wae.train import load_config
    from wae.train.config import config_to_dict

    config = config_to_dict(load_config("fashion_mnist", ["model.kwargs.width=8"]))
    model = create_model(config["model"]["name"], **config["model"]["kwargs"]).eval()
    _decomposition_figure(model, config, tmp_path / "decomposition.png")
    assert_drawn_image(tmp_path / "decomposition.png")
    assert not list(tmp_path.glob("*.tmp.png"))  # written through a temporary file
