"""Fixed 2-D discrete wavelet transform for the "Wavelet+CNN" baseline.

Chen et al., "Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks",
AAAI 2018, https://arxiv.org/abs/1712.07493. The paper compares its learned encoder with a
hand-crafted one: a single-level CDF 9/7 DWT whose approximation band cA feeds the standard
network and whose detail bands cH, cV, cD feed the light branch.

The transform is written as separable, fixed-filter strided convolutions (in the style of
pytorch_wavelets / ptwt), so it runs on any device and dtype, is differentiable, is counted by
``torch.utils.flop_counter`` and exports to ONNX with plain Conv/ConvTranspose/Slice/Concat ops.
Coefficients equal ``pywt.dwt2(x, wavelet, mode="periodization")``.

Boundary rule: periodic extension ("periodization"), so each band is exactly ceil(H/2) x
ceil(W/2). An odd H (or W) is first made even by repeating the last row (or column), which is
what PyWavelets does too; pass ``size=(H, W)`` to :class:`IDWT2` to crop the reconstruction back.
"""

from __future__ import annotations

import pywt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoencoder import check_count, crop_to

__all__ = ["DWT2", "IDWT2", "WaveletDecomposer"]


def _pad_periodic(x: Tensor, pad: int, dim: int) -> Tensor:
    """Wrap-around pad ``x`` by ``pad`` on both sides of ``dim`` (slicing + cat, not F.pad)."""
    n = x.shape[dim]
    if pad == 0:
        return x
    if pad > n:  # tiny input: tile first so the pad can wrap around more than once
        reps = -(-pad // n)
        return torch.cat([x] * (2 * reps + 1), dim=dim).narrow(dim, reps * n - pad, n + 2 * pad)
    return torch.cat([x.narrow(dim, n - pad, pad), x, x.narrow(dim, 0, pad)], dim=dim)


def _make_even(x: Tensor) -> Tensor:
    """Repeat the last row/column of an odd-sized (N, C, H, W) input (PyWavelets' odd rule)."""
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., -1:, :]], dim=-2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., -1:]], dim=-1)
    return x


def _filter_bank(lo: list[float], hi: list[float]) -> tuple[Tensor, Tensor]:
    """Row filters (2, 1, 1, L) and grouped column filters (4, 1, L, 1), float64."""
    bank = torch.tensor([lo, hi], dtype=torch.float64)
    rows = bank[:, None, None, :]
    # Column pass runs with groups=2 on [lo_W, hi_W]: each gets lo_H then hi_H, giving the
    # band order aa, da, ad, dd = cA, cH, cV, cD (pywt.dwt2 convention).
    cols = bank.repeat(2, 1)[:, None, :, None]
    return rows, cols


class DWT2(nn.Module):
    """One-level 2-D DWT, periodization mode.

    ``forward(x)``: x (N, C, H, W) -> (cA (N, C, h, w), details (N, 3C, h, w)) with
    h = ceil(H/2), w = ceil(W/2). ``details`` is band-major: ``details[:, b*C + c]`` is band
    b in (cH, cV, cD) of input channel c, i.e. ``torch.cat([cH, cV, cD], dim=1)``.
    Note the approximation carries a DC gain of 2 (sqrt(2) per axis).
    """

    def __init__(self, wavelet: str = "bior4.4") -> None:
        super().__init__()
        w = pywt.Wavelet(wavelet)
        self.wavelet = wavelet
        # conv2d is cross-correlation, so reverse the analysis taps to get a true convolution.
        rows, cols = _filter_bank(w.dec_lo[::-1], w.dec_hi[::-1])
        # Non-persistent: the taps follow from `wavelet`, so keep them out of checkpoints.
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        # pywt aligns output o with input 2*o + L/2 (mod N); in correlation form that is a
        # periodic pad of L/2 - 1 on both sides (L is even for every pywt wavelet).
        self.pad = len(w.dec_lo) // 2 - 1

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c = x.shape[:2]
        x = _make_even(x)
        h, w = x.shape[-2:]
        # Fold channels into the batch so the same 1-channel filters serve any C.
        y = x.reshape(n * c, 1, h, w)
        rows, cols = self.rows.to(x), self.cols.to(x)
        y = F.conv2d(_pad_periodic(y, self.pad, -1), rows, stride=(1, 2))
        y = F.conv2d(_pad_periodic(y, self.pad, -2), cols, stride=(2, 1), groups=2)
        y = y.reshape(n, c, 4, h // 2, w // 2)
        details = y[:, :, 1:].transpose(1, 2).reshape(n, 3 * c, h // 2, w // 2)
        return y[:, :, 0], details


class IDWT2(nn.Module):
    """Inverse of :class:`DWT2` (perfect reconstruction, periodization mode).

    ``forward(cA, details, size=None)``: cA (N, C, h, w), details (N, 3C, h, w) in DWT2's
    band-major order -> x (N, C, 2h, 2w), cropped to ``size=(H, W)`` if given (odd inputs).
    """

    def __init__(self, wavelet: str = "bior4.4") -> None:
        super().__init__()
        w = pywt.Wavelet(wavelet)
        self.wavelet = wavelet
        # conv_transpose2d scatters with the taps as given, which is what synthesis needs.
        rows, cols = _filter_bank(w.rec_lo, w.rec_hi)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        length = len(w.rec_lo)
        # Periodically pad the coefficients by q so every kept output sees all its terms, then
        # crop; output n of the unpadded transposed conv sits at index n + L/2 - 1.
        self.q = length // 4 + 1
        self.offset = length // 2 - 1 + 2 * self.q

    def _synth(self, y: Tensor, weight: Tensor, dim: int) -> Tensor:
        """Upsample-by-2 synthesis along ``dim`` (-1 or -2) for grouped channel pairs."""
        size = 2 * y.shape[dim]
        y = _pad_periodic(y, self.q, dim)
        stride = (1, 2) if dim == -1 else (2, 1)
        y = F.conv_transpose2d(y, weight, stride=stride, groups=y.shape[1] // 2)
        return y.narrow(dim, self.offset, size)

    def forward(self, cA: Tensor, details: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        n, c, h, w = cA.shape
        if details.shape != (n, 3 * c, h, w):
            raise ValueError(f"details must be {(n, 3 * c, h, w)}, got {tuple(details.shape)}")
        bands = torch.cat([cA[:, :, None], details.reshape(n, 3, c, h, w).transpose(1, 2)], dim=2)
        y = bands.reshape(n * c, 4, h, w)  # (cA, cH, cV, cD) per channel
        # Undo the column (H) pass: pairs (cA, cH) -> lo_W and (cV, cD) -> hi_W, then summed.
        rows, cols = self.rows.to(cA), self.cols.to(cA)
        y = self._synth(y, cols, -2)  # (N*C, 2, 2h, w): lo_W, hi_W
        y = self._synth(y, rows, -1)  # (N*C, 1, 2h, 2w)
        return crop_to(y.reshape(n, c, 2 * h, 2 * w), size, "reconstruction")


class WaveletDecomposer(nn.Module):
    """Fixed DWT stand-in for WAE's learned encoder ("Wavelet+CNN" baseline).

    ``encode(x)`` / ``forward(x)``: x (N, in_chans, H, W) -> (low (N, low_chans, h, w),
    high (N, high_chans, h, w)) with low = cA for the standard network and high = cH, cV, cD
    (band-major) for the light branch; ``decode`` inverts it.
    """

    def __init__(self, in_chans: int, wavelet: str = "bior4.4") -> None:
        super().__init__()
        self.in_chans = check_count(in_chans, "in_chans", "image channels")
        self.low_chans = in_chans
        self.high_chans = 3 * in_chans
        self.dwt = DWT2(wavelet)
        self.idwt = IDWT2(wavelet)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.dwt(x)

    def decode(self, low: Tensor, high: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        return self.idwt(low, high, size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(x)
