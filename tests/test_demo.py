"""`wae demo --quick`: the whole main job on a sliver of Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wae.cli import main
from wae.data import DEFAULT_FASHION_MNIST_DIR

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
    doc = json.loads((out / "results.json").read_text())
    for key in ("wae", "baseline"):
        assert 0 <= doc[key]["top1"] <= doc[key]["top5"] <= 100
        assert doc[key]["macs"] > 0 and doc[key]["latency_ms"] > 0
    assert doc["speedup"] == pytest.approx(doc["baseline"]["latency_ms"] / doc["wae"]["latency_ms"])
    assert doc["mac_ratio"] == pytest.approx(doc["baseline"]["macs"] / doc["wae"]["macs"])
    assert (out / "decomposition.png").stat().st_size > 1000
    assert (out / "wae" / "final" / "model.safetensors").is_file()
    # A second run reuses both finished runs instead of training again.
    mtime = (out / "wae" / "final" / "model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--output", str(out), "--latency-batch", "8"]) == 0
    assert (out / "wae" / "final" / "model.safetensors").stat().st_mtime_ns == mtime


def test_demo_without_recipes_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--output", str(tmp_path), "--recipes", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_recipes_are_packaged_unless_the_user_names_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wae.demo import BASELINE_RECIPE, WAE_RECIPE, _recipes, default_recipe_dir
    from wae.train import load_config

    monkeypatch.delenv("WAE_RECIPES", raising=False)
    monkeypatch.chdir(tmp_path)  # the packaged recipes are found from anywhere
    runs = _recipes(None)
    assert runs == {"wae": "fashion_mnist", "baseline": "fashion_mnist_baseline"}
    assert load_config(runs["wae"]).name == "fashion_mnist"
    assert (default_recipe_dir() / WAE_RECIPE).is_file()
    for name in (WAE_RECIPE, BASELINE_RECIPE):
        (tmp_path / name).write_text((default_recipe_dir() / name).read_text())
    assert _recipes(tmp_path) == {
        "wae": tmp_path / WAE_RECIPE,
        "baseline": tmp_path / BASELINE_RECIPE,
    }
    monkeypatch.setenv("WAE_RECIPES", str(tmp_path))
    assert _recipes(None)["wae"] == tmp_path / WAE_RECIPE and default_recipe_dir() == tmp_path
