"""The training engine on a tiny Fashion-MNIST subset (CPU): stage semantics, staged runs,
exact resume, NaN stop, output-directory protection, safe loading, plain baselines."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import wae
from wae.checkpoint import CheckpointError, load_checkpoint
from wae.cli import main
from wae.data import DEFAULT_FASHION_MNIST_DIR, DataError
from wae.train import RunDirError, TrainHooks, TrainingError, run_training
from wae.train.state import load_train_state

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not any(DEFAULT_FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*")),
        reason="needs Fashion-MNIST in /usr/share/datasets/fashion-mnist",
    ),
]


def tiny_config(**stage_epochs: int) -> dict:
    """3 stages on 128 training images, width-8 SmallVGG: a few seconds on 2 cores."""
    return {
        "name": "tiny",
        "seed": 0,
        "model": {"name": "wae_small_vgg_28", "kwargs": {"width": 8}},
        "data": {"dataset": "fashion-mnist", "subset": 128, "val_subset": 40},
        "eval": {"split": "test", "subset": 40, "noise_vars": [0.0, 0.05], "batch_size": 40},
        "runtime": {"verbose": False, "progress": "off"},
        "stages": [
            {
                "name": "wae",
                "epochs": stage_epochs.get("s1", 1),
                "batch_size": 32,
                "optimizer": "adam",
                "lr": 1e-3,
                "weight_decay": 0.0,
                "losses": {"transform": 1.0},
                "reduction": "sum",
            },
            {
                "name": "classifier",
                "epochs": stage_epochs.get("s2", 2),
                "batch_size": 32,
                "optimizer": "sgd",
                "lr": 0.05,
                "freeze": ["wae"],
                "calibrate_norms": True,
                "losses": {"classification": 1.0},
                "schedule": {"name": "cosine", "warmup_epochs": 1},
            },
            {
                "name": "joint",
                "epochs": stage_epochs.get("s3", 1),
                "batch_size": 32,
                "optimizer": "sgd",
                "lr": 0.01,
                "losses": {"classification": 1.0, "transform": 0.001},
                "reduction": "sum",
                "schedule": {"name": "plateau", "patience": 0},
            },
        ],
    }


def baseline_config(epochs: int = 1) -> dict:
    cfg = tiny_config()
    cfg["model"] = {"name": "small_vgg_28_full", "kwargs": {"width": 8}}
    cfg["stages"] = [copy.deepcopy(cfg["stages"][1])]
    cfg["stages"][0].update(
        freeze=[], calibrate_norms=False, epochs=epochs, schedule={"name": "constant"}
    )
    cfg["data"]["subset"] = 64
    return cfg


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(directory)[1]


def part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # wall-clock columns differ between runs
        r.pop("epoch_time_s")
        r.pop("images_per_s")
    return rows


def tree_digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


class Kill(Exception):
    """Stands in for a crash (kill -9, pre-emption) in the middle of an epoch."""


class KillAt(TrainHooks):
    def __init__(self, stage: int, epoch: int, step: int) -> None:
        self.at = (stage, epoch, step)

    def on_step(self, stage, epoch, step, model, loss):
        if (stage, epoch, step) == self.at:
            raise Kill()


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory) -> tuple[Path, dict]:
    """A plain baseline (one classification stage of 2 epochs), uninterrupted."""
    out = tmp_path_factory.mktemp("base") / "run"
    return out, run_training(baseline_config(epochs=2), out)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, dict]:
    """The reference: all three stages in one uninterrupted call."""
    out = tmp_path_factory.mktemp("full") / "run"
    return out, run_training(tiny_config(), out)


# ------------------------------------------------------------------------ a complete run


def test_full_run_files_and_results(full_run):
    out, res = full_run
    assert res["complete"] and res["final_checkpoint"] == str(out / "final")
    for name in ("config.json", "metrics.csv", "results.json", "stage1", "stage2", "stage3"):
        assert (out / name).exists(), name
    # The resolved config is beside the results and inside every checkpoint.
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"] == res["config"] and saved["fingerprint"] == res["fingerprint"]
    for d in ("stage1", "stage3", "final"):
        assert load_checkpoint(out / d)[0]["config"] == res["config"]
    assert json.loads((out / "results.json").read_text())["test"] == res["test"]
    rows = metrics_rows(out)
    assert [(r["stage"], r["epoch"]) for r in rows] == [
        ("1", "1"),
        ("2", "1"),
        ("2", "2"),
        ("3", "1"),
    ]
    assert rows[0]["val_top1"] == "" and rows[0]["train_reconstruction"] != ""
    assert rows[1]["val_top1"] != "" and rows[1]["train_transform"] == ""
    assert rows[3]["train_transform"] != "" and rows[3]["train_classification"] != ""
    test = res["test"]
    assert test["num_images"] == 40 and len(test["per_class"]) == 10
    assert [r["var"] for r in test["noise"]] == [0.0, 0.05]
    assert test["noise"][0]["top1"] == test["top1"]  # variance 0 is the clean number
    # Only the newest per-epoch checkpoint is kept; latest.json points at it.
    ck = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ck == ["latest.json", "stage3-epoch0001"]
    model, doc = wae.checkpoint.load_model(out / "final", num_classes=10)
    assert doc["meta"]["classes"][0] == "T-shirt/top" and doc["meta"]["input_size"] == 28


def test_stage_semantics_run_stage_by_stage(full_run, tmp_path):
    """--stage 1, 2, 3 into one directory (no flags needed) = the single call, and each stage
    trains what it should."""
    out = tmp_path / "staged"
    cfg = tiny_config()
    torch.manual_seed(0)
    init = wae.create_model("wae_small_vgg_28", num_classes=10, in_chans=1, input_size=28, width=8)
    init = {k: v.clone() for k, v in init.state_dict().items()}
    classifier = ("low_net.", "high_net.", "head_low.", "head_fused.")

    run_training(cfg, out, stages=1)
    s1 = weights(out / "stage1")
    assert not same(part(s1, "wae."), part(init, "wae."))  # the WAE trained
    for p in classifier:  # the classifier did not run: weights and BN statistics untouched
        assert same(part(s1, p), part(init, p)), p
    assert int(s1["norm_low.count"]) == 0  # norms not calibrated yet
    assert not (out / "stage2").exists() and not (out / "final").exists()

    run_training(cfg, out, stages=2)
    s2 = weights(out / "stage2")
    assert same(part(s2, "wae."), part(s1, "wae."))  # frozen: bit-identical
    assert int(s2["norm_low.count"]) == 128 * 14 * 14  # calibrated on the 128 train images
    assert not torch.equal(s2["norm_high.var"], s1["norm_high.var"])
    for p in classifier:
        assert not same(part(s2, p), part(s1, p)), p

    res = run_training(cfg, out, stages=3)
    s3 = weights(out / "stage3")
    assert not same(part(s3, "wae.encoder."), part(s2, "wae.encoder."))  # joint: WAE moves
    assert not same(part(s3, "wae.decoder_low."), part(s2, "wae.decoder_low."))
    for p in classifier:
        assert not same(part(s3, p), part(s2, p)), p
    assert same(part(s3, "norm_"), part(s2, "norm_"))  # fixed statistics stay fixed
    assert res["complete"]

    # Three separate calls give exactly what one call gives.
    ref, ref_res = full_run
    assert same(weights(out / "final"), weights(ref / "final"))
    assert res["test"] == ref_res["test"]
    assert metrics_rows(out) == metrics_rows(ref)

    # A finished stage is not redone by accident.
    before = tree_digest(out)
    with pytest.raises(RunDirError, match="already holds a run.*--resume.*--overwrite"):
        run_training(cfg, out, stages=2)
    assert tree_digest(out) == before


def test_resume_after_a_crash_equals_the_uninterrupted_run(full_run, tmp_path):
    out = tmp_path / "crashed"
    with pytest.raises(Kill):
        run_training(tiny_config(), out, hooks=KillAt(stage=2, epoch=2, step=1))
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert (latest["stage"], latest["epoch"]) == (2, 1)
    # Without --resume the directory is protected.
    with pytest.raises(RunDirError, match="--resume"):
        run_training(tiny_config(), out)
    res = run_training(tiny_config(), out, resume=True)
    ref, ref_res = full_run
    # Exact: CPU kernels are deterministic for a fixed thread count, and every epoch's
    # randomness is seeded from (seed, stage, epoch), so the tolerance is zero.
    assert same(weights(out / "final"), weights(ref / "final"))
    assert res["test"] == ref_res["test"]
    assert metrics_rows(out) == metrics_rows(ref)
    # Resuming a finished run changes nothing.
    before = tree_digest(out)
    again = run_training(tiny_config(), out, resume=True)
    assert again["test"] == res["test"] and tree_digest(out) == before
    # Killed after the last stage but before final/ and results.json: resume finishes them.
    shutil.rmtree(out / "final")
    (out / "results.json").unlink()
    again = run_training(tiny_config(), out, resume=True)
    assert again["test"] == res["test"] and tree_digest(out) == before


def test_max_epochs_this_run_then_resume(baseline_run, tmp_path):
    out = tmp_path / "slices"
    cfg = baseline_config(epochs=2)
    cfg["runtime"]["max_epochs_this_run"] = 1
    res = run_training(cfg, out)
    assert res["stopped"] and not res["complete"] and not (out / "final").exists()
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 1
    # The run's own config.json resumes it: nothing given at the start is needed again.
    res = run_training(out / "config.json", out, resume=True)
    assert res["complete"]
    assert same(weights(out / "final"), weights(baseline_run[0] / "final"))
    assert res["test"] == baseline_run[1]["test"]


def test_overwrite_from_a_later_stage_keeps_the_earlier_ones(full_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(full_run[0], out)
    cfg = tiny_config()
    cfg["stages"][1]["lr"] = 0.07  # retune stage 2 only: stage 1's result still applies
    run_training(cfg, out, stages=2, overwrite=True)
    assert same(weights(out / "stage1"), weights(full_run[0] / "stage1"))
    assert not same(weights(out / "stage2"), weights(full_run[0] / "stage2"))
    (aside,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert {p.name for p in aside.iterdir()} == {
        "checkpoints",
        "config.json",
        "final",
        "metrics.csv",
        "results.json",
        "stage2",
        "stage3",
    }
    assert [(r["stage"], r["epoch"]) for r in metrics_rows(out)] == [
        ("1", "1"),
        ("2", "1"),
        ("2", "2"),
    ]
    assert json.loads((out / "config.json").read_text())["config"]["stages"][1]["lr"] == 0.07


def test_resume_with_a_different_config_is_refused(full_run, tmp_path):
    out = tmp_path / "r"
    with pytest.raises(Kill):
        run_training(tiny_config(), out, hooks=KillAt(stage=1, epoch=1, step=2))
    other = tiny_config()
    other["stages"][1]["lr"] = 0.07
    with pytest.raises(RunDirError, match=r"different config: stages\.2\.lr: 0\.05 -> 0\.07"):
        run_training(other, out, resume=True)


# ------------------------------------------------------------------------ precision


class AutocastSeen(TrainHooks):
    """Records, per forward pass of the model from the first step on, whether autocast was on."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_step(self, stage, epoch, step, model, loss):
        if (stage, epoch, step) == (1, 1, 0):
            model.register_forward_hook(
                lambda *_: self.seen.append(torch.is_autocast_enabled("cpu"))
            )


def test_bf16_training_on_cpu_records_it_and_tests_in_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(wae.host, "cpu_features", lambda: {"flags": [], "capability": "AVX2"})
    cfg = baseline_config(epochs=1)
    cfg["runtime"]["precision"] = "bf16"
    hooks = AutocastSeen()
    res = run_training(cfg, tmp_path / "bf16", hooks=hooks)
    assert res["complete"]
    saved = json.loads((tmp_path / "bf16" / "results.json").read_text())
    for doc in (res, saved):
        assert doc["precision"] == doc["precision_requested"] == "bf16"
        assert "slower than fp32" in doc["precision_note"]  # no AMX / AVX-512 BF16 (faked)
        assert doc["test"]["precision"] == "fp32"
    # A training step and the validation ran under autocast; the final test's passes (one
    # batch, clean and each of eval.noise_vars) did not.
    n_test = 1 + len(cfg["eval"]["noise_vars"])
    assert hooks.seen[-n_test:] == [False] * n_test
    assert len(hooks.seen) > n_test and all(hooks.seen[:-n_test])


def test_fp16_on_cpu_is_refused_before_anything_is_written(tmp_path):
    cfg = baseline_config()
    cfg["runtime"]["precision"] = "fp16"
    with pytest.raises(wae.runtime.DeviceError, match="needs CUDA"):
        run_training(cfg, tmp_path / "fp16")
    assert not (tmp_path / "fp16").exists() or not any((tmp_path / "fp16").iterdir())


# ------------------------------------------------------------------------ failures


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    class Poison(TrainHooks):
        def on_step(self, stage, epoch, step, model, loss):
            if (epoch, step) == (2, 0):
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    out = tmp_path / "nan"
    cfg = baseline_config(epochs=2)
    cfg["runtime"]["max_epochs_this_run"] = 1
    run_training(cfg, out)  # epoch 1, checkpointed
    cfg["runtime"]["max_epochs_this_run"] = None
    before = tree_digest(out)
    with pytest.raises(TrainingError) as e:
        run_training(cfg, out, resume=True, hooks=Poison())  # goes bad in epoch 2
    msg = str(e.value)
    assert "not finite" in msg and "stage1-epoch0001" in msg and "untouched" in msg
    assert "\n" not in msg
    after = tree_digest(out)
    after.pop("config.json")  # rewritten (same content but for nothing) at the start
    before.pop("config.json")
    assert after == before  # the last good checkpoint and the metrics are untouched
    assert run_training(cfg, out, resume=True)["complete"]  # --resume restarts from it


def test_plain_baseline_trains_in_one_stage(baseline_run, tmp_path):
    out, res = baseline_run
    assert res["complete"] and set(res["stages"]) == {"1"}
    doc, state = load_checkpoint(out / "final")
    assert doc["spec"]["name"] == "small_vgg_28_full"
    assert not any(k.startswith("wae.") for k in state)
    bad = baseline_config()
    bad["stages"][0]["losses"] = {"classification": 1.0, "transform": 0.1}
    with pytest.raises(wae.train.ConfigError, match="plain network"):
        run_training(bad, tmp_path / "bad")


def test_output_dir_protection_and_overwrite(baseline_run, tmp_path, capsys):
    out = tmp_path / "o"
    shutil.copytree(baseline_run[0], out)
    cfg = baseline_config(epochs=2)
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    with pytest.raises(RunDirError, match="already holds a run"):
        run_training(cfg, out)
    assert tree_digest(out) == before
    # The CLI turns it into exit code 2 and a one-paragraph message.
    toml = tmp_path / "base.toml"
    toml.write_text(_to_toml(cfg))
    assert main(["train", "-c", str(toml), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and err.count("\n") == 1
    assert tree_digest(out) == before
    # --overwrite moves our files aside (nothing deleted) and leaves other files alone.
    cfg["stages"][0]["epochs"] = 1
    run_training(cfg, out, overwrite=True)
    aside = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1
    assert {p.name for p in aside[0].iterdir()} == {
        "checkpoints",
        "config.json",
        "final",
        "metrics.csv",
        "results.json",
        "stage1",
    }
    assert same(weights(aside[0] / "final"), weights(baseline_run[0] / "final"))
    assert len(metrics_rows(out)) == 1 and len(metrics_rows(aside[0])) == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_missing_data_fails_before_writing(tmp_path, capsys):
    cfg = baseline_config()
    cfg["data"]["data_dir"] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No Fashion-MNIST train files"):
        run_training(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    cfg["data"] = {"dataset": str(tmp_path / "nowhere")}
    toml = tmp_path / "c.toml"
    toml.write_text(_to_toml(cfg))
    assert main(["train", "-c", str(toml), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_init_checkpoint_must_match(full_run, tmp_path):
    cfg = tiny_config()
    cfg["model"]["kwargs"]["width"] = 16  # another architecture than the checkpoint's
    cfg["model"]["init"] = str(full_run[0] / "stage1")
    with pytest.raises(CheckpointError, match="does not fit"):
        run_training(cfg, tmp_path / "o", stages=2)
    assert not (tmp_path / "o").exists()


def test_pickled_train_state_is_refused(full_run, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    d = tmp_path / "ck"
    d.mkdir()
    (d / "train_state.safetensors").write_bytes(pickle.dumps({"x": Evil()}))
    (d / "train_state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="Could not read the train state"):
        load_train_state(d)
    assert not marker.exists()


def _to_toml(cfg: dict) -> str:
    """Just enough TOML writing for the test configs (tables, [[stages]], inline dicts)."""

    def val(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"{k} = {val(v)}" for k, v in cfg.items() if not isinstance(v, (dict, list))]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{a} = {val(b)}" for a, b in v.items() if b is not None]
    for s in cfg.get("stages", []):
        lines += ["[[stages]]"] + [f"{a} = {val(b)}" for a, b in s.items()]
    return "\n".join(lines) + "\n"
