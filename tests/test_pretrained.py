"""The networks wae ships (wae.pretrained): used only when their files match their card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wae import pretrained
from wae.checkpoint import META, WEIGHTS, CheckpointError, load_model, save_checkpoint
from wae.models import create_model


def test_the_demo_teacher_ships_and_matches_its_card() -> None:
    assert pretrained.DEMO_TEACHER in pretrained.available()
    card = pretrained.pretrained_card(pretrained.DEMO_TEACHER)
    assert card["recipe"] == "fashion_mnist_baseline"
    assert card["command"].startswith("python scripts/build_demo_teacher.py")
    assert 80 < card["test"]["top1"] <= 100 and card["test"]["num_images"] == 10000
    model, doc = load_model(pretrained.pretrained_dir(pretrained.DEMO_TEACHER))
    meta = doc["meta"]
    assert meta["input_size"] == 28 and meta["num_classes"] == 10
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package weights folder holding one small network, "tiny"."""
    run = tmp_path / "run"
    save_checkpoint(run, create_model("small_vgg_28_full", width=4), meta={"input_size": 28})
    root = tmp_path / "weights"
    pretrained.write_pretrained(run, "tiny", {"recipe": "r", "command": "c"}, root=root)
    monkeypatch.setattr(pretrained, "_root", lambda: root)
    return root / "tiny"


def test_a_copy_is_the_shipped_checkpoint_and_is_not_rewritten(shipped: Path, tmp_path: Path):
    dest = pretrained.copy_pretrained("tiny", tmp_path / "out" / "final")
    for f in (META, WEIGHTS):
        assert (dest / f).read_bytes() == (shipped / f).read_bytes()
    mtime = (dest / WEIGHTS).stat().st_mtime_ns
    pretrained.copy_pretrained("tiny", dest)
    assert (dest / WEIGHTS).stat().st_mtime_ns == mtime
    card = json.loads((shipped / pretrained.CARD).read_text())
    assert set(card["sha256"]) == {META, WEIGHTS} and card["recipe"] == "r"


def test_a_changed_file_is_refused_naming_it(shipped: Path, tmp_path: Path) -> None:
    data = bytearray((shipped / WEIGHTS).read_bytes())
    data[-1] ^= 1
    (shipped / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"does not match its card.*model\.safetensors"):
        pretrained.copy_pretrained("tiny", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing copied


def test_an_unknown_name_or_a_damaged_card_is_a_clear_error(shipped: Path) -> None:
    with pytest.raises(CheckpointError, match="No packaged network named 'nope'.*tiny"):
        pretrained.pretrained_dir("nope")
    (shipped / pretrained.CARD).write_text("{}")
    with pytest.raises(CheckpointError, match="not a valid card"):
        pretrained.pretrained_card("tiny")
