"""The WAE's encoders, chosen by name: the paper's ("paper", the default) and a light one.

Every consumer (:class:`~wae.WaveletAutoEncoder`, ``WAENet.from_backbone(..., encoder=)``,
checkpoint specs, recipes' ``model.kwargs.encoder``, the CLI's ``--encoder``, the pay-off
check) asks this registry for the names and the builds; none of them knows the variants.
Every encoder is a :class:`~wae.autoencoder.SplitEncoder` (a body and two convolutional
heads), so folding and splitting it for inference works on all of them alike.

"light" (beyond the paper). The paper's encoder runs three 16-channel 3x3 convolutions at full
resolution: ~0.26 GMACs per 224x224 RGB image, more than all of MobileNetV3-Large. The light
encoder is at half resolution from its first layer::

    x (N, C, H, W) -> odd sizes padded (edge repeated) -> 2x2 conv, stride 2, C -> w, ReLU
      (= space-to-depth + 1x1 conv: a learned one-level filter bank, as a wavelet's)
    -> depthwise 3x3 conv (w channels), ReLU -> 1x1 conv w -> C: I_L;  1x1 conv w -> C: I_H

MACs per half-resolution pixel: 4Cw + 9w + 2wC = 432 for C = 3, w = 16: ~5.4 MMACs at 224x224,
~49x fewer than the paper's encoder. See docs/light-encoder.md.

Its start: Xavier, then, where the width holds them (w >= 2C per band), Haar bands: channel
pairs carry +b and -b of each input channel for b = LL (the 2x2 average) and HH (the 2x2
diagonal difference, also / 4); the depthwise conv passes them through (centre tap 1) and
each head adds its band's pair back (relu(b) - relu(-b) = b), every other head weight zero.
So at the start I_L is exactly the image's 2x2 average and I_H its Haar HH band, a one-level
wavelet transform that stage 1 (the transform loss) refines; the free channels learn from
there. The decoder starts from Xavier, as in the paper.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from .autoencoder import SplitEncoder, WAEEncoder, xavier_
from .errors import WAEError

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderError",
    "LightEncoder",
    "build_encoder",
    "check_encoder",
    "encoder_names",
    "pad_to_even",
]


class EncoderError(WAEError, ValueError):
    """An encoder name that is not in the registry (:data:`ENCODERS`)."""


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H + H % 2, W + W % 2): an odd side gets its last row / column
    repeated, so that a 2x2 stride-2 layer gives ceil(H/2) x ceil(W/2), as the paper's encoder
    does (a repeated edge keeps the last 2x2 average an average of image pixels)."""
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return x  # the usual case: no copy
    return F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")


# A leaf for torch.fx (optimize_for_inference traces encoders): its branch reads the shape,
# which symbolic tracing cannot. Exporters trace with real shapes, fixed at export anyway.
fx.wrap("pad_to_even")


class PadToEven(nn.Module):
    """:func:`pad_to_even` as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_to_even(x)


_LL = ((1.0, 1.0), (1.0, 1.0))  # Haar bands as 2x2 kernels, both scaled as averages (/ 4)
_HH = ((1.0, -1.0), (-1.0, 1.0))


class LightEncoder(SplitEncoder):
    """F_E at half resolution: (N, C, H, W) -> I_L, I_H, each (N, C, ceil(H/2), ceil(W/2)).

    body: pad to even -> 2x2 stride-2 conv C -> width, ReLU -> depthwise 3x3, ReLU; heads:
    1x1 convs width -> C. ~432 MACs per half-resolution pixel for C = 3, width = 16.
    """

    summary: ClassVar[str] = (
        "half resolution: a 2x2 stride-2 conv, a depthwise 3x3 and two 1x1 convs (~5.4 MMACs "
        "per 224x224 RGB image, beyond the paper)"
    )

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.width = width
        self.body = nn.Sequential(
            OrderedDict(
                pad=PadToEven(),
                down=nn.Conv2d(in_chans, width, 2, stride=2),
                act_down=nn.ReLU(inplace=True),
                mix=nn.Conv2d(width, width, 3, padding=1, groups=width),
                act_mix=nn.ReLU(inplace=True),
            )
        )
        self.to_low = nn.Conv2d(width, in_chans, 1)
        self.to_high = nn.Conv2d(width, in_chans, 1)

    def reset_parameters(self) -> None:
        """Xavier, then the Haar start (module docstring) where the width holds it."""
        xavier_(self)
        self._haar_start()

    @torch.no_grad()
    def _haar_start(self) -> None:
        c = self.in_chans
        bands = [(self.to_low, _LL), (self.to_high, _HH)]
        fit = min(len(bands), self.width // (2 * c))  # each band needs 2C channels (+b, -b)
        if fit == 0:
            return  # too narrow for any band: Xavier alone
        down, mix = self.body.down, self.body.mix
        for head in (self.to_low, self.to_high):
            head.weight.zero_()
            head.bias.zero_()
        k = 0
        for head, kernel in bands[:fit]:
            band = torch.tensor(kernel, dtype=down.weight.dtype, device=down.weight.device) / 4
            for ch in range(c):
                for sign in (1.0, -1.0):
                    down.weight[k].zero_()
                    down.weight[k, ch] = sign * band
                    down.bias[k] = 0.0
                    mix.weight[k].zero_()
                    mix.weight[k, 0, 1, 1] = 1.0  # the depthwise conv passes the band through
                    mix.bias[k] = 0.0
                    head.weight[ch, k] = sign  # relu(b) - relu(-b) = b
                    k += 1


#: The encoders by name; the first is the default (the paper's).
ENCODERS: dict[str, type[SplitEncoder]] = {"paper": WAEEncoder, "light": LightEncoder}
DEFAULT_ENCODER = "paper"


def encoder_names() -> tuple[str, ...]:
    """The registered encoder names, the default first."""
    return tuple(ENCODERS)


def check_encoder(name: object) -> str:
    """`name` if it names a registered encoder, else an :class:`EncoderError` listing them."""
    if isinstance(name, str) and name in ENCODERS:
        return name
    choices = "; ".join(f"{n!r}: {cls.summary}" for n, cls in ENCODERS.items())
    raise EncoderError(
        f"encoder must be one of {', '.join(map(repr, ENCODERS))}, got {name!r}. The "
        f"encoders: {choices}. Choose one by name: encoder='light' in Python, --encoder light "
        f'on the command line, model.kwargs.encoder = "light" in a recipe.'
    )


def build_encoder(name: str, in_chans: int = 3, width: int = 16) -> SplitEncoder:
    """The encoder `name` for `in_chans`-channel images with `width` channels inside."""
    return ENCODERS[check_encoder(name)](in_chans, width)
