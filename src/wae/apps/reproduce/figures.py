"""Figures of the reproduction's numbers (matplotlib, Agg backend, PNG):

* accuracy against measured CPU latency, one point per method;
* accuracy against the variance of the added Gaussian noise (the paper's Table 7).

The decomposition grids (the paper's Fig. 3/4) are drawn by :mod:`wae.figures`, which the
demo shares; their names stay importable from here. Every method keeps one
:class:`Style` (colour, marker, line) in every figure (:data:`METHOD_STYLES`); markers are
hollow, and drawn largest first, so points at the same place all stay visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...figures import STRETCH_CAPTION, decomposition_grid, panel, pyplot, save_figure

__all__ = [
    "METHOD_STYLES",
    "STRETCH_CAPTION",
    "Style",
    "accuracy_vs_latency",
    "accuracy_vs_noise",
    "decomposition_grid",
    "panel",
]


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
    plt = pyplot()
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
    return save_figure(plt, fig, path)


def accuracy_vs_noise(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str,
    styles: Mapping[str, Style] | None = None,
) -> Path:
    """series: {label: [(variance, top-1 %), ...]} -> one line per method, in its `styles`."""
    plt = pyplot()
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
    return save_figure(plt, fig, path)
