"""Evaluation (wae.train.evaluate) and the `wae eval` command: accuracy, per class, noise."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

import wae
from wae.checkpoint import save_checkpoint
from wae.cli import main
from wae.data import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES
from wae.train import evaluate
from wae.train.evaluate import noise_for

pytestmark = pytest.mark.usefixtures("one_thread")

has_fmnist = any(DEFAULT_FASHION_MNIST_DIR.glob("t10k-images-idx3-ubyte*"))
needs_fmnist = pytest.mark.skipif(not has_fmnist, reason="needs Fashion-MNIST")


class Spy(nn.Module):
    """Always ranks class 0 first, 1 second, ...; records the range of what it is fed."""

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        self.k = k
        self.w = nn.Parameter(torch.zeros(()))
        self.lo, self.hi = float("inf"), float("-inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        return -torch.arange(self.k, dtype=x.dtype).expand(len(x), -1) + self.w


def labelled(n: int = 50, k: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % k)


def test_accuracy_per_class_and_noise_shape():
    spy = Spy()
    res = evaluate(spy, labelled(), noise_vars=[0.01, 0.1], batch_size=16)
    # Labels 0..9 five times each; the spy always says 0 (top-5: 0..4).
    assert res["num_images"] == 50 and res["num_classes"] == 10 and res["topk"] == 5
    assert res["top1"] == pytest.approx(10.0) and res["top5"] == pytest.approx(50.0)
    assert res["per_class"]["0"] == 100.0 and res["per_class"]["7"] == 0.0
    assert len(res["per_class"]) == 10
    assert [r["var"] for r in res["noise"]] == [0.01, 0.1]
    assert set(res["noise"][0]) == {"var", "std", "top1", "top5"}
    assert res["noise"][1]["std"] == pytest.approx(0.1**0.5)
    assert res["noise_clamped"] is False
    # Not clamped: noise of variance 0.1 takes [0, 1] images outside [0, 1].
    assert spy.lo < 0 and spy.hi > 1
    json.dumps(res)


def test_noise_is_seeded_per_image():
    a = noise_for(torch.tensor([3, 5, 9]), (1, 4, 4), seed=0)
    b = noise_for(torch.tensor([5]), (1, 4, 4), seed=0)
    assert torch.equal(a[1], b[0])  # image 5's noise does not depend on its batch
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(noise_for(torch.tensor([5]), (1, 4, 4), seed=1)[0], b[0])


def test_results_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    ds = labelled()
    r1 = evaluate(model, ds, [0.02, 0.2], batch_size=7)
    r2 = evaluate(model, ds, [0.02, 0.2], batch_size=50)
    for key in ("top1", "top5", "per_class"):
        assert r1[key] == r2[key]
    assert [r["top1"] for r in r1["noise"]] == [r["top1"] for r in r2["noise"]]
    assert model.training is False  # the mode is restored


# ------------------------------------------------------------------------ wae eval


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = wae.create_model("wae_small_vgg_28", num_classes=10, width=8)
    meta = {
        "dataset": "fashion-mnist",
        "classes": list(FASHION_MNIST_CLASSES),
        "input_size": 28,
        "in_chans": 1,
    }
    return save_checkpoint(tmp_path / "ck", model, meta=meta, config={"seed": 0})


@needs_fmnist
def test_cli_eval_table_and_json(checkpoint, capsys, tmp_path):
    args = ["eval", "--checkpoint", str(checkpoint), "--subset", "50", "--noise-var", "0.01", "0.1"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "top-1" in table and "Trouser" in table and "0.01" in table and "not clamped" in table
    out = tmp_path / "r.json"
    assert main([*args, "--json", "--output", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["num_images"] == 50 and len(doc["noise"]) == 2 and len(doc["per_class"]) == 10
    assert doc["dataset"] == "fashion-mnist" and doc["config"] == {"seed": 0}
    assert json.loads(out.read_text()) == doc
    # The same seed gives the same numbers.
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["noise"] == doc["noise"]


@needs_fmnist
def test_cli_eval_one_head(checkpoint, capsys):
    from wae.checkpoint import load_model
    from wae.data import build_dataset

    ds = build_dataset("fashion-mnist", "test", subset=50, seed=0)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    model, _ = load_model(checkpoint)
    with torch.no_grad():
        s_low, s_fused = model.forward_head(model.forward_features(x))
    for head, scores in (("low", s_low), ("fused", s_fused), ("average", model(x))):
        assert (
            main(
                [
                    "eval",
                    "--checkpoint",
                    str(checkpoint),
                    "--subset",
                    "50",
                    "--json",
                    "--head",
                    head,
                ]
            )
            == 0
        )
        doc = json.loads(capsys.readouterr().out)
        expected = (scores.argmax(1) == y).double().mean().item() * 100
        assert doc["head"] == head and doc["top1"] == pytest.approx(expected)


def test_cli_eval_head_needs_a_wae(tmp_path, capsys):
    plain = wae.create_model("small_vgg_28_full", num_classes=10, width=8)
    ck = save_checkpoint(tmp_path / "plain", plain, meta={"dataset": "fashion-mnist"})
    assert main(["eval", "--checkpoint", str(ck), "--head", "low"]) == 2
    assert "--head low needs a WAE checkpoint" in capsys.readouterr().err


def _image_folder(root: Path, classes: int) -> Path:
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(2):
            Image.new("L", (28, 28), color=40 * c + i).save(root / f"c{c}" / f"{i}.png")
    return root


def test_cli_eval_class_count_mismatch(checkpoint, capsys, tmp_path):
    data = _image_folder(tmp_path / "three", 3)
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "has 10 classes, but 3" in err and err.count("\n") == 1


def test_cli_eval_architecture_mismatch(checkpoint, capsys, tmp_path):
    doc = json.loads((checkpoint / "model.json").read_text())
    doc["spec"]["kwargs"]["width"] = 16  # says width 16, holds width-8 weights
    (checkpoint / "model.json").write_text(json.dumps(doc))
    data = _image_folder(tmp_path / "ten", 10)
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data)]) == 2
    assert "do not fit the architecture" in capsys.readouterr().err


def test_cli_eval_refuses_pickled_weights(checkpoint, capsys, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (checkpoint / "model.safetensors").write_bytes(pickle.dumps({"w": Evil()}))
    assert main(["eval", "--checkpoint", str(checkpoint)]) == 2
    assert "Could not read the checkpoint" in capsys.readouterr().err
    assert not marker.exists()  # nothing was unpickled


def test_cli_eval_missing_checkpoint(capsys, tmp_path):
    assert main(["eval", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "is not a wae checkpoint" in capsys.readouterr().err


@needs_fmnist
def test_train_split_is_scored_without_augmentation(checkpoint):
    """`wae eval --split train` scores the images as the model sees them at inference: the
    random crop and flip of training would make two reads of one image differ."""
    from wae.train.eval_checkpoint import checkpoint_dataset

    ds, _ = checkpoint_dataset(checkpoint, split="train", subset=20)
    torch.manual_seed(1)
    first = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.manual_seed(2)
    again = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(first, again)
