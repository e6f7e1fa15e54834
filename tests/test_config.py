"""Config parsing, validation, overrides and fingerprints (wae.train.config); no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wae.cli import main
from wae.train import ConfigError, config_to_dict, fingerprint, load_config
from wae.train.config import config_diff, parse_override, stage_fingerprint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

MINIMAL = """
name = "t"
[model]
name = "wae_small_vgg_28"
kwargs = { width = 8 }
[[stages]]
name = "wae"
losses = { transform = 1.0 }
optimizer = "adam"
lr = 1e-3
[[stages]]
name = "classifier"
freeze = ["wae"]
calibrate_norms = true
schedule = { name = "plateau", patience = 1 }
"""


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    p = tmp_path / "minimal.toml"
    p.write_text(MINIMAL)
    return p


def test_defaults_and_auto_values(minimal):
    cfg = load_config(minimal)
    assert cfg.name == "t" and cfg.seed == 0
    s1, s2 = cfg.stages
    assert s1.losses == {"transform": 1.0} and not s1.classify and s1.decode
    assert s2.losses == {"classification": 1.0} and s2.classify and not s2.decode
    # "auto" monitor is decided at validation and saved resolved.
    assert s1.monitor == "val_loss" and s2.monitor == "val_top1"
    assert s2.schedule.name == "plateau" and s2.schedule.patience == 1
    assert cfg.model.kwargs == {"width": 8}
    doc = config_to_dict(cfg)
    json.dumps(doc)  # JSON-ready
    assert load_config(doc).stages[1].freeze == ["wae"]  # round trip


@pytest.mark.parametrize(
    "name", ["fashion_mnist", "cifar10", "imagenet_vgg16", "imagenet_resnet50"]
)
def test_shipped_recipes_parse(name):
    cfg = load_config(RECIPES / f"{name}.toml")
    assert len(cfg.stages) == 3
    s1, s2, s3 = cfg.stages
    assert s1.losses == {"transform": 1.0}
    assert s2.freeze == ["wae"] and s2.calibrate_norms and s2.losses == {"classification": 1.0}
    assert s3.losses == {"classification": 1.0, "transform": 0.001}


def test_imagenet_recipes_carry_the_paper_values():
    vgg = load_config(RECIPES / "imagenet_vgg16.toml")
    r50 = load_config(RECIPES / "imagenet_resnet50.toml")
    s1, s2, s3 = vgg.stages
    assert (s1.optimizer, s1.batch_size, s1.momentum, s1.weight_decay, s1.lr) == (
        "sgd",
        4,
        0.9,
        5e-4,
        1e-6,
    )
    assert s1.schedule.name == "step" and s1.schedule.step_size == 10
    assert s1.schedule.gamma == 0.1 and s1.reduction == "sum"
    assert (s2.optimizer, s2.batch_size, s2.lr, s2.schedule.name) == ("sgd", 256, 0.01, "plateau")
    assert s3.lr == 1e-4 and s3.losses["transform"] == 0.001 and s3.batch_size == 256
    assert r50.stages[1].lr == 0.1 and r50.model.name == "wae_resnet50"


def test_overrides_types_and_stage_addressing(minimal):
    cfg = load_config(
        minimal,
        [
            "stages.2.lr=0.02",
            "stages.classifier.epochs=5",
            "data.subset=20000",
            "model.kwargs.width=16",
            "stages.1.optimizer=adamw",  # bare word -> string
            "stages.1.schedule.name=step",
            "eval.noise_vars=[0.01, 0.05]",
            "data.dataset=/data/some folder",
            "stages.2.losses={classification = 1.0, transform = 0.5}",
            "runtime.precision=bf16",
        ],
    )
    assert cfg.stages[1].lr == 0.02 and cfg.stages[1].epochs == 5
    assert cfg.data.subset == 20000 and cfg.model.kwargs["width"] == 16
    assert cfg.stages[0].optimizer == "adamw" and cfg.stages[0].schedule.name == "step"
    assert cfg.eval.noise_vars == [0.01, 0.05]
    assert cfg.data.dataset == "/data/some folder"
    assert cfg.stages[1].decode and cfg.runtime.precision == "bf16"
    # none unsets an optional key
    assert load_config(minimal, ["data.subset=3", "data.subset=none"]).data.subset is None
    assert parse_override("a.b=1e-3") == (["a", "b"], 0.001)
    assert parse_override("a=.5") == (["a"], 0.5)


@pytest.mark.parametrize(
    "override, words",
    [
        ("stages.2.lrr=0.1", ["'stages.2.lrr'", "Did you mean 'lr'", "weight_decay"]),
        ("dataa.subset=1", ["'dataa'", "Did you mean 'data'", "stages"]),
        ("data.subsett=1", ["'data.subsett'", "val_fraction"]),
        ("stages.2.schedule.nam=step", ["'stages.2.schedule.nam'", "warmup_epochs"]),
        ("stages.4.lr=0.1", ["stage '4'", "1..2"]),
        ("stages.joint.lr=0.1", ["stage 'joint'", "classifier"]),
        ("stages.2=1", ["must name a key"]),
        ("nonsense", ["KEY=VALUE"]),
    ],
)
def test_unknown_keys_name_the_key_and_the_valid_ones(minimal, override, words):
    with pytest.raises(ConfigError) as e:
        load_config(minimal, [override])
    msg = str(e.value)
    assert "\n" not in msg  # one paragraph
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_key_in_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(MINIMAL + "\n[data]\nsubsett = 4\n")
    with pytest.raises(ConfigError, match=r"'data.subsett'.*bad.toml.*Valid keys in \[data\]"):
        load_config(p)


@pytest.mark.parametrize(
    "override, match",
    [
        ("stages.1.lr=-1", "lr must be > 0"),
        ("stages.1.lr=abc", "must be a number"),
        ("stages.1.epochs=1.5", "must be an integer"),
        ("stages.1.optimizer=rmsprop", "one of 'sgd', 'adam', 'adamw'"),
        ("stages.1.losses={transfrom = 1.0}", "unknown loss"),
        ("stages.1.losses={transform = 0.0}", "positive weight"),
        ("stages.1.monitor=val_top1", "needs the classification loss"),
        ("stages.2.reduction=max", "one of 'mean', 'sum'"),
        ("model.kwargs.num_classes=3", "comes from the data"),
        ("data.val_fraction=1.0", r"\[0, 1\)"),
        ("runtime.amp=1", "true or false"),
        ("runtime.precision=fp8", "one of 'auto', 'fp32', 'bf16', 'fp16'"),
    ],
)
def test_bad_values(minimal, override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(minimal, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no \\[\\[stages\\]\\]"):
        load_config(empty)


def test_a_runs_config_json_loads_back(minimal, tmp_path):
    """OUT/config.json is a config: resuming needs none of the --set values again."""
    cfg = load_config(minimal, ["data.subset=600", "stages.2.lr=0.02", "seed=3"])
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"config": config_to_dict(cfg), "fingerprint": fingerprint(cfg)}))
    again = load_config(saved)
    assert config_to_dict(again) == config_to_dict(cfg) and fingerprint(again) == fingerprint(cfg)
    assert load_config(saved, ["stages.2.lr=0.5"]).stages[1].lr == 0.5  # overrides still apply
    (tmp_path / "other.json").write_text(json.dumps(config_to_dict(cfg)))
    with pytest.raises(ConfigError, match="not the config.json of a run"):
        load_config(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "broken.json")


def test_precision_and_the_older_amp_spelling(minimal):
    assert load_config(minimal).runtime.precision == "fp32"  # the default: no autocast
    for value in ("auto", "fp32", "bf16", "fp16"):
        assert load_config(minimal, [f"runtime.precision={value}"]).runtime.precision == value
    # amp = true is precision = amp_dtype, saved in the one current spelling
    old = load_config(minimal, ["runtime.amp=true"]).runtime
    assert (old.precision, old.amp) == ("bf16", False)
    fp16 = load_config(minimal, ["runtime.amp=true", "runtime.amp_dtype=fp16"]).runtime
    assert (fp16.precision, fp16.amp) == ("fp16", False)
    same = ["runtime.amp=true", "runtime.amp_dtype=fp16", "runtime.precision=fp16"]
    assert load_config(minimal, same).runtime.precision == "fp16"
    # amp = false leaves precision alone, whatever amp_dtype says
    assert load_config(minimal, ["runtime.amp_dtype=fp16"]).runtime.precision == "fp32"


@pytest.mark.parametrize(
    "over", [["runtime.precision=auto"], ["runtime.precision=fp16"], ["runtime.amp_dtype=fp16"]]
)
def test_amp_beside_another_precision_is_refused(minimal, over):
    with pytest.raises(ConfigError) as e:
        load_config(minimal, ["runtime.precision=bf16", "runtime.amp=true", *over])
    msg = str(e.value)
    assert "\n" not in msg and "runtime.amp = true" in msg and "Keep runtime.precision" in msg


def test_an_old_runs_config_json_with_amp_loads(minimal, tmp_path):
    """A config.json saved before runtime.precision (runtime.amp, no precision) still resumes."""
    doc = config_to_dict(load_config(minimal))
    doc["runtime"].pop("precision")
    doc["runtime"].update(amp=True, amp_dtype="bf16")
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"config": doc, "fingerprint": fingerprint(doc)}))
    cfg = load_config(saved)
    assert cfg.runtime.precision == "bf16" and not cfg.runtime.amp
    assert fingerprint(cfg) == fingerprint(doc)  # runtime is not fingerprinted: resume works


@pytest.mark.parametrize(
    "name",
    [
        "fashion_mnist",
        "fashion_mnist_baseline",
        "textures",
        "textures_baseline",
        "fonts",
        "fonts_baseline",
        "cifar10",
        "imagenet_vgg16",
        "imagenet_resnet50",
    ],
)
def test_packaged_recipes_train_in_auto_precision(name):
    rt = load_config(RECIPES / f"{name}.toml").runtime
    assert rt.precision == "auto" and not rt.amp


def test_fingerprints(minimal):
    base = load_config(minimal)
    # runtime, name and data_dir do not change what a run computes
    same = load_config(minimal, ["runtime.device=cpu", "name=other", "data.data_dir=/x"])
    assert fingerprint(base) == fingerprint(same)
    later = load_config(minimal, ["stages.2.lr=0.5"])
    assert fingerprint(later) != fingerprint(base)
    # stage 1's result is still valid for a config that changed only stage 2
    assert stage_fingerprint(later, 1) == stage_fingerprint(base, 1)
    assert stage_fingerprint(later, 2) != stage_fingerprint(base, 2)
    diff = config_diff(config_to_dict(base), config_to_dict(later))
    assert diff == ["stages.2.lr: 0.01 -> 0.5"]


def test_cli_unknown_key_exits_2(minimal, capsys, tmp_path):
    rc = main(["train", "-c", str(minimal), "-o", str(tmp_path / "o"), "--set", "stages.9.lr=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("wae train: error:") and "stage '9'" in err
    assert not (tmp_path / "o").exists()


def test_cli_print_config(minimal, capsys):
    assert main(["train", "-c", str(minimal), "--print-config", "--set", "seed=3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seed"] == 3 and doc["stages"][1]["monitor"] == "val_top1"
