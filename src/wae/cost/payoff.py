"""Does WAE pay off for this network? The MAC ratio full / WAE, checked before any training.

The WAE encoder costs a fixed ~0.26 GMACs per 224x224 image (three 16-channel 3x3 convs at
full resolution), and the I_H branch adds ~1/64 of the backbone. That is small next to VGG16
(15.5 GMACs: WAE is ~3.5x cheaper) or ResNet-50 (~2.9x), but it is more than all of
MobileNetV3-Large: wrapped in WAE, such a network costs *more* than it did. Below
:data:`PAYOFF_MIN_RATIO` (1.5x on MACs, which rarely becomes a real speed-up) the library warns
with a :class:`PayoffWarning`.

Counting reuses :func:`~wae.cost.ops.count_ops` (FlopCounterMode) on ``meta`` tensors: the
model's parameters and buffers are swapped for storage-less copies with
:func:`torch.func.functional_call`, so nothing is computed or copied, whatever the model's size.
A model whose forward cannot run on ``meta`` is counted for real, on a batch of one.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call

from ..autoencoder import WaveletAutoEncoder
from ..models.wae_net import _pair
from ._common import resolve_device
from .ops import count_ops

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..models import WAENet

__all__ = ["PAYOFF_MIN_RATIO", "Payoff", "PayoffWarning", "check_payoff", "mac_payoff"]

#: The smallest MAC ratio (full network / WAE network) at which WAE is worth training.
PAYOFF_MIN_RATIO = 1.5


class PayoffWarning(UserWarning):
    """WAE would not make this network meaningfully cheaper (MAC ratio below 1.5x)."""


@dataclass
class Payoff:
    """MACs per image of the full-resolution network and of its WAE version.

    ``ratio`` is ``full_macs / wae_macs`` (how many times cheaper WAE is on MACs);
    ``encoder_macs`` is the WAE encoder's share of ``wae_macs`` (None when not counted).
    """

    full_macs: float
    wae_macs: float
    ratio: float
    input_size: tuple[int, int]
    encoder_macs: float | None = None
    backbone: str | None = None

    @property
    def pays_off(self) -> bool:
        """The MAC ratio is at least :data:`PAYOFF_MIN_RATIO`."""
        return self.ratio >= PAYOFF_MIN_RATIO

    def message(self) -> str:
        """One paragraph: the verdict, the figures, and what to do."""
        size = f"{self.input_size[0]}x{self.input_size[1]}"
        full, wae, ratio = _fmt(self.full_macs), _fmt(self.wae_macs), f"{self.ratio:.2f}x"
        if self.pays_off:
            enc = f", its encoder {_fmt(self.encoder_macs)}" if self.encoder_macs else ""
            return (
                f"WAE pays off on MACs: at {size} the full network costs {full} and its WAE "
                f"version {wae}{enc}, a MAC ratio (full / WAE) of {ratio} (at least "
                f"{PAYOFF_MIN_RATIO:g}x). MACs are not latency: measure the speed-up with "
                f"`wae profile`."
            )
        if self.encoder_macs:
            cost = (
                f"at {size} its encoder alone costs {_fmt(self.encoder_macs)} while the full "
                f"network costs {full}; the whole WAE network costs {wae}"
            )
        else:
            cost = f"at {size} it costs {wae} while the full network costs {full}"
        if self.backbone:
            half = f"PlainNet.from_backbone({self.backbone!r}, half=True)"
            compare = f"`wae profile --backbone {self.backbone}`"
        else:
            half, compare = "PlainNet(net, half=True)", "`wae profile --backbone <name>`"
        return (
            f"WAE will not make this network faster: {cost}, a MAC ratio (full / WAE) of "
            f"{ratio}, below the {PAYOFF_MIN_RATIO:g}x WAE needs to pay for its encoder and I_H "
            f"branch. The encoder costs a fixed ~0.26 GMACs per 224x224 image and grows with "
            f"the pixel count like the network does, so WAE pays off only on large backbones "
            f"(VGG16 ~3.5x, ResNet-50 ~2.9x, ResNet-18 ~2.3x). Accelerate a larger backbone, or "
            f"run this network on the image resized to half size ({half}: about 1/4 of the "
            f"MACs, no encoder). Compare the three with {compare}. "
            f"(WAENet.from_backbone(..., check_payoff=False) skips this check.)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``min_ratio``, ``pays_off`` and ``message``."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d.update(min_ratio=PAYOFF_MIN_RATIO, pays_off=self.pays_off, message=self.message())
        return d


def _fmt(macs: float) -> str:
    """MACs readably: GMACs from 0.1 G, else MMACs (small inputs, small networks)."""
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"


class _Run(nn.Module):
    """``module(x, **kwargs)``; with ``meta``, on storage-less copies of its tensors."""

    def __init__(self, module: nn.Module, kwargs: dict[str, Any], meta: bool) -> None:
        super().__init__()
        self.module = module
        self.kwargs = kwargs
        self.tensors = None
        if meta:
            named = [*module.named_parameters(), *module.named_buffers()]
            self.tensors = {n: torch.empty_like(t, device="meta") for n, t in named}

    def forward(self, x: torch.Tensor) -> Any:
        if self.tensors is None:
            return self.module(x, **self.kwargs)
        return functional_call(self.module, self.tensors, (x,), self.kwargs)


def _macs(module: nn.Module, shape: Sequence[int], **kwargs: Any) -> float:
    """MACs of ``module(x, **kwargs)`` for an ``x`` of ``shape``: on meta, else for real."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    try:
        x = torch.empty(*shape, device="meta", dtype=dtype)
        return count_ops(_Run(module, kwargs, meta=True), x).macs
    except Exception:  # an op without a meta kernel, a data-dependent branch, ...
        x = torch.zeros(*shape, device=resolve_device(module, None), dtype=dtype)
        return count_ops(_Run(module, kwargs, meta=False), x).macs


def mac_payoff(
    student: WAENet,
    full: nn.Module | None = None,
    input_size: int | Sequence[int] | None = None,
    in_chans: int | None = None,
) -> Payoff:
    """MACs per image of the WAE ``student`` and of the full-resolution network, and their ratio.

    ``full`` is the full network (e.g. the classifier the student was built from). Without it,
    the full network is the student's own I_L network run at full resolution plus its s_L head
    (exact for the backbone's features; the head stands in for the backbone's classifier, a
    small share of any CNN's MACs). ``input_size`` and ``in_chans`` default to the student's.
    Counts on the ``meta`` device: no compute; ~0.07 s for VGG16 and ~0.65 s for ResNet-50 at
    224 on a busy 2-core CPU (the cost is per layer, not per MAC).
    """
    size = _pair(input_size if input_size is not None else student.input_size)
    chans = in_chans if in_chans is not None else student.in_chans
    shape = (1, chans, *size)
    wae_macs = _macs(student, shape)
    decode = {"decode": False} if isinstance(student.wae, WaveletAutoEncoder) else {}
    encoder_macs = _macs(student.wae, shape, **decode)
    if full is not None:
        full_macs = _macs(full, shape)
    else:
        low_chans = getattr(student.wae, "low_chans", chans)
        maps = student.head_maps or (1, 1)
        full_macs = _macs(student.low_net, (1, low_chans, *size))
        full_macs += _macs(student.head_low, (1, student.low_features, *maps))
    spec = getattr(student, "wae_spec", None) or {}
    return Payoff(
        full_macs=full_macs,
        wae_macs=wae_macs,
        ratio=full_macs / wae_macs if wae_macs > 0 else float("inf"),
        input_size=size,
        encoder_macs=encoder_macs,
        backbone=spec.get("backbone") if isinstance(spec.get("backbone"), str) else None,
    )


def warn_payoff(payoff: Payoff, stacklevel: int = 2) -> None:
    """Warn (:class:`PayoffWarning`, the payoff's message) when it does not pay off.
    ``stacklevel`` as if this were :func:`warnings.warn`: 2 points at the caller's caller."""
    if not payoff.pays_off:
        warnings.warn(PayoffWarning(payoff.message()), stacklevel=stacklevel + 1)


def check_payoff(
    student: WAENet, full: nn.Module | None = None, *, stacklevel: int = 2, **kwargs: Any
) -> Payoff:
    """:func:`mac_payoff` (``kwargs``: ``input_size``, ``in_chans``), and a
    :class:`PayoffWarning` saying what to do when the ratio is below :data:`PAYOFF_MIN_RATIO`.

    ``stacklevel`` as in :func:`warnings.warn`: 2 points at the caller of this function.
    A ``full`` network that cannot run at the student's input size is replaced by the
    student-based estimate (see :func:`mac_payoff`).
    """
    try:
        payoff = mac_payoff(student, full, **kwargs)
    except Exception:
        if full is None:
            raise
        payoff = mac_payoff(student, None, **kwargs)
    warn_payoff(payoff, stacklevel)
    return payoff
