"""teacher.cache: the teacher's logits of the training images computed once, looked up by
each batch instead of a teacher forward per step (wae.train.soft_targets)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import wae
from wae.train import load_config
from wae.train.config import ConfigError
from wae.train.fingerprint import fingerprint
from wae.train.objective import StageModule
from wae.train.schema import StageConfig, TeacherConfig
from wae.train.soft_targets import IndexedDataset, teacher_logits


@pytest.fixture
def nets(one_thread: None) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = wae.create_model("small_vgg_28_full", num_classes=3, width=4).eval()
    student = wae.create_model("wae_small_vgg_28", num_classes=3, width=4)
    return teacher, student


def test_the_cache_holds_the_teachers_logits_of_each_image_in_order(nets) -> None:
    teacher, _ = nets
    x, y = torch.rand(7, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    ds = TensorDataset(x, y)
    got = teacher_logits(teacher, ds, batch=lambda b: b, autocast=torch.no_grad, batch_size=3)
    with torch.no_grad():
        torch.testing.assert_close(got, teacher(x))
    assert [int(IndexedDataset(ds)[i][2]) for i in range(7)] == list(range(7))
    assert len(IndexedDataset(ds)) == 7


def test_a_cached_step_has_the_losses_of_the_teachers_forward(nets) -> None:
    teacher, student = nets
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    stage = StageConfig(losses={"classification": 0.3, "distillation": 0.7})
    with torch.no_grad():
        soft = torch.cat([torch.zeros(2, 3), teacher(x)])  # rows 2..5 are this batch's
    cached = StageModule(student, stage, teacher, TeacherConfig(), soft_targets=soft)
    plain = StageModule(student, stage, teacher, TeacherConfig())
    student.eval()
    with torch.no_grad():
        a = cached(x, y, torch.arange(2, 6))
        b = plain(x, y)
        wrong = cached(x, y, torch.arange(4))  # other rows: other soft targets
    torch.testing.assert_close(a[1]["distillation"], b[1]["distillation"])
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(wrong[1]["distillation"], b[1]["distillation"])
    # Without rows (validation batches) the teacher runs.
    torch.testing.assert_close(cached(x, y)[0], b[0])


def _cfg(*overrides: str):
    base = {
        "model": {"name": "wae_small_vgg_28", "kwargs": {"width": 4}},
        "data": {"dataset": "fashion-mnist", "augment": False},
        "teacher": {"checkpoint": "runs/t/final", "cache": True},
        "stages": [{"losses": {"classification": 0.3, "distillation": 0.7}}],
    }
    return load_config(base, list(overrides))


def test_the_cache_needs_the_same_images_every_epoch() -> None:
    assert _cfg().teacher.cache
    with pytest.raises(ConfigError, match="data.augment = false"):
        _cfg("data.augment=true")
    with pytest.raises(ConfigError, match="feature_distillation"):
        _cfg("stages.1.losses.feature_distillation=1.0")


def test_a_run_resumes_with_or_without_the_cache() -> None:
    """The same logits, once or every step: not part of what a run computes."""
    assert fingerprint(_cfg()) == fingerprint(_cfg("teacher.cache=false"))
