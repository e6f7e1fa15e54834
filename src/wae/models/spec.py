"""The schema of a model's build spec: what a checkpoint may ask our builders to construct.

A checkpoint's ``model.json`` says how to rebuild its architecture (``create_model`` /
``from_backbone`` and their keyword arguments). It is data from a file a user may have been
sent, so it is checked here, key by key, before any builder runs: only the keys our builders
accept, with their types and ranges; never file paths, download switches or free-form
arguments (timm would otherwise load ``checkpoint_path`` or reach a model hub). A backbone
may name a user's own factory ("pkg.module:function"): valid here, but
:func:`wae.checkpoint.load_model` imports it only when its caller allows that exact name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..encoders import ENCODERS
from ..errors import WAEError

__all__ = ["SpecError", "is_factory_name", "validate_spec"]

MAX_SIZE = 1024  # pixels per side: larger images than ImageNet's need no checkpoint of ours
MAX_WIDTH = 65536  # channels or hidden units of one layer
_NAME = re.compile(r"(timm:)?[A-Za-z][A-Za-z0-9_.]{0,79}")  # a model name, never a path
# A user's own factory "pkg.module:function": dotted identifiers, one colon; never a path.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_FACTORY = re.compile(rf"(?!timm:){_IDENT}(\.{_IDENT}){{0,7}}:{_IDENT}")
MAX_FACTORY_NAME = 160


def is_factory_name(name: object) -> bool:
    """Whether `name` names a user's classifier factory ("pkg.module:function", not "timm:").

    Syntax only: nothing is imported. A checkpoint naming one loads only when its caller
    allows that exact name (``load_model(..., allow_code=[name])``).
    """
    return (
        isinstance(name, str) and len(name) <= MAX_FACTORY_NAME and bool(_FACTORY.fullmatch(name))
    )


class SpecError(WAEError, ValueError):
    """A build spec (e.g. a checkpoint's model.json) with a key our builders do not accept."""


def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _float(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: (
        (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
        and lo <= v <= hi
    )


def _size(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return 1 <= len(v) <= 2 and all(_int(8, MAX_SIZE)(s) for s in v)
    return _int(8, MAX_SIZE)(v)


def _ints(n: int, lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, (list, tuple)) and 1 <= len(v) <= n and all(_int(lo, hi)(x) for x in v)
    )


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: any(v is c or (type(v) is type(c) and v == c) for c in choices)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


# key -> (check, what a valid value is). Shared by every builder; a builder rejects what it
# does not take with its own error, after this check has bounded every value.
_KWARGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_classes": (_int(1, 100_000), "an integer from 1 to 100000"),
    "in_chans": (_int(1, 4), "1 (grey), 3 (RGB) or up to 4"),
    "input_size": (_size, f"an image size from 8 to {MAX_SIZE} (or [height, width])"),
    "head": (
        _one_of("auto", "vgg", "linear", "classifier"),
        '"auto", "vgg", "linear" or "classifier"',
    ),
    "head_hidden": (_ints(4, 1, MAX_WIDTH), f"a list of up to 4 widths from 1 to {MAX_WIDTH}"),
    "decomposer": (_one_of("wae", "encoder", "wavelet"), '"wae", "encoder" or "wavelet"'),
    # the registry's names (absent in older checkpoints: the builders' default, "paper")
    "encoder": (_one_of(*ENCODERS), " or ".join(f'"{n}"' for n in ENCODERS)),
    "use_high": (_one_of(True, False), "true or false"),
    # the I_H branch's width divisor (absent in older checkpoints: 4, the paper's)
    "high_divisor": (_one_of(1, 2, 4, 8), "1, 2, 4 or 8"),
    "half": (_one_of(True, False), "true or false"),
    "drop_rate": (_optional(_float(0.0, 1.0)), "null or a number from 0 to 1"),
    "drop_path_rate": (_optional(_float(0.0, 1.0)), "null or a number from 0 to 1"),
    "width": (_int(1, 1024), "an integer from 1 to 1024"),
    "depths": (_ints(6, 1, 8), "a list of up to 6 depths from 1 to 8"),
    # width settings of torchvision / timm families (mobilenet_v2, rexnet; efficientnet, ...)
    "width_mult": (_float(0.05, 4.0), "a number from 0.05 to 4"),
    "channel_multiplier": (_float(0.05, 4.0), "a number from 0.05 to 4"),
    "width_multiplier": (_float(0.05, 4.0), "a number from 0.05 to 4"),
    "alpha": (_float(0.05, 4.0), "a number from 0.05 to 4"),  # torchvision's MNASNet
    # other architecture switches of torchvision / timm backbones (data, not code)
    "dropout": (_float(0.0, 1.0), "a number from 0 to 1"),
    "stochastic_depth_prob": (_float(0.0, 1.0), "a number from 0 to 1"),
    "zero_init_residual": (_one_of(True, False), "true or false"),
    "init_weights": (_one_of(True, False), "true or false"),
    "output_stride": (_one_of(8, 16, 32), "8, 16 or 32"),
    "pretrained": (_one_of(False), "false (a checkpoint holds its weights; it never downloads)"),
}


def _check_name(value: Any, key: str, where: str, factory: bool = False) -> None:
    """A model name; with `factory`, a user's "pkg.module:function" too (a backbone)."""
    ok = isinstance(value, str) and bool(_NAME.fullmatch(value))
    if not ok and not (factory and is_factory_name(value)):
        also = ", or a factory 'pkg.module:function'" if factory else ""
        raise SpecError(
            f"{where}: '{key}' must be a model name (letters, digits, '_' or '.', optionally "
            f"'timm:<name>'{also}), got {value!r}. A checkpoint names architectures, never "
            f"files; use a checkpoint written by wae, unedited."
        )


def _check_shapes(value: Any, where: str) -> None:
    ok = isinstance(value, Mapping) and len(value) <= 1000
    ok = ok and all(
        isinstance(k, str) and _NAME.fullmatch(k) and _ints(4, 1, MAX_WIDTH)(v)
        for k, v in value.items()
    )
    if not ok:
        raise SpecError(
            f"{where}: 'shapes' must map layer names to lists of up to 4 sizes from 1 to "
            f"{MAX_WIDTH}. Use a checkpoint written by wae, unedited."
        )


def _check_kwargs(kwargs: Any, where: str) -> None:
    if not isinstance(kwargs, Mapping):
        raise SpecError(f"{where}: 'kwargs' must be a JSON object, got {type(kwargs).__name__}.")
    for key, value in kwargs.items():
        if key in ("base", "shapes"):
            continue  # pruned_net's own arguments, checked by validate_spec
        if key not in _KWARGS:
            raise SpecError(
                f"{where}: kwargs key {key!r} is not an argument wae's builders accept from a "
                f"checkpoint (allowed: {', '.join(sorted(_KWARGS))}). A checkpoint is data: it "
                f"cannot pass file paths, download switches or free arguments to a builder."
            )
        check, valid = _KWARGS[key]
        if not check(value):
            raise SpecError(f"{where}: kwargs {key!r} must be {valid}, got {value!r}.")


def validate_spec(spec: Any, where: str = "model spec") -> dict[str, Any]:
    """Check a build spec ``{"builder", "name" | "backbone", "kwargs"}``; returns it as a dict.

    Raises :class:`SpecError` naming the first key that is not allowed or out of range.
    """
    if not isinstance(spec, Mapping):
        raise SpecError(f"{where} must be a JSON object, got {type(spec).__name__}.")
    builder = spec.get("builder")
    allowed = {"registry": "name", "wae_net": "backbone", "plain": "backbone"}
    if not isinstance(builder, str) or builder not in allowed:  # a list would not even hash
        raise SpecError(f"{where}: 'builder' must be one of {sorted(allowed)}, got {builder!r}.")
    extra = set(spec) - {"builder", allowed[builder], "kwargs"}
    if extra:
        raise SpecError(f"{where}: unexpected key(s) {sorted(extra)}.")
    _check_name(spec.get(allowed[builder]), allowed[builder], where, builder != "registry")
    kwargs = spec.get("kwargs", {})
    _check_kwargs(kwargs, where)
    if builder == "registry" and spec["name"] == "pruned_net":
        _check_name(kwargs.get("base"), "base", where)
        if kwargs["base"] == "pruned_net":
            raise SpecError(f"{where}: pruned_net's 'base' must be another registered model.")
        _check_shapes(kwargs.get("shapes"), where)
    elif "base" in kwargs or "shapes" in kwargs:
        raise SpecError(f"{where}: 'base' / 'shapes' belong to pruned_net only.")
    return dict(spec)
