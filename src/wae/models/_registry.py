"""Model registry: `create_model(name, **kwargs)` and `list_models()`, as in timm.

Builders register themselves with `@register_model`; the metadata every recipe needs (input
size, channels, default class count) is data in `pretrained_cfg`, not code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from .spec import SpecError

__all__ = ["create_model", "list_models", "register_model", "model_cfg", "is_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, dict[str, Any]] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None, **cfg: Any
) -> Callable[..., nn.Module]:
    """Register a builder under its function name; keyword arguments become its metadata
    (input_size, in_chans, num_classes, family, ...)."""

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if f.__name__ in _MODELS:
            raise ValueError(f"Model {f.__name__!r} is registered twice.")
        _MODELS[f.__name__] = f
        _CFGS[f.__name__] = dict(cfg)
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def model_cfg(name: str) -> dict[str, Any]:
    """The metadata a builder was registered with (a copy)."""
    _check(name)
    return dict(_CFGS[name])


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model: `create_model("wae_vgg16", num_classes=10)`."""
    _check(name)
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as e:  # an argument the builder does not take (or one it sets itself)
        if "argument" not in str(e):
            raise
        raise SpecError(
            f"create_model({name!r}) cannot take the arguments {sorted(kwargs)}: {e}. Pass "
            f"only the arguments its builder takes."
        ) from e
    # How to rebuild it (checkpoints store this instead of pickled code). Not `pretrained`:
    # a checkpoint holds the weights, and rebuilding its architecture never downloads.
    kwargs = {k: v for k, v in kwargs.items() if k != "pretrained"}
    model.wae_spec = {"builder": "registry", "name": name, "kwargs": kwargs}
    return model


def _check(name: str) -> None:
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name.split('_')[-1]}*") if name else []
        hint = f" Similar: {', '.join(sorted(close)[:6])}." if close else ""
        raise SpecError(
            f"Unknown model {name!r}.{hint} See wae.list_models() for all {len(_MODELS)} names."
        )
