"""wae.checkpoint: a save/load round trip, the typed metadata (CheckpointMeta) and how it
works out sizes, and bad files refused with a CheckpointError (never a bare KeyError or a
half-loaded model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import wae
from wae.checkpoint import (
    FORMAT_VERSION,
    META,
    WEIGHTS,
    CheckpointError,
    CheckpointMeta,
    load_model,
    read_checkpoint_meta,
    read_meta,
    save_checkpoint,
)
from wae.models import PlainNet

META_FM = {
    "dataset": "fashion-mnist",
    "classes": ["a", "b", "c"],
    "num_classes": 3,
    "in_chans": 1,
    "input_size": 28,
    "mean": [0.25],
    "std": [0.5],
}
CONFIG = {"seed": 3, "data": {"dataset": "fashion-mnist", "data_dir": "/data/fm"}}


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return wae.create_model("wae_small_vgg_28", num_classes=3, width=8)


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ck", _tiny(), meta=META_FM, config=CONFIG)


def _edit(directory: Path, change: Any) -> None:
    """Rewrite the checkpoint's model.json with `change(doc)` applied."""
    doc = json.loads((directory / META).read_text())
    change(doc)
    (directory / META).write_text(json.dumps(doc))


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    model = _tiny().eval()
    out = save_checkpoint(tmp_path / "ck", model, meta=META_FM, config=CONFIG)
    assert sorted(p.name for p in out.iterdir()) == sorted([META, WEIGHTS])  # no temp files
    loaded, doc = load_model(out)
    assert not loaded.training and type(loaded) is type(model)
    saved = model.state_dict()
    assert loaded.state_dict().keys() == saved.keys()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, saved[k]), k
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["spec"] == model.wae_spec and doc["meta"] == META_FM and doc["config"] == CONFIG


def test_the_file_format_is_unchanged(ckpt: Path) -> None:
    """model.json keeps its four keys and format 1: checkpoints of earlier versions load."""
    doc = json.loads((ckpt / META).read_text())
    assert set(doc) == {"format_version", "spec", "meta", "config"}
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert (META, WEIGHTS) == ("model.json", "model.safetensors")


def test_an_older_minimal_checkpoint_loads(tmp_path: Path) -> None:
    """A model.json with spec and version only (no meta, no config) still loads; sizes come
    from the registered model."""
    out = save_checkpoint(tmp_path / "ck", _tiny())
    _edit(out, lambda d: (d.pop("meta"), d.pop("config")))
    model, doc = load_model(out)
    assert doc["meta"] == {} and doc["config"] == {}
    m = read_checkpoint_meta(out)
    assert (m.num_classes, m.input_size, m.in_chans) == (3, 28, 1)
    assert m.dataset is None and m.classes is None and m.mean is None


# -- the typed metadata -------------------------------------------------------------------------


def test_checkpoint_meta_fields(ckpt: Path) -> None:
    m = read_checkpoint_meta(ckpt)
    assert isinstance(m, CheckpointMeta)
    assert m.num_classes == 3 and m.input_size == 28 and m.input_hw == (28, 28)
    assert m.in_chans == 1 and m.classes == ("a", "b", "c")
    assert m.dataset == "fashion-mnist" and m.mean == (0.25,) and m.std == (0.5,)
    assert m.arch == "wae_small_vgg_28" and m.spec["builder"] == "registry"
    assert m.meta == META_FM and m.config == CONFIG
    assert m.data_config == {"dataset": "fashion-mnist", "data_dir": "/data/fm"}
    assert read_meta(ckpt) == m.doc


def test_checkpoint_meta_is_frozen(ckpt: Path) -> None:
    m = read_checkpoint_meta(ckpt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.input_size = 32  # type: ignore[misc]


def test_sizes_come_from_meta_then_spec_then_registry(tmp_path: Path) -> None:
    """The recorded metadata first, then the spec's arguments, then the registered model's
    defaults (wae_small_vgg_28: 28x28 grey, 10 classes)."""
    model = wae.create_model("wae_small_vgg_28", width=8)  # num_classes: the default
    bare = read_checkpoint_meta(save_checkpoint(tmp_path / "bare", model))
    assert (bare.num_classes, bare.input_size, bare.in_chans) == (10, 28, 1)
    spec = {**model.wae_spec, "kwargs": {"width": 8, "in_chans": 3, "input_size": [32, 40]}}
    m = CheckpointMeta.from_doc({"spec": spec})
    assert (m.in_chans, m.input_size, m.input_hw) == (3, 32, (32, 40))
    m = CheckpointMeta.from_doc({"spec": spec, "meta": {"input_size": 64, "in_chans": 1}})
    assert (m.in_chans, m.input_size, m.input_hw) == (1, 64, (64, 64))


def test_num_classes_from_spec_then_meta_then_classes() -> None:
    plain = {"builder": "plain", "backbone": "small_vgg", "kwargs": {}}
    assert CheckpointMeta.from_doc({"spec": plain}).num_classes is None  # nobody says
    assert (
        CheckpointMeta.from_doc({"spec": plain, "meta": {"classes": ["x", "y"]}}).num_classes == 2
    )
    m = CheckpointMeta.from_doc({"spec": plain, "meta": {"num_classes": 5, "classes": ["x"]}})
    assert m.num_classes == 5
    spec = {**plain, "kwargs": {"num_classes": 7}}
    assert CheckpointMeta.from_doc({"spec": spec, "meta": {"num_classes": 5}}).num_classes == 7


def test_a_backbone_model_without_sizes(tmp_path: Path) -> None:
    """A network built from a backbone has no registered size: None, for the caller to
    decide (the data's native size, an option)."""
    net = PlainNet.from_backbone("small_vgg", num_classes=4, in_chans=1)
    m = read_checkpoint_meta(save_checkpoint(tmp_path / "p", net))
    assert m.input_size is None and m.input_hw is None and m.in_chans == 1
    assert m.num_classes == 4 and m.arch == "small_vgg"


def test_dataset_falls_back_to_the_run_config(tmp_path: Path) -> None:
    out = save_checkpoint(tmp_path / "ck", _tiny(), config={"data": {"dataset": "cifar10"}})
    assert read_checkpoint_meta(out).dataset == "cifar10"


# -- bad files ----------------------------------------------------------------------------------


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a wae checkpoint"):
        read_checkpoint_meta(tmp_path / "missing")
    out = save_checkpoint(tmp_path / "ck", _tiny())
    (out / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS):
        load_model(out)


def test_corrupt_json(ckpt: Path) -> None:
    (ckpt / META).write_text("{not json")
    with pytest.raises(CheckpointError, match="Could not read"):
        read_checkpoint_meta(ckpt)


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_other_format_versions(ckpt: Path, version: Any) -> None:
    _edit(ckpt, lambda d: d.update(format_version=version))
    with pytest.raises(CheckpointError, match="format_version"):
        read_checkpoint_meta(ckpt)


BAD_DOCS = {
    "meta-not-object": (lambda d: d.update(meta=[1]), "'meta' must be a JSON object"),
    "config-not-object": (lambda d: d.update(config="x"), "'config' must be a JSON object"),
    "size-too-small": (lambda d: d["meta"].update(input_size=4), "input_size"),
    "size-bool": (lambda d: d["meta"].update(input_size=True), "input_size"),
    "chans": (lambda d: d["meta"].update(in_chans=7), "in_chans"),
    "classes": (lambda d: d["meta"].update(classes="abc"), "classes"),
    "num-classes": (lambda d: d["meta"].update(num_classes=0), "num_classes"),
    "dataset": (lambda d: d["meta"].update(dataset=3), "dataset"),
    "mean": (lambda d: d["meta"].update(mean=["x"]), "mean"),
    "std-nan": (lambda d: d["meta"].update(std=[float("nan")]), "std"),
    "no-spec": (lambda d: d.pop("spec"), "spec"),
    "spec-kwarg": (lambda d: d["spec"]["kwargs"].update(path="/etc"), "path"),
    "spec-builder": (lambda d: d["spec"].update(builder="pickle"), "builder"),
}


@pytest.mark.parametrize("change,match", BAD_DOCS.values(), ids=list(BAD_DOCS))
def test_bad_metadata_is_a_checkpoint_error(ckpt: Path, change: Any, match: str) -> None:
    _edit(ckpt, change)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint_meta(ckpt)
    with pytest.raises(CheckpointError, match=match):
        load_model(ckpt)


def test_from_doc_refuses_what_is_not_a_document() -> None:
    with pytest.raises(CheckpointError, match="JSON object"):
        CheckpointMeta.from_doc([1, 2])  # type: ignore[arg-type]


def test_corrupt_weights(ckpt: Path) -> None:
    (ckpt / WEIGHTS).write_bytes(b"\x00garbage")
    read_checkpoint_meta(ckpt)  # the metadata alone does not read the weights
    with pytest.raises(CheckpointError, match="Could not read"):
        load_model(ckpt)


def test_weights_of_another_architecture(ckpt: Path) -> None:
    _edit(ckpt, lambda d: d["spec"]["kwargs"].update(width=16))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(ckpt)


def test_another_class_count(ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="has 3 classes, but 5"):
        load_model(ckpt, num_classes=5)
    assert load_model(ckpt, num_classes=3)[0] is not None
