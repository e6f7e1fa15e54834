"""How far trivial cues go: a classifier on each image's brightness and contrast alone.

A dataset where this baseline comes near the networks' accuracy does not test what the
networks see in spatial detail (reported by ``wae reproduce``; see :mod:`.textures`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

__all__ = ["trivial_cue_accuracy"]


def _mean_std(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item (mean, std) features ``(N, 2)`` float64 and labels ``(N,)``."""
    feats, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=1024):
            flat = x.flatten(1).double()
            feats.append(torch.stack([flat.mean(1), flat.std(1)], 1))
            labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels).long()


def trivial_cue_accuracy(train: Dataset, test: Dataset, steps: int = 300) -> float:
    """Test top-1 (%) of a multinomial logistic regression on each patch's mean and standard
    deviation alone (quadratic in the two, so class regions may be bands and ellipses):
    what a classifier gets from brightness and contrast, with no spatial detail."""
    xtr, ytr = _mean_std(train)
    xte, yte = _mean_std(test)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-12)

    def expand(f: torch.Tensor) -> torch.Tensor:
        z = (f - mu) / sd
        return torch.cat([z, z**2, z[:, :1] * z[:, 1:]], 1)

    ztr, zte = expand(xtr), expand(xte)
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
