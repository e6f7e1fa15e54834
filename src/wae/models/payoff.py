"""Does WAE pay off for this network? The MAC ratio full / WAE, checked before any training.

The paper's encoder costs a fixed ~0.26 GMACs per 224x224 image (three 16-channel 3x3 convs
at full resolution), and the I_H branch adds ~1/64 of the backbone. That is small next to
VGG16 (15.5 GMACs: WAE is ~3.5x cheaper) or ResNet-50 (~2.9x), but it is more than all of
MobileNetV3-Large: wrapped in WAE, such a network costs *more* than it did. Below
:data:`PAYOFF_MIN_RATIO` (1.5x on MACs, which rarely becomes a real speed-up) the library warns
with a :class:`PayoffWarning`. The check counts the WAE's own encoder (whichever of
:mod:`wae.encoders` it has) and, for every other registered encoder, the ratio the same WAE
would have with it: the message says whether another encoder (the light one) would pay off.

Counting is :func:`wae.macs.count_macs` (FlopCounterMode, as :func:`wae.cost.count_ops`) on
``meta`` tensors: nothing is computed or copied, whatever the model's size. A model whose
forward cannot run on ``meta`` is counted for real, on a batch of one. The check lives with the
models (core) because :meth:`WAENet.from_backbone` runs it; :mod:`wae.cost` re-exports it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..autoencoder import WaveletAutoEncoder
from ..encoders import build_encoder, encoder_names
from ..macs import count_macs
from ._wae_parts import size_pair

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .wae_net import WAENet

__all__ = [
    "PAYOFF_MIN_RATIO",
    "Payoff",
    "PayoffWarning",
    "alternative_encoders",
    "check_payoff",
    "mac_payoff",
]

#: The smallest MAC ratio (full network / WAE network) at which WAE is worth training.
PAYOFF_MIN_RATIO = 1.5


class PayoffWarning(UserWarning):
    """WAE would not make this network meaningfully cheaper (MAC ratio below 1.5x)."""


@dataclass
class Payoff:
    """MACs per image of the full-resolution network and of its WAE version.

    ``ratio`` is ``full_macs / wae_macs`` (how many times cheaper WAE is on MACs);
    ``encoder_macs`` is the WAE encoder's share of ``wae_macs`` (None when not counted);
    ``encoder`` its name in :mod:`wae.encoders` (None: not a learned encoder);
    ``alternatives`` the MACs of every other registered encoder at this size (see
    :meth:`ratio_with`).
    """

    full_macs: float
    wae_macs: float
    ratio: float
    input_size: tuple[int, int]
    encoder_macs: float | None = None
    backbone: str | None = None
    encoder: str | None = None
    alternatives: dict[str, float] = field(default_factory=dict)

    def ratio_with(self, encoder: str) -> float:
        """The MAC ratio the same WAE would have with the encoder `encoder` (an alternative)."""
        wae = self.wae_macs - (self.encoder_macs or 0.0) + self.alternatives[encoder]
        return self.full_macs / wae if wae > 0 else float("inf")

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
                f"{PAYOFF_MIN_RATIO:g}x).{self._alternative()} MACs are not latency: measure "
                f"the speed-up with `wae profile`."
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
        alt = self._alternative()
        return (
            f"WAE will not make this network faster: {cost}, a MAC ratio (full / WAE) of "
            f"{ratio}, below the {PAYOFF_MIN_RATIO:g}x WAE needs to pay for its encoder and I_H "
            f"branch.{alt} {'Otherwise: t' if alt else 'T'}he encoder grows with the pixel count "
            f"like the network does, so WAE pays off on large backbones (with the paper's "
            f"encoder, ~0.26 GMACs per 224x224 image: VGG16 ~3.5x, ResNet-50 ~2.9x, ResNet-18 "
            f"~2.3x); accelerate a larger backbone, or run this network on the image resized to "
            f"half size ({half}: about 1/4 of the MACs, no encoder). Compare them with "
            f"{compare}. (WAENet.from_backbone(..., check_payoff=False) skips this check.)"
        )

    def _alternative(self) -> str:
        """A sentence on the best other encoder, when it would change the verdict or the
        ratio for the better; empty otherwise."""
        if not self.alternatives:
            return ""
        name = max(self.alternatives, key=self.ratio_with)
        r = self.ratio_with(name)
        if r <= self.ratio:
            return ""
        profile = f"`wae profile --backbone {self.backbone or '<name>'} --encoder {name}`"
        costs = f"that encoder costs {_fmt(self.alternatives[name])} here"
        if self.pays_off:
            return f" With encoder={name!r} the MAC ratio would be {r:.2f}x ({costs})."
        if r >= PAYOFF_MIN_RATIO:
            return (
                f" With encoder={name!r} it would pay off: {costs}, for a MAC ratio of {r:.2f}x "
                f"(WAENet.from_backbone(..., encoder={name!r}); {profile})."
            )
        return f" Nor would encoder={name!r} ({costs}, a MAC ratio of {r:.2f}x)."

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``min_ratio``, ``pays_off`` and ``message``;
        ``alternatives`` maps each other encoder to its ``encoder_macs``, ``ratio`` and
        ``pays_off``."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["alternatives"] = {
            name: {
                "encoder_macs": macs,
                "ratio": self.ratio_with(name),
                "pays_off": self.ratio_with(name) >= PAYOFF_MIN_RATIO,
            }
            for name, macs in self.alternatives.items()
        }
        d.update(min_ratio=PAYOFF_MIN_RATIO, pays_off=self.pays_off, message=self.message())
        return d


def _fmt(macs: float) -> str:
    """MACs readably: GMACs from 0.1 G, else MMACs (small inputs, small networks)."""
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"


def alternative_encoders(
    encoder: str | None, in_chans: int, size: tuple[int, int]
) -> dict[str, float]:
    """MACs per image of every registered encoder other than `encoder` (the WAE's own, by
    name; None: not a learned encoder, no alternatives) for `in_chans`-channel images of
    `size`. Built on meta with the RNG untouched: checking never changes a seeded run."""
    if encoder is None:
        return {}
    out = {}
    for name in encoder_names():
        if name != encoder:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                enc = build_encoder(name, in_chans)
            out[name] = count_macs(enc, (1, in_chans, *size))
    return out


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
    size = size_pair(input_size if input_size is not None else student.input_size)
    chans = in_chans if in_chans is not None else student.in_chans
    shape = (1, chans, *size)
    wae_macs = count_macs(student, shape)
    decode = {"decode": False} if isinstance(student.wae, WaveletAutoEncoder) else {}
    encoder_macs = count_macs(student.wae, shape, **decode)
    if full is not None:
        full_macs = count_macs(full, shape)
    else:
        low_chans = getattr(student.wae, "low_chans", chans)
        maps = student.head_maps or (1, 1)
        full_macs = count_macs(student.low_net, (1, low_chans, *size))
        full_macs += count_macs(student.head_low, (1, student.low_features, *maps))
    spec = getattr(student, "wae_spec", None) or {}
    encoder = getattr(student.wae, "encoder_name", None)  # a WaveletAutoEncoder's
    return Payoff(
        full_macs=full_macs,
        wae_macs=wae_macs,
        ratio=full_macs / wae_macs if wae_macs > 0 else float("inf"),
        input_size=size,
        encoder_macs=encoder_macs,
        backbone=spec.get("backbone") if isinstance(spec.get("backbone"), str) else None,
        encoder=encoder,
        alternatives=alternative_encoders(encoder, chans, size),
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
