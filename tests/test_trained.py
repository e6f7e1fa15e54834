"""WAENet.from_trained: a student of a trained classifier, the classifier left untouched."""

import pytest
import torch
import torchvision

import wae
from wae.checkpoint import load_model, save_checkpoint


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "make, size",
    [
        (lambda: wae.create_model("small_vgg_28_full", num_classes=10, width=8), 28),
        (lambda: torchvision.models.resnet18(num_classes=7), 64),
    ],
    ids=["small_vgg", "resnet18"],
)
def test_model_untouched_features_and_classifier_copied(make, size) -> None:
    torch.manual_seed(0)
    teacher = make().eval()
    in_chans = next(m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x = torch.rand(3, in_chans, size, size)
    before, y0 = _state(teacher), teacher(x)
    student = wae.WAENet.from_trained(teacher, size).eval()
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    assert torch.equal(teacher(x), y0)
    assert student.head_low.fc.out_features == y0.shape[1]  # num_classes read from the model
    assert student.init_report["head_low"] == "copied from the trained classifier"
    net = teacher.net if isinstance(teacher, wae.PlainNet) else teacher
    low = student.low_net.body.state_dict()
    shared = [k for k in low if k in net.state_dict()]
    assert shared and all(torch.equal(low[k], net.state_dict()[k]) for k in shared)


def test_student_of_a_named_model_saves_and_loads(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = wae.create_model("small_vgg_28_full", num_classes=10, width=8)
    student = wae.WAENet.from_trained(teacher, 28).eval()
    save_checkpoint(tmp_path / "s", student)
    again, _ = load_model(tmp_path / "s")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(again(x), student(x))


def test_half_resolution_model_is_refused() -> None:
    half = wae.create_model("small_vgg_28_half", num_classes=10, width=8)
    with pytest.raises(wae.BackboneError, match="half-size"):
        wae.WAENet.from_trained(half, 28)
