"""Figures two apps draw (matplotlib, Agg backend, PNG): a WAE's decomposition of images.

Per image: the input, I_L, I_H and the reconstruction (and, given a second encoder, its two
outputs), in the manner of the paper's Fig. 3/4. Sub-images are shown min-max stretched per
panel (I_H has a tiny range after the energy loss); each panel's title gives the stretched value
range, so nothing is hidden by the stretch, and the caption (:data:`STRETCH_CAPTION`) says so.
Colour images show in colour; other channel counts show their channel mean.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "STRETCH_CAPTION",
    "decomposition_grid",
    "decomposition_rows",
    "draw_decomposition",
    "panel",
    "pyplot",
    "save_figure",
]

Row = list[tuple[str, torch.Tensor, bool]]  # one image's panels: (title, (C, H, W), stretch?)

STRETCH_CAPTION = (
    "Panels with a [min, max] range under their title are stretched per panel to be visible: "
    "the panel's lowest value shows black and its highest white, and the brackets give those "
    "raw values (a narrow range means a faint sub-image, as I_H is). Colour sub-images are "
    "stretched over their three channels together, so their colours are false colours, not "
    "the photo's; sub-images of other channel counts show their channel mean. Panels without "
    "brackets (inputs, reconstructions) are shown as they are, in [0, 1]."
)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
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
    plt = pyplot()
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
    return save_figure(plt, fig, path, rect=(0, cap_h / height, 1, 1))


@torch.no_grad()
def decomposition_rows(
    wae: nn.Module, images: Sequence[torch.Tensor], enc: nn.Module | None = None
) -> list[Row]:
    """Per (C, H, W) image: the input, the WAENet `wae`'s I_L, I_H and reconstruction, and
    (given) the second encoder `enc`'s two outputs (Decomposition+CNN)."""
    rows = []
    for x in images:
        x = x[None]
        p = wae.wae(x, decode=True)
        row = [
            ("input", x[0], False),
            ("WAE I_L", p.low[0], True),
            ("WAE I_H", p.high[0], True),
            ("WAE I'", p.recon[0], False),
        ]
        if enc is not None:
            low, high = enc.wae.encode(x)
            row += [("Dec+CNN 1st", low[0], True), ("Dec+CNN 2nd", high[0], True)]
        rows.append(row)
    return rows


def draw_decomposition(
    wae: nn.Module,
    images: Sequence[torch.Tensor],
    path: str | Path,
    title: str,
    enc: nn.Module | None = None,
) -> Path:
    """:func:`decomposition_rows` drawn as a grid with the stretch caption; returns `path`."""
    return decomposition_grid(decomposition_rows(wae, images, enc), path, title)


def save_figure(
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
