"""The parts WAENet is assembled from, and the checks before they are built.

WAENet's constructor probes its two branches here (:func:`probe_features`);
``WAENet.from_backbone`` checks its arguments (:func:`check_backbone_args`) and turns the
backbone into the branches, the decomposer and the spec a checkpoint rebuilds the model from
(:func:`adapt_backbone`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..autoencoder import ShapeError, WaveletAutoEncoder, is_count
from ..encoders import DEFAULT_ENCODER, check_encoder
from ..errors import first_line
from ..host import is_out_of_memory
from ._backbone import BackboneError, build_classifier, build_features, runnable_sides, size_advice
from ._slim import quarter_width
from .heads import own_classifier
from .spec import SpecError

__all__ = [
    "DECOMPOSERS",
    "HEADS",
    "Adapted",
    "adapt_backbone",
    "build_decomposer",
    "check_backbone_args",
    "check_decomposer",
    "check_head_args",
    "probe_features",
    "size_pair",
]

#: WAENet's head types (from_backbone also takes "auto").
HEADS = ("linear", "vgg", "classifier")
#: The decomposers by name: the paper's WAE, its encoder alone, a fixed wavelet transform.
DECOMPOSERS = ("wae", "encoder", "wavelet")


def size_pair(v: int | Sequence[int]) -> tuple[int, int]:
    """An input size as (H, W) of positive ints, else a ShapeError."""
    t = (v, v) if isinstance(v, numbers.Integral) else tuple(v) if isinstance(v, Sequence) else ()
    if len(t) != 2 or not all(is_count(s) for s in t):
        raise ShapeError(f"input_size must be a positive int or (H, W), got {v!r}.")
    return (int(t[0]), int(t[1]))


# --- argument checks ----------------------------------------------------------------------------


def check_head_args(
    head: str,
    head_hidden: Sequence[int],
    drop_rate: float | None,
    use_high: bool,
    heads: tuple[str, ...] = HEADS,
) -> None:
    """The head arguments of WAENet / from_backbone (SpecError / ShapeError naming them)."""
    if head not in heads:
        raise SpecError(f"head must be one of {heads}, got {head!r}.")
    n = 2 if use_high else 1
    hidden = list(head_hidden) if isinstance(head_hidden, (list, tuple)) else []
    bad = len(hidden) < n or not all(is_count(h) for h in hidden)
    if head != "linear" and bad:  # linear heads have no hidden layer
        raise ShapeError(
            f"head_hidden must list {n} positive widths (the s_L head's"
            f"{', the fused head' if use_high else ''}), got {head_hidden!r}."
        )
    if drop_rate is not None and not (
        isinstance(drop_rate, (int, float)) and 0.0 <= drop_rate <= 1.0
    ):
        raise SpecError(f"drop_rate must be None or from 0 to 1, got {drop_rate!r}.")


def check_classifier_arg(head: str, classifier: nn.Module | None) -> None:
    """head='classifier' comes with its `classifier` module, and no other head does."""
    if (head == "classifier") != (classifier is not None):
        raise SpecError(
            f"head='classifier' takes the s_L head as `classifier` (a ClassifierHead), and "
            f"only it does; got head={head!r} with classifier={type(classifier).__name__}. "
            f"WAENet.from_backbone(..., head='classifier') builds it from the backbone."
        )


def check_decomposer(spec: str | nn.Module, encoder: str) -> None:
    """The decomposer and encoder names (SpecError / EncoderError), before anything is built."""
    check_encoder(encoder)
    if isinstance(spec, nn.Module):
        learned = False
    elif spec in DECOMPOSERS:
        learned = spec != "wavelet"
    else:
        raise SpecError(
            f"decomposer must be 'wae', 'encoder', 'wavelet' or an nn.Module, got {spec!r}."
        )
    if encoder != DEFAULT_ENCODER and not learned:
        what = f"decomposer={spec!r}" if isinstance(spec, str) else "a decomposer module"
        raise SpecError(
            f"encoder={encoder!r} chooses the encoder of the learned decomposers ('wae', "
            f"'encoder'); {what} has none. Leave encoder out, or use decomposer='wae'."
        )


def check_backbone_args(
    head: str,
    head_hidden: Sequence[int],
    drop_rate: float | None,
    use_high: bool,
    input_size: int | Sequence[int],
    decomposer: str | nn.Module,
    encoder: str,
    high_divisor: int,
) -> None:
    """from_backbone's arguments, checked before anything is built (a backbone can take
    seconds)."""
    check_head_args(head, head_hidden, drop_rate, use_high, heads=("auto", *HEADS))
    size_pair(input_size)
    check_decomposer(decomposer, encoder)
    if not is_count(high_divisor):
        raise SpecError(f"high_divisor must be a positive integer, got {high_divisor!r}.")


# --- the branches' feature maps -----------------------------------------------------------------


def probe_features(
    low: tuple[nn.Module, int], high: tuple[nn.Module | None, int], input_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run each (net, in_chans) branch once, in eval mode, on a zero image of half the input
    size (what I_L and I_H are): (f_L (1, C_L, h, w), f_H (1, C_H, h, w) or None).

    Raises BackboneError when a net does not run there (saying which sizes it runs at), does
    not return a 4-D feature map, or the two maps differ in size."""
    half = tuple(math.ceil(s / 2) for s in input_size)
    nets = [(net, chans) for net, chans in (low, high) if net is not None]
    modes = [(net, net.training) for net, _ in nets]
    try:
        with torch.no_grad():
            maps = []
            for net, chans in nets:
                net.eval()
                maps.append(net(torch.zeros(1, chans, *half)))
    except RuntimeError as e:
        raise _probe_error(e, nets, input_size, half) from e
    finally:
        for net, mode in modes:
            net.train(mode)
    f_low, f_high = maps[0], maps[1] if len(maps) > 1 else None
    _check_features(f_low, "low_net")
    if f_high is not None:
        _check_features(f_high, "high_net")
        if f_high.shape[-2:] != f_low.shape[-2:]:
            raise BackboneError(
                f"The I_L and I_H feature maps differ in size ({tuple(f_low.shape[-2:])} vs "
                f"{tuple(f_high.shape[-2:])}): the branches must downsample alike."
            )
    return f_low, f_high


def _probe_error(
    e: RuntimeError,
    nets: list[tuple[nn.Module, int]],
    input_size: tuple[int, int],
    half: tuple[int, ...],
) -> BackboneError:
    """What went wrong probing the branches: memory, or a size the backbone cannot run at."""
    if is_out_of_memory(e):
        return BackboneError(
            f"Not enough memory to probe the backbone at input_size {input_size}. "
            f"Use a smaller input_size."
        )
    sides, tried = runnable_sides(nets, half[0])
    advice = size_advice([2 * s for s in sides], input_size[0], (2 * tried[0], 2 * tried[1]), 16)
    return BackboneError(
        f"The backbone cannot run on the half-resolution sub-images: for input_size "
        f"{input_size} they are {half[0]}x{half[1]} ({first_line(e)}). {advice}"
    )


def _check_features(f: Any, name: str) -> None:
    if not isinstance(f, torch.Tensor) or f.dim() != 4:
        shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise BackboneError(
            f"{name} must return a feature map (N, C, h, w), got {shape}. Pass a feature "
            f"extractor, or a classifier torch.fx can trace."
        )


# --- from a backbone ----------------------------------------------------------------------------


def build_decomposer(spec: str | nn.Module, in_chans: int, encoder: str) -> nn.Module:
    """The decomposer a name (one of :data:`DECOMPOSERS`) stands for; a module as it is."""
    if isinstance(spec, nn.Module):
        return spec
    if spec == "wavelet":
        from ..wavelet import WaveletDecomposer

        return WaveletDecomposer(in_chans)
    return WaveletAutoEncoder(in_chans, decoder=spec == "wae", encoder=encoder)


class Adapted(NamedTuple):
    """A backbone turned into WAENet's parts (:func:`adapt_backbone`)."""

    full: nn.Module  # the backbone's whole classifier, at full resolution
    features: nn.Module  # its feature extractor: the I_L network
    high_net: nn.Module | None  # the I_H network (None: I_L alone)
    decomposer: nn.Module
    head: str  # "auto" resolved
    classifier: nn.Module | None  # s_L's head for head="classifier", else None
    spec: dict[str, Any] | None  # the build spec (None: a user's module cannot be rebuilt)


def adapt_backbone(
    backbone: str | nn.Module,
    num_classes: int,
    *,
    in_chans: int,
    input_size: int | Sequence[int],
    pretrained: bool,
    decomposer: str | nn.Module,
    encoder: str,
    head: str,
    head_hidden: Sequence[int],
    drop_rate: float | None,
    use_high: bool,
    high_net: nn.Module | None,
    high_divisor: int,
    backbone_kwargs: dict[str, Any],
) -> Adapted:
    """Build the backbone's classifier, cut its feature extractor, build the decomposer and
    (unless `high_net` is given or `use_high` is off) the I_H twin at 1/high_divisor width;
    the arguments are WAENet.from_backbone's, checked (:func:`check_backbone_args`)."""
    full = build_classifier(
        backbone,
        num_classes=1000 if pretrained else num_classes,
        in_chans=in_chans,
        pretrained=pretrained,
        **backbone_kwargs,
    )
    features = build_features(full, in_chans)
    dec = build_decomposer(decomposer, in_chans, encoder)
    rebuildable = isinstance(backbone, str) and isinstance(decomposer, str) and high_net is None
    if use_high and high_net is None:
        high_chans = getattr(dec, "high_chans", in_chans)
        high_net = quarter_width(features, in_chans=high_chans, divisor=high_divisor)
    if head == "auto":
        head = "vgg" if getattr(features, "family", "") == "vgg" else "linear"
    classifier = own_classifier(full, num_classes) if head == "classifier" else None
    spec = None
    if rebuildable:  # by name only: a user's module cannot be rebuilt from data
        kwargs = dict(
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=list(size_pair(input_size)),
            head=head,
            head_hidden=list(head_hidden),
            decomposer=decomposer,
            encoder=encoder,
            use_high=use_high,
            drop_rate=drop_rate,
            **({} if high_divisor == 4 else {"high_divisor": high_divisor}),
            **backbone_kwargs,
        )
        spec = {"builder": "wae_net", "backbone": backbone, "kwargs": kwargs}
    return Adapted(full, features, high_net if use_high else None, dec, head, classifier, spec)
