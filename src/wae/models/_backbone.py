"""Turning a user's CNN into what WAENet needs: a feature extractor and its quarter-width twin.

A backbone can be given as
- a torchvision classification model name ("vgg16", "resnet50", "mobilenet_v3_small", ...),
- "timm:<name>" for any timm model,
- the name of one of our small backbones ("small_vgg"),
- an nn.Module: a classifier (its last 4-D activation before global pooling is found by
  tracing) or a feature extractor returning (N, C, h, w), or any model with timm's
  `forward_features`.

The feature extractor is the network "unchanged": the same modules and weights, cut before
its pooling and classifier. The I_H branch is a *fresh* copy with every convolution's
channel count divided by 4: natively where the family has a width setting (VGG configs, our
small VGG), otherwise by uniform 75 % channel pruning of the copy with Torch-Pruning, which
follows residual, concatenation and depthwise dependencies for us.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..errors import WAEError

__all__ = [
    "BackboneError",
    "FeatureExtractor",
    "build_classifier",
    "build_features",
    "quarter_width",
    "set_in_chans",
]

_PROBE_SIZE = 224  # the graph cut is found at this input size (stride-32 nets give 7x7 maps)


class BackboneError(WAEError, ValueError):
    """A backbone that cannot be built, cut into features, or slimmed; the message says why."""


class FeatureExtractor(nn.Module):
    """Wraps a module so that forward returns its last conv feature map (N, C, h, w)."""

    def __init__(self, body: nn.Module, method: str = "forward", family: str = "generic") -> None:
        super().__init__()
        self.body = body
        self.method = method  # "forward" or "forward_features" (timm)
        self.family = family  # "vgg" / "small_vgg" have a native quarter-width twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "forward_features":
            return self.body.forward_features(x)
        return self.body(x)


# --- building classifiers by name -------------------------------------------------------------


def _small_backbones() -> dict[str, Callable[..., nn.Module]]:
    from .small_vgg import small_vgg

    return {"small_vgg": small_vgg}


def build_classifier(
    spec: str | nn.Module,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """A whole classifier (N, in_chans, H, W) -> (N, num_classes) from a name or a module."""
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, str):
        raise BackboneError(
            f"A backbone is a model name or an nn.Module, got {type(spec).__name__}."
        )
    if spec.startswith("timm:"):
        import timm

        name = spec[len("timm:") :]
        try:
            return timm.create_model(
                name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
            )
        except RuntimeError as e:  # timm raises RuntimeError for unknown names
            raise BackboneError(
                f"timm has no model {name!r} ({e}). List them with timm.list_models()."
            ) from e
    small = _small_backbones()
    if spec in small:
        return small[spec](num_classes=num_classes, in_chans=in_chans, **kwargs)
    import torchvision

    if spec not in torchvision.models.list_models(module=torchvision.models):
        raise BackboneError(
            f"Unknown backbone {spec!r}. Use a torchvision classification model name "
            f"(e.g. 'vgg16', 'resnet50'), 'timm:<name>' for a timm model, one of "
            f"{sorted(small)}, or pass an nn.Module."
        )
    weights = "DEFAULT" if pretrained else None
    if pretrained and num_classes != 1000:
        raise BackboneError(
            "pretrained=True loads ImageNet weights with a 1000-class classifier; WAENet "
            "replaces the classifier anyway, so build the backbone with num_classes=1000."
        )
    model = torchvision.models.get_model(spec, weights=weights, num_classes=num_classes, **kwargs)
    if in_chans != 3:
        set_in_chans(model, in_chans)
    return model


def _conv_like(m: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A fresh ungrouped Conv2d with `m`'s geometry and the given channel counts."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )


def set_in_chans(model: nn.Module, in_chans: int) -> nn.Module:
    """Replace the first Conv2d of `model` by one taking `in_chans` input channels (in place).

    Pretrained weights of that conv are averaged over the RGB channels and repeated, as timm
    does, so a grey or multi-channel input keeps a sensible start.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels == in_chans:
                return model
            if m.groups != 1:
                raise BackboneError(f"The first convolution {name!r} is grouped; cannot re-plumb.")
            new = _conv_like(m, in_chans, m.out_channels)
            with torch.no_grad():
                w = m.weight.mean(1, keepdim=True) * (m.in_channels / in_chans)
                new.weight.copy_(w.repeat(1, in_chans, 1, 1))
                if m.bias is not None:
                    new.bias.copy_(m.bias)
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            return model
    raise BackboneError("The backbone has no Conv2d: it is not a convolutional network.")


# --- cutting a classifier into its feature extractor -------------------------------------------


def build_features(model: nn.Module, in_chans: int = 3) -> FeatureExtractor:
    """The classifier's body up to its last conv feature map: (N, C, H, W) -> (N, C', h, w).

    Rules, in order: a timm-style `forward_features`; torchvision VGG/AlexNet-style
    `.features`; a module whose output is already 4-D; otherwise trace the model with
    torch.fx and cut at the last operation whose output is 4-D with spatial size > 1 at a
    224x224 input (i.e. just before global pooling / flatten).
    """
    from torchvision.models import VGG, AlexNet

    from .small_vgg import SmallVGG

    if hasattr(model, "forward_features") and callable(model.forward_features):
        family = "small_vgg" if isinstance(model, SmallVGG) else "generic"
        fe = FeatureExtractor(model, "forward_features", family)
        _drop_unused(model, fe, in_chans)
        return fe
    if isinstance(model, VGG):
        return FeatureExtractor(model.features, family="vgg")
    if isinstance(model, AlexNet):
        return FeatureExtractor(model.features)
    probe = torch.zeros(1, in_chans, _PROBE_SIZE, _PROBE_SIZE)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as e:
        raise BackboneError(
            f"Running the backbone on a (1, {in_chans}, {_PROBE_SIZE}, {_PROBE_SIZE}) probe "
            f"failed: {e}. Pass a module that takes images of {in_chans} channel(s)."
        ) from e
    finally:
        model.train(was_training)
    if isinstance(out, torch.Tensor) and out.dim() == 4:
        return FeatureExtractor(model)
    return FeatureExtractor(_cut_before_pooling(model, probe))


def _drop_unused(model: nn.Module, fe: nn.Module, in_chans: int) -> None:
    """Replace the modules `fe` never calls (classifier, timm's post-pooling conv_head) by
    Identity: dead weights would bloat checkpoints and break DDP's gradient reduction."""
    called: set[int] = set()
    hooks = [
        m.register_forward_hook(lambda mod, i, o: called.add(id(mod))) for m in model.modules()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fe(torch.zeros(1, in_chans, 64, 64))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    dropped: list[str] = []
    for name, m in list(model.named_modules()):
        if not name or any(name.startswith(d + ".") for d in dropped):
            continue
        if id(m) not in called and any(True for _ in m.parameters()):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.Identity())
            dropped.append(name)


def _cut_before_pooling(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    """Trace `model` and keep its graph up to the last 4-D activation with spatial size > 1."""
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.symbolic_trace(model)
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(probe)
    except Exception as e:
        raise BackboneError(
            f"Could not find the feature map of {type(model).__name__}: it is not traceable "
            f"by torch.fx ({type(e).__name__}: {e}). Pass a feature extractor instead: an "
            f"nn.Module returning the last conv feature map (N, C, h, w)."
        ) from e
    last = None
    for node in gm.graph.nodes:
        shape = getattr(node.meta.get("tensor_meta"), "shape", None)
        is_op = node.op not in ("placeholder", "output")
        if is_op and shape is not None and len(shape) == 4 and max(shape[2:]) > 1:
            last = node
    if last is None:
        raise BackboneError(
            f"{type(model).__name__} produces no 4-D feature map: is it a CNN classifier?"
        )
    output = next(n for n in gm.graph.nodes if n.op == "output")
    output.args = (last,)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.train()
    return gm


# --- the quarter-width copy -------------------------------------------------------------------


def _reinit(module: nn.Module) -> None:
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


_SLIMMABLE = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Dropout,
    nn.Identity,
)


def _slim_sequential(seq: nn.Sequential, in_chans: int, divisor: int) -> nn.Sequential | None:
    """Rebuild a plain conv stack (VGG's or AlexNet's `features`) with channels / divisor,
    or None if it holds anything but ungrouped convs, BN, activations, pooling, dropout."""
    if not all(isinstance(m, _SLIMMABLE) for m in seq):
        return None
    if any(isinstance(m, nn.Conv2d) and (m.groups != 1 or m.out_channels % divisor) for m in seq):
        return None
    layers: list[nn.Module] = []
    ch = in_chans
    for m in seq:
        if isinstance(m, nn.Conv2d):
            out = m.out_channels // divisor
            layers.append(_conv_like(m, ch, out))
            ch = out
        elif isinstance(m, nn.BatchNorm2d):
            layers.append(nn.BatchNorm2d(ch, m.eps, m.momentum, m.affine, m.track_running_stats))
        else:
            layers.append(copy.deepcopy(m))
    return nn.Sequential(*layers)


def _native_quarter_width(features: nn.Module, in_chans: int, divisor: int) -> nn.Module | None:
    """The slim twin built directly (a width setting, or a plain conv stack rebuilt), or None."""
    family = getattr(features, "family", "generic")
    if family == "small_vgg":
        return FeatureExtractor(
            features.body.slim_copy(divisor, in_chans), "forward_features", family
        )
    body = getattr(features, "body", None)
    if isinstance(body, nn.Sequential) and getattr(features, "method", "") == "forward":
        slim = _slim_sequential(body, in_chans, divisor)
        if slim is not None:
            return FeatureExtractor(slim, family=family)
    return None


def quarter_width(
    features: nn.Module, *, in_chans: int, divisor: int = 4, probe_size: int = 64
) -> nn.Module:
    """A freshly initialised copy of `features` with every conv's channel count / `divisor`,
    taking `in_chans` input channels.

    Built directly where possible (SmallVGG's width setting; plain conv stacks such as
    VGG's and AlexNet's `features`, rebuilt layer by layer); otherwise the copy is slimmed
    uniformly with Torch-Pruning (ratio 1 - 1/divisor on every prunable layer, the input
    channels excepted).
    """
    native = _native_quarter_width(features, in_chans, divisor)
    if native is not None:
        return native
    import torch_pruning as tp

    slim = copy.deepcopy(features)
    slim.eval()
    first = next((m for m in slim.modules() if isinstance(m, nn.Conv2d)), None)
    device = first.weight.device if first is not None else torch.device("cpu")
    on_meta = device.type == "meta"
    if on_meta:  # Torch-Pruning needs real tensors; the copy is re-initialised anyway
        slim, device = slim.to_empty(device="cpu"), torch.device("cpu")
    example = torch.zeros(
        1, first.in_channels if first else in_chans, probe_size, probe_size, device=device
    )
    try:
        with torch.no_grad():
            full_chans = slim(example).shape[1]
        # The explicit device also overrides a caller's `with torch.device("meta")`.
        with warnings.catch_warnings(), torch.device(device):
            warnings.simplefilter("ignore")  # Torch-Pruning is chatty about unwrapped params
            pruner = tp.pruner.MetaPruner(
                slim,
                example,
                importance=tp.importance.RandomImportance(),  # fresh copy: any channels do
                pruning_ratio=1.0 - 1.0 / divisor,
            )
            pruner.step()
        with torch.no_grad():
            slim_chans = slim(example).shape[1]
    except Exception as e:
        raise BackboneError(
            f"Could not build the quarter-width I_H branch of {type(features).__name__} with "
            f"Torch-Pruning ({type(e).__name__}: {e}). Build it yourself and pass it as "
            f"WAENet(..., high_net=<module>), a network taking I_H and returning a feature map."
        ) from e
    if slim_chans * divisor > full_chans + divisor:
        raise BackboneError(
            f"Torch-Pruning could not slim {type(features).__name__} (its output keeps "
            f"{slim_chans} of {full_chans} channels). Build the quarter-width "
            f"branch yourself and pass it as WAENet(..., high_net=<module>)."
        )
    _reinit(slim)
    set_in_chans(slim, in_chans)
    slim.train()
    return slim.to("meta") if on_meta else slim
