"""The Wavelet-like Auto-Encoder (WAE) and its transform loss.

Chen et al., "Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks",
AAAI 2018, https://arxiv.org/abs/1712.07493

The encoder splits an image I (N, C, H, W) into two half-resolution sub-images, I_L (content)
and I_H (details), each (N, C, ceil(H/2), ceil(W/2)). The decoder rebuilds the image as
I' = D_L(I_L) + D_H(I_H). Training pushes I_H towards zero energy (transform loss).

Layer shapes follow the paper (Fig. 2) and the authors' Caffe release:
- encoder: 3 x [3x3 conv, stride 1, 16 channels, ReLU], then two parallel 3x3 stride-2 convs
  (padding 1) giving I_L and I_H with the input's channel count and no activation (the
  encoder "paper", the default; :mod:`wae.encoders` adds a light one, beyond the paper);
- each decoder branch: 4x4 transposed conv, stride 2, 16 channels, ReLU, then 3 x 3x3 convs
  (16, 16, C channels; ReLU between, none after the last).

Odd sizes: the stride-2 convolutions (padding 1) give ceil(H/2) x ceil(W/2) sub-images; the
decoder doubles that, and `forward` (or `decode(..., size=)`) crops the reconstruction back
to H x W. Nothing is padded or resized by hand (the light encoder pads odd sizes itself).
"""

from __future__ import annotations

import numbers
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from .errors import WAEError

__all__ = [
    "ShapeError",
    "SplitEncoder",
    "WAEEncoder",
    "WAEOutput",
    "WaveletAutoEncoder",
    "FixedNorm",
    "transform_loss",
    "transform_loss_terms",
    "reconstruction_loss",
    "energy_loss",
]


class ShapeError(WAEError, ValueError):
    """A size, channel count or class count a model cannot be built with or run on."""


def is_count(value: object) -> bool:
    """A positive integer (a Python or NumPy int; not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def check_count(value: object, name: str, what: str) -> int:
    """`value` as a positive int, else a ShapeError naming `name` (a constructor argument)."""
    if not is_count(value):
        raise ShapeError(
            f"{name} must be a positive integer ({what}), got {value!r}: a model with "
            f"{name}={value!r} would have no {what}."
        )
    return int(value)  # type: ignore[call-overload]


def crop_to(x: torch.Tensor, size: tuple[int, int] | None, what: str) -> torch.Tensor:
    """x (..., h, w) cropped to `size` (H, W); refuses a size larger than x (a crop cannot
    enlarge, and silently returning the smaller image would be a wrong result)."""
    if size is None:
        return x
    h, w = size
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ShapeError(
            f"size={tuple(size)} does not fit the {what} of {x.shape[-2]}x{x.shape[-1]}: it "
            f"can only be cropped. Pass the size of the image that was encoded (at most twice "
            f"the sub-images' size), or size=None."
        )
    return x[..., :h, :w]


class WAEOutput(NamedTuple):
    """What the auto-encoder produces for one batch.

    low:   I_L, (N, C, ceil(H/2), ceil(W/2)).
    high:  I_H, same shape as `low`.
    recon: I' = D_L(I_L) + D_H(I_H), (N, C, H, W); None when decoding was skipped.
    """

    low: torch.Tensor
    high: torch.Tensor
    recon: torch.Tensor | None


def _conv_relu_stack(in_ch: int, width: int, out_ch: int, n: int, last_act: bool) -> nn.Sequential:
    """n 3x3 stride-1 convs: in_ch -> width -> ... -> out_ch, ReLU after each (bar the last
    one unless `last_act`)."""
    layers: list[nn.Module] = []
    ch = in_ch
    for i in range(n):
        nxt = out_ch if i == n - 1 else width
        layers.append(nn.Conv2d(ch, nxt, 3, padding=1))
        if i < n - 1 or last_act:
            layers.append(nn.ReLU(inplace=True))
        ch = nxt
    return nn.Sequential(*layers)


def xavier_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every (transposed) convolution in `module`,
    in module order (the paper's stage-1 initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class SplitEncoder(nn.Module):
    """An encoder F_E as a shared body and two heads: x (N, C, H, W) -> h = body(x), then
    I_L = to_low(h) and I_H = to_high(h), each (N, C, ceil(H/2), ceil(W/2)).

    Every encoder of :mod:`wae.encoders` has this form, so what folds or splits an encoder
    (:func:`wae.optimize.optimize_for_inference`) works on all of them alike. Subclasses set
    `body`, `to_low` and `to_high` (two convolutions with the same stride and padding).
    """

    summary: ClassVar[str] = ""  # one line for listings and errors (wae.encoders)
    body: nn.Module
    to_low: nn.Conv2d
    to_high: nn.Conv2d

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.to_low(h), self.to_high(h)

    def reset_parameters(self) -> None:
        """Xavier initialisation, as in the paper (stage 1)."""
        xavier_(self)


class WAEEncoder(SplitEncoder):
    """The paper's F_E: (N, C, H, W) -> I_L, I_H, each (N, C, ceil(H/2), ceil(W/2)).

    Three 16-channel 3x3 convs at full resolution, then two 3x3 stride-2 convs: ~0.26 GMACs
    per 224x224 RGB image (the encoder "paper" of :mod:`wae.encoders`)."""

    summary: ClassVar[str] = (
        "the paper's: three 16-channel 3x3 convs at full resolution (~0.26 GMACs per 224x224 "
        "RGB image)"
    )

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.body = _conv_relu_stack(in_chans, width, width, 3, last_act=True)
        self.to_low = nn.Conv2d(width, in_chans, 3, stride=2, padding=1)
        self.to_high = nn.Conv2d(width, in_chans, 3, stride=2, padding=1)


class WAEDecoderBranch(nn.Module):
    """One decoder branch: (N, C, h, w) -> (N, C, 2h, 2w)."""

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chans, width, 4, stride=2, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.refine = _conv_relu_stack(width, width, in_chans, 3, last_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.act(self.up(x)))


class WaveletAutoEncoder(nn.Module):
    """The WAE: a learned, wavelet-like split of an image into I_L and I_H.

    Args:
        in_chans: image channels C (I_L and I_H have C channels too, as in the release).
        width: channels of every intermediate layer (16 in the paper).
        decoder: build the decoder (False gives the "Decomposition+CNN" baseline's encoder).
        encoder: the encoder's name in :data:`wae.encoders.ENCODERS`: "paper" (the default,
            the paper's) or "light" (half resolution, ~50x fewer MACs; beyond the paper).
    """

    def __init__(
        self, in_chans: int = 3, width: int = 16, decoder: bool = True, encoder: str = "paper"
    ) -> None:
        # wae.encoders imports this module (the paper's encoder lives here): import it late.
        from .encoders import build_encoder, check_encoder

        super().__init__()
        check_count(in_chans, "in_chans", "image channels")
        check_count(width, "width", "channels in its layers")
        self.encoder_name = check_encoder(encoder)
        self.in_chans = in_chans
        self.low_chans = in_chans
        self.high_chans = in_chans
        self.encoder = build_encoder(encoder, in_chans, width)
        self.decoder_low = WAEDecoderBranch(in_chans, width) if decoder else None
        self.decoder_high = WAEDecoderBranch(in_chans, width) if decoder else None
        self.reset_parameters()

    @property
    def has_decoder(self) -> bool:
        return self.decoder_low is not None

    def reset_parameters(self) -> None:
        """The encoder's own start (the paper's: Xavier), then Xavier for the decoder, as in
        the paper (stage 1). Encoder first, so the paper's WAE draws what it always drew."""
        self.encoder.reset_parameters()
        for branch in (self.decoder_low, self.decoder_high):
            if branch is not None:
                xavier_(branch)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> (I_L, I_H), each (N, C, ceil(H/2), ceil(W/2))."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            got = x.shape[1] if x.dim() == 4 else "?"
            raise ShapeError(
                f"This model was built for in_chans={self.in_chans}: it takes images of shape "
                f"(N, {self.in_chans}, H, W), got {tuple(x.shape)}. Give it {self.in_chans}-"
                f"channel images (e.g. export_onnx(..., in_chans={self.in_chans})), or build "
                f"the model with in_chans={got} for {got}-channel images."
            )
        return self.encoder(x)

    def decode(
        self, low: torch.Tensor, high: torch.Tensor, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(I_L, I_H) -> I' = D_L(I_L) + D_H(I_H), (N, C, 2h, 2w), cropped to `size` if given
        (at most (2h, 2w): a ShapeError otherwise)."""
        if self.decoder_low is None or self.decoder_high is None:
            raise RuntimeError(
                "This auto-encoder was built with decoder=False (the Decomposition+CNN "
                "baseline) and cannot reconstruct images."
            )
        recon = self.decoder_low(low) + self.decoder_high(high)
        return crop_to(recon, size, "decoded image")

    def decode_low(self, low: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """D_L(I_L) alone: what the content channel reconstructs without the details."""
        if self.decoder_low is None:
            raise RuntimeError("This auto-encoder has no decoder (decoder=False).")
        return crop_to(self.decoder_low(low), size, "decoded image")

    def forward(self, x: torch.Tensor, decode: bool = True) -> WAEOutput:
        low, high = self.encode(x)
        recon = None
        if decode and self.has_decoder:
            recon = self.decode(low, high, size=(x.shape[-2], x.shape[-1]))
        return WAEOutput(low, high, recon)


class FixedNorm(nn.Module):
    """Per-channel standardisation with fixed global statistics and no affine parameters.

    The release puts one before each classifier branch (Caffe BatchNorm with
    use_global_stats). It matters: the transform loss shrinks I_H's energy by orders of
    magnitude, so without it the I_H branch would see almost nothing. Statistics are
    estimated with `update_stats` (e.g. after stage 1) and otherwise never change, in
    training or in eval. Before any calibration it is the identity. `eps` is far below the
    usual 1e-5 because I_H's variance itself can be ~1e-5 after stage 1.
    """

    def __init__(self, num_channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(num_channels))
        # var + eps == 1 before calibration, so an uncalibrated norm is exactly the identity.
        self.register_buffer("var", torch.full((num_channels,), 1.0 - eps))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return (x - self.mean.view(shape)) * torch.rsqrt(self.var.view(shape) + self.eps)

    def reset_stats(self) -> None:
        self.mean.zero_()
        self.var.fill_(1.0 - self.eps)
        self.count.zero_()

    @torch.no_grad()
    def update_stats(self, x: torch.Tensor) -> None:
        """Fold a batch (N, C, h, w) into the running per-channel mean/variance (exact pooled
        statistics over everything seen since the last reset, Chan et al.'s update)."""
        x = x.detach().transpose(0, 1).reshape(x.shape[1], -1).double()
        n_b = x.shape[1]
        mean_b = x.mean(1)
        var_b = x.var(1, unbiased=False)
        n_a = int(self.count)
        if n_a == 0:
            mean, var = mean_b, var_b
        else:
            mean_a, var_a = self.mean.double(), self.var.double()
            n = n_a + n_b
            delta = mean_b - mean_a
            mean = mean_a + delta * n_b / n
            var = (var_a * n_a + var_b * n_b + delta**2 * n_a * n_b / n) / n
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count += n_b


def _reduce(sq: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":  # mean over every element: scale-free, our default
        return sq.mean()
    if reduction == "sum":  # per-image sum of squares, averaged over the batch (the paper's)
        return sq.flatten(1).sum(1).mean()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def reconstruction_loss(
    x: torch.Tensor, recon: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """l_r = ||I - I'||^2 (eq. 3)."""
    return _reduce((x - recon) ** 2, reduction)


def energy_loss(high: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """l_e = ||I_H||^2 (eq. 4)."""
    return _reduce(high**2, reduction)


def transform_loss(
    x: torch.Tensor, parts: WAEOutput, lam: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """L_t = ||I - I'||^2 + lam * ||I_H||^2 (eq. 5; lam = 1 in the paper).

    reduction="mean" averages squares over all elements (each term separately);
    reduction="sum" sums them per image and averages over the batch, as the paper's norms
    do (use it with the paper's tiny learning rates).
    """
    return transform_loss_terms(x, parts, lam, reduction)["transform"]


def transform_loss_terms(
    x: torch.Tensor, parts: WAEOutput, lam: float = 1.0, reduction: str = "mean"
) -> dict[str, torch.Tensor]:
    """:func:`transform_loss` with its parts: {"reconstruction": l_r, "energy": l_e,
    "transform": l_r + lam * l_e} (what training logs)."""
    if parts.recon is None:
        raise ValueError("transform_loss needs the reconstruction: call the WAE with decode=True.")
    if parts.recon.shape != x.shape:
        raise ValueError(
            f"Reconstruction shape {tuple(parts.recon.shape)} differs from the input's "
            f"{tuple(x.shape)}."
        )
    rec = reconstruction_loss(x, parts.recon, reduction)
    en = energy_loss(parts.high, reduction)
    return {"reconstruction": rec, "energy": en, "transform": rec + lam * en}
