"""What the decomposition carries: reconstruction quality with and without I_H, the energy of
I_H relative to I_L, and a small colour WAE trained on bundled photos for the figures.

PSNR is over the whole image set: 10 log10(1 / MSE) with the mean squared error over every
pixel of every image ([0, 1] images, peak 1). The energy ratio is sum(I_H^2) / sum(I_L^2) over
the set, on the raw sub-images (before the classifier's fixed normalisation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...autoencoder import WaveletAutoEncoder, transform_loss
from ...wavelet import WaveletDecomposer

__all__ = [
    "PHOTO_TEST",
    "PHOTO_TRAIN",
    "decomposition_stats",
    "decomposition_table",
    "load_photo",
    "psnr",
    "train_photo_wae",
]

# scikit-image's bundled photos (no download): the colour WAE learns on the first list and is
# shown on the second, which it never saw.
PHOTO_TRAIN = ("coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field")
PHOTO_TEST = ("astronaut", "camera")


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error (inf for 0)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


@torch.no_grad()
def decomposition_stats(
    decomposer: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> dict[str, Any]:
    """PSNR of the reconstruction from I_L alone and from I_L + I_H, and the energy ratio
    of I_H to I_L, over `images` (N, C, H, W) in [0, 1].

    `decomposer` is a WaveletAutoEncoder with decoder (I_L alone: D_L(I_L)) or a
    WaveletDecomposer (cA alone: the inverse DWT with the detail bands zeroed).
    """
    was = decomposer.training
    decomposer.eval()
    sq_low = sq_full = e_low = e_high = 0.0
    n_pix = 0
    try:
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            size = (x.shape[-2], x.shape[-1])
            low, high = decomposer.encode(x)
            if isinstance(decomposer, WaveletAutoEncoder):
                rec_low = decomposer.decode_low(low, size)
            elif isinstance(decomposer, WaveletDecomposer):
                rec_low = decomposer.decode(low, torch.zeros_like(high), size)
            else:
                raise TypeError(f"no low-only reconstruction for {type(decomposer).__name__}")
            rec = decomposer.decode(low, high, size)
            sq_low += float(((x - rec_low) ** 2).double().sum())
            sq_full += float(((x - rec) ** 2).double().sum())
            e_low += float((low.double() ** 2).sum())
            e_high += float((high.double() ** 2).sum())
            n_pix += x.numel()
    finally:
        decomposer.train(was)
    mse_low, mse_full = sq_low / max(1, n_pix), sq_full / max(1, n_pix)
    return {
        "num_images": len(images),
        "mse_low_only": mse_low,
        "mse_full": mse_full,
        "psnr_low_only_db": psnr(mse_low),
        "psnr_full_db": psnr(mse_full),
        "energy_low": e_low,
        "energy_high": e_high,
        "energy_ratio_high_to_low": e_high / e_low if e_low > 0 else None,
    }


def decomposition_table(
    wae_stage1: WaveletAutoEncoder, wae_final: WaveletAutoEncoder, images: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """What I_H carries (:func:`decomposition_stats`) in the WAE after stage 1 and after
    stage 3, and in the DWT for reference, over `images` (N, C, H, W) in [0, 1]."""
    return {
        "wae_stage1": decomposition_stats(wae_stage1, images),
        "wae_final": decomposition_stats(wae_final, images),
        "dwt": decomposition_stats(WaveletDecomposer(images.shape[1]), images),
    }


def load_photo(name: str, size: int, grey: bool = False) -> torch.Tensor:
    """A bundled scikit-image photo as a (C, size, size) float tensor in [0, 1] (centre
    square crop, anti-aliased resize)."""
    from skimage import data as skdata
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.transform import resize

    img = getattr(skdata, name)()
    img = np.asarray(img, dtype=np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 3 and img.shape[2] == 4:
        img = rgba2rgb(img)
    if grey and img.ndim == 3:
        img = rgb2gray(img)
    if not grey and img.ndim == 2:
        img = np.stack([img] * 3, -1)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top : top + s, left : left + s]
    img = resize(img, (size, size), anti_aliasing=True)
    t = torch.from_numpy(np.ascontiguousarray(img)).float().clamp(0, 1)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def train_photo_wae(
    steps: int, *, seed: int = 0, crop: int = 48, batch_size: int = 16, lr: float = 1e-3
) -> tuple[WaveletAutoEncoder, dict[str, Any]]:
    """A colour WAE (in_chans=3) trained briefly with the transform loss (lambda = 1) on
    random crops of :data:`PHOTO_TRAIN`; returns (model in eval mode, training log)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    photos = [load_photo(n, 192) for n in PHOTO_TRAIN]
    wae = WaveletAutoEncoder(3)
    opt = torch.optim.Adam(wae.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        xs = []
        for _ in range(batch_size):
            p = photos[int(torch.randint(len(photos), (1,), generator=g))]
            i, j = (int(v) for v in torch.randint(0, p.shape[-1] - crop + 1, (2,), generator=g))
            x = p[:, i : i + crop, j : j + crop]
            if bool(torch.rand((), generator=g) < 0.5):
                x = x.flip(-1)
            xs.append(x)
        x = torch.stack(xs)
        loss = transform_loss(x, wae(x), lam=1.0, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    wae.eval()
    log = {
        "steps": steps,
        "crop": crop,
        "batch_size": batch_size,
        "optimizer": f"adam lr {lr:g}",
        "loss": "transform, mean reduction, lambda 1",
        "train_photos": list(PHOTO_TRAIN),
        "first_loss": losses[0] if losses else None,
        "last_loss": float(np.mean(losses[-10:])) if losses else None,
    }
    return wae, log
