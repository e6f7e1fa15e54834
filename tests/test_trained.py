"""WAENet.from_trained: a student of a trained classifier, the classifier left untouched."""

import pytest
import torch
import torchvision
from torch import nn

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


POOLED = "copied from the trained classifier (through its own adaptive pooling)"


def _vgg11_small_mlp() -> torchvision.models.VGG:
    """torchvision's VGG11 with a narrow classifier of VGG's structure (fast to copy)."""
    vgg = torchvision.models.vgg11(num_classes=10)
    vgg.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    widths = [512 * 4, 64, 64]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout()]
    vgg.classifier = nn.Sequential(*layers, nn.Linear(64, 10))
    return vgg


def test_vgg_mlp_classifier_is_reused_through_its_own_pooling() -> None:
    teacher = _vgg11_small_mlp().eval()
    x = torch.rand(2, 3, 64, 64)  # I_L 32x32: VGG's maps are 1x1, pooled to the trained 2x2
    before, y0 = _state(teacher), teacher(x)
    student = wae.WAENet.from_trained(teacher, 64).eval()
    after = teacher.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(teacher(x), y0)
    assert student.head_type == "classifier" and student.init_report["head_low"] == POOLED
    head, trained = student.head_low.classifier.state_dict(), teacher.classifier.state_dict()
    assert head.keys() == trained.keys() and all(torch.equal(head[k], trained[k]) for k in head)
    with torch.no_grad():  # s_L is exactly the trained classifier on the pooled I_L maps
        s_low = student.forward_train(x, decode=False).s_low
        f_low = teacher.features(student.norm_low(student.decompose(x).low))
        assert torch.equal(s_low, teacher.classifier(torch.flatten(teacher.avgpool(f_low), 1)))
    assert student(x).shape == (2, 10)


@pytest.mark.slow
def test_student_of_a_named_vgg_reuses_its_classifier_and_saves(tmp_path) -> None:
    teacher = wae.PlainNet.from_backbone("vgg11", num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    y0 = teacher(x)
    student = wae.WAENet.from_trained(teacher, 64).eval()
    assert torch.equal(teacher(x), y0)
    assert student.wae_spec["kwargs"]["head"] == "classifier"
    assert student.init_report["head_low"] == POOLED
    head, trained = student.head_low.classifier.state_dict(), teacher.net.classifier.state_dict()
    assert all(torch.equal(head[k], trained[k]) for k in trained)
    save_checkpoint(tmp_path / "s", student)
    again, _ = load_model(tmp_path / "s")
    assert torch.equal(again(x), student(x))
