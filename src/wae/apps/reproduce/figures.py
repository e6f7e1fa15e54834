"""Figures of the reproduction (matplotlib, Agg backend, PNG).

* decomposition grids in the manner of the paper's Fig. 3/4: per image, the input, I_L, I_H
  and the reconstruction, for WAE and for Decomposition+CNN;
* accuracy against measured CPU latency, one point per method;
* accuracy against the variance of the added Gaussian noise (the paper's Table 7).

Sub-images are shown min-max stretched per panel (I_H has a tiny range after the energy loss);
each panel's title gives the stretched value range, so nothing is hidden by the stretch, and
the figure's caption (:data:`STRETCH_CAPTION`) says so. Every method keeps one
:class:`Style` (colour, marker, line) in every figure (:data:`METHOD_STYLES`); markers are
hollow, and drawn largest first, so points at the same place all stay visible.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "METHOD_STYLES",
    "STRETCH_CAPTION",
    "Style",
    "accuracy_vs_latency",
    "accuracy_vs_noise",
    "decomposition_grid",
    "panel",
]

STRETCH_CAPTION = (
    "Panels with a [min, max] range under their title are stretched per panel to be visible: "
    "the panel's lowest value shows black and its highest white, and the brackets give those "
    "raw values (a narrow range means a faint sub-image, as I_H is). Colour sub-images are "
    "stretched over their three channels together, so their colours are false colours, not "
    "the photo's; sub-images of other channel counts show their channel mean. Panels without "
    "brackets (inputs, reconstructions) are shown as they are, in [0, 1]."
)


@dataclass(frozen=True)
class Style:
    """How one method is drawn in every figure. Hollow markers (``filled=False``) let a point
    behind show through; the larger of two markers at one place is drawn first."""

    color: str
    marker: str
    size: float = 8.0
    filled: bool = False
    linestyle: str = "-"

    def kwargs(self) -> dict[str, Any]:
        """matplotlib keyword arguments of a marker (and its line) in this style."""
        return {
            "color": self.color,
            "marker": self.marker,
            "markersize": self.size,
            "markerfacecolor": self.color if self.filled else "none",
            "markeredgecolor": self.color,
            "markeredgewidth": 1.6,
            "linestyle": self.linestyle,
        }


# One style per method key (see wae.apps.reproduce.methods.METHODS). WAE and "WAE w/o stage 3" are
# one network, so they share a latency and often an accuracy: the latter is a large ring, the
# WAE a smaller filled star drawn on top of it, so both show. The rows beyond the paper
# (distillation) share their network's latency too: a larger hollow marker around it, dotted;
# the light encoder's WAE (faster) a dark-red diamond, dotted.
METHOD_STYLES: dict[str, Style] = {
    "full": Style("black", "o"),
    "half": Style("tab:orange", "s"),
    "wavelet": Style("tab:green", "D"),
    "ca": Style("tab:olive", "v"),
    "encoder": Style("tab:purple", "^"),
    "wae_noft": Style("tab:blue", "o", size=14, linestyle="--"),
    "wae": Style("tab:red", "*", size=10, filled=True),
    "il": Style("tab:cyan", "P"),
    "taylor": Style("tab:brown", "X"),
    "wae_kd": Style("magenta", "*", size=13, linestyle=":"),
    "half_kd": Style("tab:gray", "s", size=11, linestyle=":"),
    "wae_light": Style("darkred", "d", size=10, linestyle=":"),
    "wae_kd_unfrozen": Style("tab:pink", "P", size=11, linestyle=":"),
    "wae_kd_wide": Style("indigo", "h", size=11, linestyle=":"),
    "wae_kd_feat": Style("teal", "X", size=11, linestyle=":"),
}
_FALLBACK = [Style(f"C{i}", m) for i, m in enumerate("osD^vP*X<>ph")]


def _styles(
    labels: Sequence[str], styles: Mapping[str, Style] | None
) -> list[tuple[int, str, Style]]:
    """(z-order, label, style) per label, largest marker first so none hides a smaller one."""
    styles = styles or {}
    chosen = [(lab, styles.get(lab, _FALLBACK[i % len(_FALLBACK)])) for i, lab in enumerate(labels)]
    order = sorted(range(len(chosen)), key=lambda i: -chosen[i][1].size)  # stable
    return [(3 + rank, *chosen[i]) for rank, i in enumerate(order)]


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
    rows: Sequence[Sequence[tuple[str, torch.Tensor, bool]]],
    path: str | Path,
    title: str,
    caption: str | None = STRETCH_CAPTION,
) -> Path:
    """A grid: one row per image, each cell (column title, (C, H, W) tensor, stretch?); the
    caption (under the grid) explains the stretched panels."""
    plt = _plt()
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    # About 34 characters of 6.5 pt text per 1.9-inch column; 0.11 inch per line.
    lines = textwrap.wrap(caption, 34 * n_cols) if caption else []
    cap_h = 0.11 * len(lines) + (0.15 if lines else 0.0)  # inches
    height = 2.2 * n_rows + 0.6 + cap_h  # 2.2 per row: room for two-line panel titles
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, height), squeeze=False)
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
    if lines:
        fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=6.5)
    return _save(plt, fig, path, rect=(0, cap_h / height, 1, 1))


def accuracy_vs_latency(
    points: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    title: str,
    xlabel: str,
    styles: Mapping[str, Style] | None = None,
) -> Path:
    """points: {label: {"latency_ms", "top1", "top1_std" (or None)}} -> scatter, one marker
    per method named in a legend (text labels beside close points overlap); `styles`: a
    :class:`Style` per label (others get one of their own)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    handles = {}
    for z, label, st in _styles(list(points), styles):
        p = points[label]
        if p.get("latency_ms") is None or p.get("top1") is None:
            continue
        kw = {**st.kwargs(), "linestyle": "none"}
        handles[label] = ax.errorbar(
            p["latency_ms"],
            p["top1"],
            yerr=p.get("top1_std"),  # none with one seed
            capsize=3,
            label=label,
            zorder=z,
            **kw,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    shown = [lab for lab in points if lab in handles]  # the legend in the methods' order
    ax.legend(
        [handles[lab] for lab in shown],
        shown,
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    return _save(plt, fig, path)


def accuracy_vs_noise(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str,
    styles: Mapping[str, Style] | None = None,
) -> Path:
    """series: {label: [(variance, top-1 %), ...]} -> one line per method, in its `styles`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    lines = {}
    for z, label, st in _styles(list(series), styles):
        pts = series[label]
        if not pts:
            continue
        v, a = zip(*pts, strict=True)
        (lines[label],) = ax.plot(v, a, label=label, zorder=z, **st.kwargs())
    ax.set_xlabel("variance V of the added Gaussian noise ([0, 1] images)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    shown = [lab for lab in series if lab in lines]
    ax.legend([lines[lab] for lab in shown], shown, fontsize=7)
    return _save(plt, fig, path)


def _save(
    plt: Any, fig: Any, path: str | Path, rect: tuple[float, float, float, float] | None = None
) -> Path:
    """Lay out (within `rect` of the figure, if given), write (creating the folder) and close
    a figure; returns its path."""
    fig.tight_layout(rect=rect)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
