"""Figures of the reproduction (matplotlib, Agg backend, PNG).

* decomposition grids in the manner of the paper's Fig. 3/4: per image, the input, I_L, I_H
  and the reconstruction, for WAE and for Decomposition+CNN;
* accuracy against measured CPU latency, one point per method;
* accuracy against the variance of the added Gaussian noise (the paper's Table 7).

Sub-images are shown min-max stretched per panel (I_H has a tiny range after the energy loss);
each panel's title gives the stretched value range, so nothing is hidden by the stretch.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["accuracy_vs_latency", "accuracy_vs_noise", "decomposition_grid", "panel"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel(t: torch.Tensor, stretch: bool = True) -> tuple[np.ndarray, str]:
    """(C, H, W) tensor -> (image for imshow, range note). C is 1 (grey) or 3 (RGB);
    other channel counts show their mean."""
    t = t.detach().float().cpu()
    if t.shape[0] not in (1, 3):
        t = t.mean(0, keepdim=True)
    lo, hi = float(t.min()), float(t.max())
    if stretch:
        t = (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)
    else:
        t = t.clamp(0, 1)
    img = t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()
    return img, f"[{lo:.2g}, {hi:.2g}]"


def decomposition_grid(
    rows: Sequence[Sequence[tuple[str, torch.Tensor, bool]]], path: str | Path, title: str
) -> Path:
    """A grid: one row per image, each cell (column title, (C, H, W) tensor, stretch?)."""
    plt = _plt()
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.9 * n_cols, 2.0 * n_rows + 0.6), squeeze=False
    )
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j >= len(row):
                continue
            label, t, stretch = row[j]
            img, rng = panel(t, stretch)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"{label}\n{rng}" if stretch else label, fontsize=7)
    fig.suptitle(textwrap.fill(title, 16 * n_cols), fontsize=9)
    return _save(plt, fig, path)


def accuracy_vs_latency(
    points: Mapping[str, Mapping[str, Any]], path: str | Path, title: str, xlabel: str
) -> Path:
    """points: {label: {"latency_ms", "top1", "top1_std" (or None)}} -> scatter, one marker
    per method named in a legend (text labels beside close points overlap)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    markers = "osD^vP*X<>ph"
    for i, (label, p) in enumerate(points.items()):
        if p.get("latency_ms") is None or p.get("top1") is None:
            continue
        ax.errorbar(
            p["latency_ms"],
            p["top1"],
            yerr=p.get("top1_std") or 0.0,
            fmt=markers[i % len(markers)],
            capsize=3,
            label=label,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(plt, fig, path)


def accuracy_vs_noise(
    series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str
) -> Path:
    """series: {label: [(variance, top-1 %), ...]} -> one line per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, pts in series.items():
        if not pts:
            continue
        v, a = zip(*pts, strict=True)
        ax.plot(v, a, marker="o", label=label)
    ax.set_xlabel("variance V of the added Gaussian noise ([0, 1] images)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a figure; returns its path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
