"""A WAE student initialised from a trained full-resolution classifier (the paper's start).

The I_L network is a copy of the trained feature extractor; the s_L head is the trained
classifier where the shapes allow: global pooling + one linear layer (ResNets, timm models, our
SmallVGG), or a torchvision VGG's / AlexNet's flattened MLP behind its own adaptive pooling,
which maps the half-size feature maps to the size it was trained on (head "classifier"). The
I_H branch and the fusion head start fresh. The user's model
is never changed: everything is built from a deep copy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import first_line
from ._backbone import (
    BackboneError,
    build_features,
    classifier_parts,
    runnable_sides,
    size_advice,
)
from ._registry import model_cfg
from .heads import ClassifierHead, LinearHead
from .plain import PlainNet
from .wae_net import WAENet

__all__ = [
    "from_trained",
    "init_from_trained",
    "is_full_resolution",
    "spec_backbone",
    "trained_classifier",
]


def _first_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise BackboneError(
            f"{type(model).__name__} has no Conv2d: WAE accelerates convolutional networks."
        )
    return conv


def _num_classes(model: nn.Module, in_chans: int, input_size: Sequence[int]) -> int:
    """K from one forward pass of a zero image (eval mode restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(
                torch.zeros(1, in_chans, *input_size, device=_first_conv(model).weight.device)
            )
    except RuntimeError as e:
        sides, tried = runnable_sides([(model, in_chans)], input_size[0], step=16, hi=1024)
        raise BackboneError(
            f"{type(model).__name__} cannot run on {input_size[0]}x{input_size[1]} images "
            f"({first_line(e)}). {size_advice(sides, input_size[0], tried, 16)}"
        ) from e
    finally:
        model.train(was_training)
    if not (isinstance(out, torch.Tensor) and out.dim() == 2):
        raise BackboneError(
            f"{type(model).__name__} does not return logits (N, K) for a (1, {in_chans}, "
            f"{input_size[0]}, {input_size[1]}) image: pass a trained classifier."
        )
    return int(out.shape[1])


def trained_classifier(model: nn.Module) -> nn.Linear | None:
    """The linear layer a global-pool + linear classifier ends in, or None (e.g. VGG's MLP)."""
    if hasattr(model, "get_classifier"):  # timm, and our SmallVGG
        clf = model.get_classifier()
    else:
        clf = getattr(model, "fc", None)  # torchvision ResNets, RegNets, ...
    return clf if isinstance(clf, nn.Linear) else None


def is_full_resolution(model: nn.Module) -> bool:
    """Whether `model` classifies the full-resolution image (not a WAE, not on I_R)."""
    return not isinstance(model, WAENet) and not getattr(model, "half", False)


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, PlainNet):
        if model.half:
            raise BackboneError(
                "This PlainNet runs on the half-size image (I_R); pass the full-resolution "
                "network to accelerate."
            )
        return model.net
    return model


def _backbone_name(model: nn.Module) -> tuple[str | None, dict[str, Any]]:
    return spec_backbone(getattr(model, "wae_spec", None) or {})


def spec_backbone(spec: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(backbone name, its builder arguments) of a full-resolution network's build spec (a
    ``wae_spec`` or a checkpoint's), so a student can be built by name and rebuilt from a
    checkpoint's data; (None, {}) for a network not built by name or not plain."""
    kwargs = dict(spec.get("kwargs", {}))
    if spec.get("builder") == "registry":
        cfg = model_cfg(spec["name"])
        if cfg.get("kind") != "plain" or "backbone" not in cfg:
            return None, {}
        name, kwargs = cfg["backbone"], {**cfg.get("model_args", {}), **kwargs}
    elif spec.get("builder") == "plain":
        name = spec["backbone"]
    else:
        return None, {}
    if kwargs.get("half") or str(spec.get("name", "")).endswith("_half"):
        return None, {}
    for key in ("num_classes", "in_chans", "input_size", "half", "pretrained"):
        kwargs.pop(key, None)
    return name, kwargs


def from_trained(
    model: nn.Module,
    input_size: int | Sequence[int] = 224,
    *,
    in_chans: int | None = None,
    head: str = "auto",
    **kwargs: Any,
) -> WAENet:
    """A WAENet whose I_L network and s_L head start from the trained `model` (untouched).

    ``num_classes`` and ``in_chans`` are read from `model`; other keyword arguments go to
    :meth:`WAENet.from_backbone`. A model built by name (``wae.create_model``, a checkpoint
    of ours) gives a student that checkpoints rebuild from data. ``student.init_report``
    says what was copied.
    """
    net = _unwrap(model)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    in_chans = in_chans or _first_conv(net).in_channels
    num_classes = _num_classes(net, in_chans, size)
    name, backbone_kwargs = _backbone_name(model)
    if head == "auto" and classifier_parts(net) is not None:
        head = "classifier"  # a VGG's / AlexNet's MLP classifier, through its own pooling
    student = WAENet.from_backbone(
        name or copy.deepcopy(net),
        num_classes,
        in_chans=in_chans,
        input_size=size,
        head=head,
        **backbone_kwargs,
        **kwargs,
    )
    if name is None:  # built around a copy of the trained network: its features are in
        student.init_report = _report(_copy_classifier(net, student))
    else:  # built fresh by name: copy the trained weights in
        init_from_trained(student, model)
    return student


def init_from_trained(student: nn.Module, trained: nn.Module) -> dict[str, str]:
    """Start `student` from the trained full-resolution classifier `trained` (untouched), in
    place; returns (and sets as ``student.init_report``) what was copied.

    A WAENet gets the trained feature extractor as its I_L network and the trained linear
    classifier as s_L's head (when the shapes match); a half-size PlainNet (I_R) the whole
    trained network. The architectures must match (e.g. both built from the same backbone).
    """
    net = _unwrap(trained)
    if isinstance(student, PlainNet):
        student.net.load_state_dict(net.state_dict())
        report = {"net": "copied from the trained network (whole)"}
    elif isinstance(student, WAENet):
        in_chans = _first_conv(net).in_channels
        features = build_features(copy.deepcopy(net), in_chans)
        student.low_net.load_state_dict(features.state_dict())
        report = _report(_copy_classifier(net, student))
    else:
        raise BackboneError(
            f"Cannot start a {type(student).__name__} from a trained network: only a WAENet "
            f"or a half-size PlainNet can."
        )
    student.init_report = report
    return report


def _report(head_low: str) -> dict[str, str]:
    return {
        "low_net": "copied from the trained feature extractor",
        "head_low": head_low,
        "high_net": "fresh (quarter width)",
        "head_fused": "fresh",
    }


def _copy_classifier(net: nn.Module, student: WAENet) -> str:
    """Copy the trained classifier into s_L's head when the shapes match."""
    parts = classifier_parts(net)
    if isinstance(student.head_low, ClassifierHead) and parts is not None:
        return _copy_pooled(parts, student.head_low)
    clf = trained_classifier(net)
    fc = student.head_low.fc if isinstance(student.head_low, LinearHead) else None
    if clf is None or fc is None or fc.weight.shape != clf.weight.shape:
        return "fresh (the trained classifier is not global pooling + one linear layer)"
    with torch.no_grad():
        fc.weight.copy_(clf.weight)
        if clf.bias is not None:
            fc.bias.copy_(clf.bias)
    return "copied from the trained classifier"


def _copy_pooled(parts: tuple[nn.AdaptiveAvgPool2d, nn.Module], head: ClassifierHead) -> str:
    """Copy a trained (adaptive pooling, classifier) into a ClassifierHead of the same shapes."""
    pool, clf = parts
    if getattr(head.pool, "output_size", None) != pool.output_size:
        return "fresh (the trained classifier pools to another size)"
    src, dst = clf.state_dict(), head.classifier.state_dict()
    if src.keys() != dst.keys() or any(src[k].shape != dst[k].shape for k in src):
        return "fresh (the trained classifier's layers differ in shape)"
    head.classifier.load_state_dict(src)
    return "copied from the trained classifier (through its own adaptive pooling)"
