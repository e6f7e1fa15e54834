"""A user's own network named "pkg.module:function": built by name, named in recipes, and
its checkpoints loaded from data only, importing the function only when the caller allows it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error
from wae.checkpoint import CheckpointError, build_from_spec, load_model, save_checkpoint
from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.models import BackboneError, build_classifier
from wae.models.named import build_named
from wae.models.spec import SpecError, is_factory_name, validate_spec
from wae.train import ConfigError, load_config
from wae.train.setup import recipe_code

needs_fmnist = pytest.mark.skipif(
    not Path(DEFAULT_FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed"
)
pytestmark = pytest.mark.filterwarnings("ignore::wae.PayoffWarning")

MYNETS = '''
from torch import nn


def tiny(num_classes=10, in_chans=1):
    """A small CNN classifier: (N, in_chans, H, W) -> (N, num_classes)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def rgb(num_classes=10):
    return tiny(num_classes, 3)


NOT_CALLABLE = 3


def not_a_module(**kwargs):
    return "a string"
'''
TINY = "mynets:tiny"
ARGS = dict(num_classes=10, in_chans=1, input_size=28)


@pytest.fixture
def mynets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The user's module `mynets`, importable for this test only."""
    (tmp_path / "mynets.py").write_text(MYNETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mynets", None)


@pytest.fixture
def saved(mynets: Path) -> Path:
    """A checkpoint of a WAE on mynets:tiny, trained on nothing, saying it is Fashion-MNIST."""
    model = build_named(TINY, "wae", **ARGS)
    meta = {"dataset": "fashion-mnist", "input_size": 28, "in_chans": 1}
    return save_checkpoint(mynets / "ckpt", model, meta=meta)


def _set_backbone(directory: Path, name: str) -> None:
    doc = json.loads((directory / "model.json").read_text())
    doc["spec"]["backbone"] = name
    (directory / "model.json").write_text(json.dumps(doc))


def test_names_of_factories_are_dotted_identifiers_never_paths() -> None:
    assert is_factory_name("mynets:tiny") and is_factory_name("pkg.sub._mod:make_net")
    assert is_factory_name("os:system")  # valid syntax: why loading needs allow_code
    for bad in (
        "timm:resnet18",
        "resnet18",
        "../evil:x",
        "a/b:c",
        "pkg..mod:f",
        "a:b:c",
        "mod:",
        ":f",
        "1mod:f",
        "mod:f()",
        "m" * 200 + ":f",
        None,
        3,
    ):
        assert not is_factory_name(bad), bad
    spec = {"builder": "plain", "backbone": "pkg.mod:f", "kwargs": {}}
    assert validate_spec(spec)["backbone"] == "pkg.mod:f"
    for bad in ("../evil:x", "/tmp/x:f", "a:b:c"):
        with pytest.raises(SpecError, match="factory"):
            validate_spec({**spec, "backbone": bad})
    with pytest.raises(SpecError, match="model name"):  # registered models only by name
        validate_spec({"builder": "registry", "name": "pkg.mod:f", "kwargs": {}})


def test_a_factory_builds_a_wae_and_its_checkpoint_loads_when_allowed(saved: Path) -> None:
    spec = json.loads((saved / "model.json").read_text())["spec"]
    assert (spec["builder"], spec["backbone"]) == ("wae_net", TINY)
    with pytest.raises(CheckpointError, match=f"--allow-code {TINY}") as e:
        load_model(saved)
    assert "never selects code" in str(e.value)
    with pytest.raises(CheckpointError, match="--allow-code"):
        load_model(saved, allow_code=["mynets:other"])  # only the exact name
    with pytest.raises(CheckpointError, match="pkg.module:function"):
        load_model(saved, allow_code=["../mynets.py"])
    model, doc = load_model(saved, allow_code=[TINY])
    assert doc["meta"]["dataset"] == "fashion-mnist"
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(CheckpointError, match="--allow-code"):
        build_from_spec(spec)


def test_a_checkpoint_never_imports_code_it_names(saved: Path) -> None:
    for name in ("wae_never_imported_zz:f", "os:system"):
        _set_backbone(saved, name)
        with pytest.raises(CheckpointError, match=f"--allow-code {name}"):
            load_model(saved)
    assert "wae_never_imported_zz" not in sys.modules
    _set_backbone(saved, "../evil:x")
    with pytest.raises(CheckpointError, match="never files"):
        load_model(saved, allow_code=[TINY])


def test_factory_errors_name_the_problem(mynets: Path) -> None:
    with pytest.raises(BackboneError, match="'no_such_mynets'.*PYTHONPATH"):
        build_classifier("no_such_mynets:tiny", num_classes=10)
    with pytest.raises(BackboneError, match="has no 'missing'"):
        build_classifier("mynets:missing", num_classes=10)
    with pytest.raises(BackboneError, match="not a function"):
        build_classifier("mynets:NOT_CALLABLE", num_classes=10)
    with pytest.raises(BackboneError, match="not an nn.Module"):
        build_classifier("mynets:not_a_module", num_classes=10)
    with pytest.raises(BackboneError, match="pretrained"):
        build_classifier("mynets:rgb", num_classes=10, pretrained=True)
    # A factory without in_chans gets its first convolution re-plumbed.
    net = build_classifier("mynets:rgb", num_classes=7, in_chans=1)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_recipes_name_a_factory(mynets: Path) -> None:
    over = ["model.kwargs={}", "model.arch=full", "data.input_size=28", "data.in_chans=1"]
    cfg = load_config("fashion_mnist_baseline", [f"model.name={json.dumps(TINY)}", *over])
    assert (cfg.model.name, cfg.model.arch) == (TINY, "full")
    assert recipe_code(cfg) == (TINY,)
    assert recipe_code(load_config("fashion_mnist_baseline")) == ()
    with pytest.raises(ConfigError, match="no_such_mynets"):
        load_config("fashion_mnist_baseline", ['model.name="no_such_mynets:tiny"', *over])


def test_cli_refuses_a_factory_checkpoint_without_allow_code(saved: Path, run_cli) -> None:
    code, err = run_cli("eval", "--checkpoint", saved)
    assert_clean_error(code, err, f"--allow-code {TINY}")
    code, err = run_cli("export", "--checkpoint", saved, "--output", saved / "m.onnx")
    assert_clean_error(code, err, f"--allow-code {TINY}")
    code, err = run_cli("eval", "--checkpoint", saved, "--allow-code", "mynets.py")
    assert_clean_error(code, err, "pkg.module:function")


@needs_fmnist
def test_cli_evaluates_a_factory_checkpoint_when_allowed(saved: Path, run_cli) -> None:
    out = saved.parent / "eval.json"
    code, err = run_cli(
        "eval", "--checkpoint", saved, "--allow-code", TINY, "--subset", "100", "--output", out
    )
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["model"] == TINY and 0 <= result["top1"] <= 100
