"""Turning a user's CNN into what WAENet needs: a feature extractor and its quarter-width twin.

A backbone can be given as
- a torchvision classification model name ("vgg16", "resnet50", "mobilenet_v3_small", ...),
- "timm:<name>" for any timm model,
- the name of one of our small backbones ("small_vgg"),
- "pkg.module:function", a user's own function returning a classifier (imported by name),
- an nn.Module: a classifier (its last 4-D activation before global pooling is found by
  tracing) or a feature extractor returning (N, C, h, w), or any model with timm's
  `forward_features`.

The feature extractor is the network "unchanged": the same modules and weights, cut before
its pooling and classifier; it must be a convolutional network (a 4-D feature map, not the
tokens of a transformer). Its quarter-width twin (the I_H branch) is built in `_slim`.
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from ..autoencoder import check_count
from ..errors import WAEError
from ..macs import BoundCall
from .spec import is_factory_name

__all__ = [
    "BackboneError",
    "FeatureExtractor",
    "build_classifier",
    "build_features",
    "check_backbone_name",
    "classifier_parts",
    "import_factory",
    "runnable_sides",
    "set_in_chans",
    "size_advice",
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
        # (timm name, its kwargs, model class) of a timm backbone: its width setting can
        # build the twin where Torch-Pruning cannot.
        self.timm_args: tuple[str, dict, type] | None = None

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
    check_count(num_classes, "num_classes", "classes")
    check_count(in_chans, "in_chans", "image channels")
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, str):
        raise BackboneError(
            f"A backbone is a model name or an nn.Module, got {type(spec).__name__}."
        )
    try:
        if is_factory_name(spec):
            return _factory_classifier(spec, num_classes, in_chans, pretrained, kwargs)
        if spec.startswith("timm:"):
            return _timm_classifier(spec[len("timm:") :], num_classes, in_chans, pretrained, kwargs)
        return _named_classifier(spec, num_classes, in_chans, pretrained, kwargs)
    except TypeError as e:  # an argument the builder does not take
        if "argument" not in str(e):
            raise
        raise BackboneError(
            f"The backbone {spec!r} cannot be built with the arguments {sorted(kwargs)}: {e}. "
            f"Pass only arguments its builder takes."
        ) from e


def check_backbone_name(name: str) -> None:
    """Raise BackboneError unless `name` is a backbone we can build (nothing is built)."""
    if name.startswith("timm:"):
        import timm

        if not timm.is_model(name[len("timm:") :]):
            import difflib

            close = difflib.get_close_matches(name[5:], timm.list_models(), n=4)
            hint = f" Similar: {', '.join(close)}." if close else ""
            raise BackboneError(f"timm has no model {name[5:]!r}.{hint} See timm.list_models().")
        return
    if is_factory_name(name):
        import_factory(name)
        return
    if name in _small_backbones():
        return
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise BackboneError(
            f"Unknown backbone {name!r}. Use a torchvision classification model name (e.g. "
            f"'vgg16', 'resnet18'), 'timm:<name>' for a timm model, one of "
            f"{sorted(_small_backbones())}, or 'pkg.module:function' for your own."
        )


def import_factory(name: str) -> Callable[..., Any]:
    """The function a "pkg.module:function" backbone name names (imports its module)."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackboneError(
            f"The backbone {name!r} names your function {attr!r} in the module "
            f"{module_name!r}, which cannot be imported ({type(e).__name__}: {e}). Put its "
            f"directory on PYTHONPATH (e.g. PYTHONPATH=. for a file in the current directory) "
            f"or install the package that provides it."
        ) from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise BackboneError(
            f"The module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
            f"{attr!r}, named by the backbone {name!r}. Name a function of it that returns "
            f"an nn.Module classifier."
        )
    if not callable(factory):
        raise BackboneError(
            f"{name!r} is a {type(factory).__name__}, not a function: the backbone must "
            f"name a function (or class) returning an nn.Module classifier."
        )
    return factory


def _accepts(fn: Callable[..., Any], arg: str) -> bool:
    """Whether `fn` takes the keyword `arg` (by name or through **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: pass nothing extra
        return False
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD or (p.name == arg and p.kind in named)
        for p in params
    )


def _factory_classifier(
    name: str, num_classes: int, in_chans: int, pretrained: bool, kwargs: dict
) -> nn.Module:
    """Call the user's factory with num_classes / in_chans when it takes them, and `kwargs`."""
    factory = import_factory(name)
    args = dict(kwargs)
    extra = {"num_classes": num_classes, "in_chans": in_chans, "pretrained": pretrained}
    for key, value in extra.items():
        if _accepts(factory, key) and (key != "pretrained" or pretrained):
            args[key] = value
    if pretrained and "pretrained" not in args:
        raise BackboneError(
            f"pretrained=True, but {name!r} takes no 'pretrained' argument: load the "
            f"weights in your function, and leave pretrained unset."
        )
    model = factory(**args)
    if not isinstance(model, nn.Module):
        raise BackboneError(
            f"{name!r} returned a {type(model).__name__}, not an nn.Module: the function "
            f"must return a classifier (N, in_chans, H, W) -> (N, num_classes)."
        )
    if "in_chans" not in args and in_chans != 3:
        set_in_chans(model, in_chans)
    return model


def _timm_classifier(
    name: str, num_classes: int, in_chans: int, pretrained: bool, kwargs: dict
) -> nn.Module:
    import timm

    try:
        model = timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except RuntimeError as e:  # timm raises RuntimeError for unknown names
        raise BackboneError(
            f"timm has no model {name!r} ({e}). List them with timm.list_models()."
        ) from e
    # What its quarter-width twin may be rebuilt from (the family's width setting).
    model.wae_timm_args = (name, dict(kwargs), type(model))
    return model


def _named_classifier(
    spec: str, num_classes: int, in_chans: int, pretrained: bool, kwargs: dict
) -> nn.Module:
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
        fe.timm_args = getattr(model, "wae_timm_args", None)
        _check_feature_map(model, _drop_unused(model, fe, in_chans), in_chans)
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


def _has_attention(model: nn.Module) -> bool:
    return any("Attention" in type(m).__name__ for m in model.modules())


def _not_a_cnn(model: nn.Module, why: str, in_chans: int) -> BackboneError:
    """The error for a backbone without a usable conv feature map, saying what it looks like."""
    name = type(model).__name__
    if _has_attention(model):
        return BackboneError(
            f"{name} cannot be a WAENet backbone: {why}. It is a transformer (it has attention "
            f"layers), not a convolutional network; WAENet runs a CNN on the half-size "
            f"sub-images and needs its (N, C, h, w) feature map. Use a CNN backbone, e.g. "
            f"'resnet18', 'timm:resnet18' or 'timm:efficientnet_b0'."
        )
    return BackboneError(
        f"{name} cannot be a WAENet backbone: {why}. WAENet needs a convolutional network "
        f"that takes {in_chans}-channel images of any size and returns an (N, C, h, w) "
        f"feature map, e.g. 'resnet18' or 'timm:resnet18'."
    )


def _check_feature_map(model: nn.Module, out: object, in_chans: int) -> None:
    """Refuse a `forward_features` output that is not an NCHW conv feature map."""
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if not (isinstance(out, torch.Tensor) and out.dim() == 4):
        raise _not_a_cnn(model, f"its forward_features returns {shape}, not (N, C, h, w)", in_chans)
    nf = getattr(model, "num_features", None)
    if isinstance(nf, int) and out.shape[1] != nf and out.shape[-1] == nf:
        raise _not_a_cnn(model, f"its features {shape} are channels-last (N, h, w, C)", in_chans)


def _drop_unused(model: nn.Module, fe: nn.Module, in_chans: int) -> object:
    """Replace the modules `fe` never calls (classifier, timm's post-pooling conv_head) by
    Identity: dead weights would bloat checkpoints and break DDP's gradient reduction.
    Returns the output of the (1, in_chans, 64, 64) probe this needs."""
    called: set[int] = set()
    hooks = [
        m.register_forward_hook(lambda mod, i, o: called.add(id(mod))) for m in model.modules()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = fe(torch.zeros(1, in_chans, 64, 64))
    except Exception as e:
        msg = str(e).split("\n")[0].rstrip(". ")
        why = f"it fails on a (1, {in_chans}, 64, 64) probe ({type(e).__name__}: {msg})"
        raise _not_a_cnn(model, why, in_chans) from e
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
    return out


def _attention_after(gm: torch.fx.GraphModule, last: torch.fx.Node) -> bool:
    """Whether the traced graph runs attention after `last` (a transformer's body, which a
    cut there would drop)."""
    nodes = list(gm.graph.nodes)
    for node in nodes[nodes.index(last) + 1 :]:
        if node.op == "call_module":
            if "Attention" in type(gm.get_submodule(node.target)).__name__:
                return True
        elif node.op == "call_function" and "attention" in getattr(node.target, "__name__", ""):
            return True
    return False


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
    if _attention_after(gm, last):
        why = f"its last 4-D activation ({last.name}) comes before its attention layers"
        raise _not_a_cnn(model, why, probe.shape[1])
    output = next(n for n in gm.graph.nodes if n.op == "output")
    output.args = (last,)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.train()
    return gm


def classifier_parts(model: nn.Module) -> tuple[nn.AdaptiveAvgPool2d, nn.Module] | None:
    """The adaptive pooling and classifier of a torchvision VGG or AlexNet (the model's own
    modules, not copies), whose forward is classifier(flatten(avgpool(features(x)))): the
    pooling maps any feature-map size to the one the classifier was trained on. None for
    other models (their forward is not known to be that)."""
    from torchvision.models import VGG, AlexNet

    if isinstance(model, (VGG, AlexNet)) and isinstance(model.avgpool, nn.AdaptiveAvgPool2d):
        return model.avgpool, model.classifier
    return None


# --- which input sizes a backbone runs at (error messages only) ---------------------------------


def runnable_sides(
    nets: Sequence[tuple[nn.Module, int]],
    around: int,
    *,
    step: int = 8,
    hi: int = 512,
    tries: int = 24,
    budget_s: float = 4.0,
) -> tuple[list[int], tuple[int, int]]:
    """Square image sides on which every (module, in_chans) of `nets` runs: the `tries`
    multiples of `step` up to `hi` nearest to `around`, each probed with a (1, in_chans, s, s)
    image. Returns (the sides that run, ascending; (smallest, largest) side probed).

    Probed on meta tensors (shapes only, nothing computed; ~0.1 s a side for DLA-34); for real
    on zeros while meta has never worked (an op without a meta kernel); stops after
    `budget_s`. For error messages: call it only once something has failed.
    """
    sides = sorted(range(step, hi + 1, step), key=lambda s: (abs(s - around), s))[:tries]
    runs = [(BoundCall(m, meta=True), BoundCall(m, meta=False), c) for m, c in nets]
    modes = [(m, m.training) for m, _ in nets]
    for m, _ in modes:
        m.eval()
    works: list[int] = []
    meta_works, probed, start = False, [], time.perf_counter()
    try:
        for s in sides:
            if time.perf_counter() - start > budget_s:
                break
            probed.append(s)
            ok, meta_ok = _runs_on(runs, s, real=not meta_works)
            meta_works = meta_works or meta_ok
            if ok:
                works.append(s)
    finally:
        for m, mode in modes:
            m.train(mode)
    return sorted(works), (min(probed, default=0), max(probed, default=0))


def _runs_on(
    runs: list[tuple[nn.Module, nn.Module, int]], side: int, real: bool
) -> tuple[bool, bool]:
    """(whether every net runs at `side`, whether it did on meta tensors); for real on zeros
    only if meta fails and `real`."""
    with torch.no_grad():
        try:
            for meta, _, c in runs:
                meta(torch.empty(1, c, side, side, device="meta"))
            return True, True
        except Exception:
            if not real:
                return False, False
        try:
            for _, run, c in runs:
                run(torch.zeros(1, c, side, side))
            return True, False
        except Exception:
            return False, False


def size_advice(works: Sequence[int], wanted: int, tried: tuple[int, int], step: int) -> str:
    """A sentence saying which input sizes work, e.g. "Use another input_size, e.g. 192 or
    256: of the input sizes 16 to 416 (in steps of 16), it runs at 64, 128, ..., 384
    (multiples of 64)." `works`: ascending sizes that run; `tried`: the range probed."""
    span = f"of the input sizes {tried[0]} to {tried[1]} (in steps of {step})"
    if not works:
        return (
            f"It runs at none {span}: use a larger input_size, or a backbone that downsamples less."
        )
    below = [s for s in works if s < wanted][-1:]
    nearest = " or ".join(str(s) for s in below + [s for s in works if s > wanted][:1])
    verb = "Use another input_size" if below else "Use a larger input_size"
    return f"{verb}, e.g. {nearest}: {span}, it runs at {_sizes(works, step)}."


def _sizes(works: Sequence[int], step: int) -> str:
    """Ascending sizes briefly: "128 to 400", "64, 128, ..., 384 (multiples of 64)", a list."""
    d = math.gcd(*(b - a for a, b in pairwise(works)))
    if len(works) < 4 or list(works) != list(range(works[0], works[-1] + 1, d)):
        return ", ".join(map(str, works))
    if d == step:
        return f"{works[0]} to {works[-1]}"
    every = f"multiples of {d}" if works[0] % d == 0 else f"every {d}"
    return f"{works[0]}, {works[1]}, ..., {works[-1]} ({every})"
