"""Build a model from a name, as recipes and the CLI name them: a registered model
(``create_model``), or a backbone (torchvision name, ``timm:<name>``, ``small_vgg``) built as
a WAE, at full resolution, or on the half-size image.

The result carries ``wae_spec`` (how to rebuild it), so its checkpoints load from data only.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ._registry import create_model, is_model, model_cfg
from .plain import PlainNet
from .spec import SpecError
from .wae_net import WAENet

__all__ = ["ARCHS", "OWN_KWARGS", "WAE_ONLY_KWARGS", "build_named", "named_kind"]

ARCHS = ("auto", "wae", "full", "half")
_WAE_ARGS = frozenset(inspect.signature(WAENet.from_backbone).parameters)
_PLAIN_ARGS = frozenset(inspect.signature(PlainNet.from_backbone).parameters)
#: Builder arguments only a WAE takes (its heads, decomposer, encoder, ...): those of
#: WAENet.from_backbone that PlainNet.from_backbone lacks, read off their signatures.
WAE_ONLY_KWARGS = _WAE_ARGS - _PLAIN_ARGS
#: Builder arguments only one of the two takes (the WAE's above, PlainNet's `half`).
OWN_KWARGS = _WAE_ARGS ^ _PLAIN_ARGS


def named_kind(name: str, arch: str = "auto") -> str:
    """What `name` built as `arch` is: "wae", "full" or "half" (checks the pair)."""
    if arch not in ARCHS:
        raise SpecError(f"arch must be one of {ARCHS}, got {arch!r}.")
    if not is_model(name):
        return "wae" if arch == "auto" else arch
    cfg = model_cfg(name)
    own = {"wae": "wae", "pruned": "full"}.get(cfg.get("kind"), "full")
    own = "half" if name.endswith("_half") else own
    if arch not in ("auto", own):
        raise SpecError(
            f"{name!r} is a registered {own} model; arch = {arch!r} does not apply to it. Leave "
            f"arch unset, or name its backbone ({cfg.get('backbone', 'e.g. timm:resnet18')!r}) "
            f"to build it as {arch!r}."
        )
    return own


def build_named(name: str, arch: str = "auto", **kwargs: Any) -> nn.Module:
    """A registered model, or the backbone `name` built as `arch` ("wae" by default):
    ``build_named("timm:resnet18", "half", num_classes=10, in_chans=3)``."""
    kind = named_kind(name, arch)
    if is_model(name):
        return create_model(name, **kwargs)
    if kind == "wae":
        return WAENet.from_backbone(name, **kwargs)
    return PlainNet.from_backbone(name, half=kind == "half", **kwargs)
