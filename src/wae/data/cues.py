"""How far trivial cues go: a classifier on each image's brightness, contrast and ink alone.

A dataset where this baseline comes near the networks' accuracy does not test what the
networks see in spatial detail (reported by ``wae reproduce``; see :mod:`.textures` and
:mod:`.fonts`).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

__all__ = ["CUE_FEATURES", "cue_features", "trivial_cue_accuracy"]

#: The per-image statistics the baseline sees: mean, standard deviation, ink fraction.
CUE_FEATURES = ("mean", "std", "ink")


def _ink_fraction(flat: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` -> ``(N,)``: the share of pixels farther from the image's median (its paper,
    where most pixels are background) than half its range (max - min): its ink, whatever
    the tones or polarity. 0 for a flat image."""
    median = flat.median(1, keepdim=True).values
    half = (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True)) / 2
    return ((flat - median).abs() > half.clamp_min(1e-12)).double().mean(1)


def cue_features(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item :data:`CUE_FEATURES` ``(N, 3)`` float64 and labels ``(N,)`` int64."""
    feats, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=1024):
            flat = x.flatten(1).double()
            feats.append(torch.stack([flat.mean(1), flat.std(1), _ink_fraction(flat)], 1))
            labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels).long()


def _quadratic(z: torch.Tensor) -> torch.Tensor:
    """``(N, F)`` -> ``(N, 2F + F(F-1)/2)``: the features, their squares and pairwise products."""
    pairs = [z[:, i] * z[:, j] for i, j in itertools.combinations(range(z.shape[1]), 2)]
    return torch.cat([z, z**2, torch.stack(pairs, 1)], 1)


def trivial_cue_accuracy(train: Dataset, test: Dataset, steps: int = 300) -> float:
    """Test top-1 (%) of a multinomial logistic regression on each image's mean, standard
    deviation and ink fraction alone (quadratic in them, so class regions may be bands and
    ellipses): what a classifier gets from brightness, contrast and the amount of ink, with
    no spatial detail."""
    xtr, ytr = cue_features(train)
    xte, yte = cue_features(test)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-12)
    ztr, zte = _quadratic((xtr - mu) / sd), _quadratic((xte - mu) / sd)
    k = int(max(ytr.max(), yte.max())) + 1
    w = torch.zeros(ztr.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(ztr @ w + b, ytr) + 1e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return 100.0 * float(((zte @ w + b).argmax(1) == yte).double().mean())
