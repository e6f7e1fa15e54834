"""Channel-pruned networks as architectures: a registered base model with some layers resized.

`pruned_net(base, shapes, **kwargs)` rebuilds the architecture of a network pruned by
Torch-Pruning (e.g. `wae reproduce`'s Taylor peer), so its checkpoints load through
`wae.checkpoint.load_model` like any other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ._registry import create_model, register_model
from .spec import SpecError

__all__ = ["changed_shapes", "layer_shapes", "pruned_net", "reshape_layers"]


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Shapes that define a layer's size: Conv2d [out, in, groups], Linear [out, in],
    BatchNorm2d [features]. Keyed by module name."""
    out: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = [m.out_channels, m.in_channels, m.groups]
        elif isinstance(m, nn.Linear):
            out[name] = [m.out_features, m.in_features]
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = [m.num_features]
    return out


def changed_shapes(base: nn.Module, pruned: nn.Module) -> dict[str, list[int]]:
    """The layers of `pruned` whose shape differs from `base` (what :func:`pruned_net` needs)."""
    a, b = layer_shapes(base), layer_shapes(pruned)
    return {k: v for k, v in b.items() if a.get(k) != v}


_SHAPE_LENGTHS = {nn.Conv2d: 3, nn.Linear: 2, nn.BatchNorm2d: 1}


def _new_layer(old: nn.Module, shape: list[int]) -> nn.Module:
    n = next((v for k, v in _SHAPE_LENGTHS.items() if isinstance(old, k)), None)
    if n is None:
        raise SpecError(f"cannot reshape a {type(old).__name__}")
    if len(shape) != n:
        raise SpecError(f"a {type(old).__name__} takes a shape of {n} sizes, got {shape}")
    if isinstance(old, nn.Conv2d):
        out_c, in_c, groups = shape
        return nn.Conv2d(
            in_c,
            out_c,
            old.kernel_size,
            old.stride,
            old.padding,
            old.dilation,
            groups,
            old.bias is not None,
            old.padding_mode,
        )
    if isinstance(old, nn.Linear):
        return nn.Linear(shape[1], shape[0], old.bias is not None)
    return nn.BatchNorm2d(shape[0], old.eps, old.momentum, old.affine, old.track_running_stats)


def reshape_layers(model: nn.Module, shapes: Mapping[str, list[int]]) -> nn.Module:
    """Replace the named layers of `model` by fresh ones of the given shapes, in place."""
    modules = dict(model.named_modules())
    for name, shape in shapes.items():
        if name not in modules:
            raise SpecError(f"{type(model).__name__} has no layer {name!r}")
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, attr, _new_layer(modules[name], list(shape)))
    return model


@register_model(kind="pruned")
def pruned_net(base: str, shapes: Mapping[str, list[int]], **kwargs: Any) -> nn.Module:
    """A registered model `base` (built with `kwargs`) with the layers in `shapes` resized:
    the architecture of a channel-pruned network, to load its weights into."""
    return reshape_layers(create_model(base, **kwargs), shapes)
