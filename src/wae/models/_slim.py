"""The quarter-width twin of a feature extractor: WAENet's I_H branch.

A fresh copy of the backbone with every convolution's channel count divided by 4, built in
the first of these ways that applies:
1. natively: SmallVGG's width setting; plain conv stacks (VGG's, AlexNet's `features`)
   rebuilt layer by layer;
2. by uniform 75 % channel pruning of a copy with Torch-Pruning, which follows residual,
   concatenation and depthwise dependencies for us;
3. where Torch-Pruning cannot follow the graph (split/concat, partial-channel residuals), a
   timm family's own width setting (ReXNet's `width_mult`, EfficientNet/MixNet's
   `channel_multiplier`, ...), scaled by 1/4. (It comes after Torch-Pruning, not before, so
   the twins of the families Torch-Pruning handles, and their checkpoints, stay as they were.)
Torch-Pruning runs bounded: on ReXNet its dependency-group expansion never ends (the group
grows forever around partial-channel residual adds), so a group larger than the network could
ever need, or a time budget, stops it with a clear error.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import first_line
from ._backbone import BackboneError, FeatureExtractor, _conv_like, build_features, set_in_chans

__all__ = ["PRUNE_SECONDS", "quarter_width"]

#: Wall-clock budget of Torch-Pruning's dependency analysis (a densenet121 takes ~15 s on a
#: busy 2-core machine; resnet50 ~2 s).
PRUNE_SECONDS = 120.0

_GUARD = threading.local()  # (max group size, deadline) while this thread prunes, else None
_INSTALL_LOCK = threading.Lock()
_PATCH_LOCK = threading.Lock()


class _CannotPrune(Exception):
    """Torch-Pruning cannot slim this graph (a property of the architecture, not of time)."""


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
    taking `in_chans` input channels (see the module docstring for how it is built).

    Raises BackboneError (suggesting ``WAENet(..., high_net=<module>)``) when no way applies
    or Torch-Pruning runs past :data:`PRUNE_SECONDS`.
    """
    native = _native_quarter_width(features, in_chans, divisor)
    if native is not None:
        return native
    try:
        return _pruned_copy(features, in_chans, divisor, probe_size)
    except _CannotPrune as e:
        twin = _timm_width_twin(features, in_chans, divisor)
        if twin is None:
            raise BackboneError(
                f"{e} Build the quarter-width branch yourself and pass it as "
                f"WAENet(..., high_net=<module>), a network taking I_H and returning a "
                f"feature map."
            ) from None
        return twin


# --- Torch-Pruning, bounded ------------------------------------------------------------------


def _install_guard() -> None:
    """Wrap Torch-Pruning's Group.add_dep (once, inert outside :func:`_bounded`) with the
    checks of the current thread's bounds: every step of a group's expansion adds a dep."""
    from torch_pruning.dependency.group import Group

    with _INSTALL_LOCK:
        if getattr(Group.add_dep, "_wae_bounded", False):
            return
        add_dep = Group.add_dep

        @functools.wraps(add_dep)
        def bounded(self: Any, dep: Any, idxs: Any) -> Any:
            limit = getattr(_GUARD, "limit", None)
            if limit is not None:
                max_items, deadline = limit
                if len(self) >= max_items:
                    raise _CannotPrune(
                        f"Torch-Pruning's dependency analysis does not terminate on this "
                        f"network (a pruning group grew past {max_items} entries)."
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError
            return add_dep(self, dep, idxs)

        bounded._wae_bounded = True  # type: ignore[attr-defined]
        Group.add_dep = bounded


@contextlib.contextmanager
def _bounded(model: nn.Module) -> Iterator[None]:
    """Bound Torch-Pruning in this thread: a group may hold at most 4 entries per module
    (real groups hold fewer than one), and the analysis may take PRUNE_SECONDS."""
    _install_guard()
    n_modules = sum(1 for _ in model.modules())
    _GUARD.limit = (4 * n_modules + 64, time.monotonic() + PRUNE_SECONDS)
    try:
        yield
    finally:
        _GUARD.limit = None


def _pruned_copy(features: nn.Module, in_chans: int, divisor: int, probe_size: int) -> nn.Module:
    """Uniform 1 - 1/divisor channel pruning of a copy of `features` (input channels kept)."""
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
    name = type(getattr(features, "body", features)).__name__
    try:
        with torch.no_grad():
            full_chans = slim(example).shape[1]
        # The explicit device also overrides a caller's `with torch.device("meta")`; grad is
        # enabled because Torch-Pruning traces the graph through autograd, and a caller may
        # build (or load) the model inside torch.no_grad().
        with warnings.catch_warnings(), torch.device(device), _bounded(slim), torch.enable_grad():
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
    except TimeoutError:
        raise BackboneError(
            f"Could not build the quarter-width I_H branch of {name} with Torch-Pruning in "
            f"{PRUNE_SECONDS:.0f} s. Build it yourself and pass it as "
            f"WAENet(..., high_net=<module>), a network taking I_H and returning a feature map."
        ) from None
    except _CannotPrune as e:
        raise _CannotPrune(f"Could not build the quarter-width I_H branch of {name}: {e}") from e
    except Exception as e:
        raise _CannotPrune(
            f"Could not build the quarter-width I_H branch of {name} with Torch-Pruning "
            f"({first_line(e, with_type=True)})."
        ) from e
    if slim_chans * divisor > full_chans + divisor:
        raise _CannotPrune(
            f"Torch-Pruning could not slim {name} (its output keeps {slim_chans} of "
            f"{full_chans} channels)."
        )
    _reinit(slim)
    set_in_chans(slim, in_chans)
    slim.train()
    return slim.to("meta") if on_meta else slim


# --- a timm family's own width setting --------------------------------------------------------

_WIDTH_SETTINGS = ("width_mult", "channel_multiplier", "width_multiplier")


def _width_callee(name: str, model_cls: type) -> tuple[dict[str, Any], str, str, Any] | None:
    """Where timm model `name` sets its width: (the entrypoint's module globals, the name of
    the builder function it calls, the setting, the setting's default), or None."""
    import timm.models

    try:
        entry = timm.models.model_entrypoint(name)
        g, cls_params = entry.__globals__, inspect.signature(model_cls).parameters
    except (RuntimeError, TypeError, ValueError, AttributeError):  # a tagged or hub name, ...
        return None
    for callee in entry.__code__.co_names:
        f = g.get(callee)
        if not inspect.isfunction(f) or f.__module__ != entry.__module__:
            continue
        params = inspect.signature(f).parameters
        forwards = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for s in _WIDTH_SETTINGS:
            if s in params:
                return g, callee, s, params[s].default
            if forwards and s in cls_params:
                return g, callee, s, cls_params[s].default
    return None


def _scaled(f: Callable[..., Any], setting: str, default: Any, divisor: int) -> Callable:
    """`f` with its width `setting` (whatever the entrypoint passes, else `default`) / divisor."""
    sig = inspect.signature(f)

    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        if setting in sig.parameters:
            bound.apply_defaults()
            bound.arguments[setting] = bound.arguments[setting] / divisor
        else:  # forwarded to the model class through **kwargs
            var = next(n for n, p in sig.parameters.items() if p.kind is p.VAR_KEYWORD)
            extra = bound.arguments.setdefault(var, {})
            extra[setting] = extra.get(setting, default) / divisor
        return f(*bound.args, **bound.kwargs)

    return call


def _timm_width_twin(features: nn.Module, in_chans: int, divisor: int) -> nn.Module | None:
    """The twin of a timm backbone built with its family's width setting / divisor, or None
    (not a timm model, no width setting, or the setting does not slim it)."""
    args = getattr(features, "timm_args", None)
    if args is None:
        return None
    name, kwargs, model_cls = args
    found = _width_callee(name, model_cls)
    if found is None:
        return None
    g, callee, setting, default = found
    first = next((p for p in features.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    import timm

    # timm's entrypoints fix their width in the call to their builder (mixnet_s passes
    # channel_multiplier=1.0), so it cannot be passed to create_model: the builder is wrapped,
    # for this call only, to scale whatever the entrypoint gives it.
    with _PATCH_LOCK, torch.device(device):
        original = g[callee]
        g[callee] = _scaled(original, setting, default, divisor)
        try:
            clf = timm.create_model(name, pretrained=False, in_chans=in_chans, **kwargs)
        except Exception:
            return None
        finally:
            g[callee] = original
        twin = build_features(clf, in_chans)
        full_chans = next(m for m in features.modules() if isinstance(m, nn.Conv2d)).in_channels
        was_training = features.training
        with torch.no_grad():
            full = features.eval()(torch.zeros(1, full_chans, 64, 64))
            slim = twin.eval()(torch.zeros(1, in_chans, 64, 64))
        features.train(was_training)
    # Some families keep their last 1x1 conv at a fixed width (MixNet's 1536): still a twin
    # with a quarter-width body, far lighter than the network.
    if slim.shape[-2:] != full.shape[-2:] or 2 * _numel(twin) > _numel(features):
        return None
    return twin.train()


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
