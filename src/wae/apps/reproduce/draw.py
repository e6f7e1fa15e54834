"""The reproduction's figures, from its models and numbers (the drawing itself is in
:mod:`wae.figures` and :mod:`wae.apps.reproduce.figures`): decompositions of test images and
photos, a colour WAE on held-out photos, accuracy against latency and against noise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...figures import decomposition_rows
from . import figures
from .analysis import PHOTO_TEST, decomposition_stats, load_photo, train_photo_wae
from .methods import BEYOND_KEYS

__all__ = ["Figures", "draw_figures", "draw_number_figures"]

_MARKERS = (
    "One marker and colour per method, the same in every figure; error bars: ± one sample "
    "standard deviation over seeds (none with one seed). WAE w/o stage 3 is the WAE's network "
    "before fine-tuning, so it has the WAE's latency: its ring surrounds the WAE's star."
)
_MARKERS_BEYOND = (
    " The rows beyond the paper (distillation) have their network's latency too: the hollow "
    "magenta star of WAE + distillation surrounds the WAE's, the grey square of I_R + "
    "distillation I_R's; the dark-red diamond is the WAE with the light encoder."
)


@dataclass
class Figures:
    """What was drawn: {title: path relative to the output directory}, a caption per title,
    and the photo WAE's training log."""

    paths: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    photo_log: dict[str, Any] = field(default_factory=dict)

    def add(self, title: str, path: Path, root: Path, caption: str) -> None:
        self.paths[title] = str(path.relative_to(root))
        self.captions[title] = caption


def draw_figures(
    fig_dir: Path,
    models: Mapping[str, nn.Module],
    test: Any,
    methods: Mapping[str, Mapping[str, Any]],
    *,
    in_chans: int,
    dataset: str,
    photo_steps: int,
    log: Callable[[str], None],
) -> Figures:
    """Every figure into `fig_dir` (paths recorded relative to its parent)."""
    log("== figures")
    figs = Figures()
    _decompositions(figs, fig_dir, models, test, in_chans, dataset)
    _photo_wae(figs, fig_dir, photo_steps)
    _accuracy(figs, fig_dir, methods)
    return figs


def draw_number_figures(fig_dir: Path, methods: Mapping[str, Mapping[str, Any]]) -> Figures:
    """The figures drawn from the stored numbers alone (accuracy against latency and noise)."""
    figs = Figures()
    _accuracy(figs, fig_dir, methods)
    return figs


def _one_per_class(test: Any, n: int = 6) -> list[torch.Tensor]:
    """The first test image of each class, up to `n`."""
    picks, seen = [], set()
    targets = getattr(test, "targets", None)
    for i in range(len(test)):
        y = int(targets[i]) if targets is not None else test[i][1]
        if y not in seen:
            seen.add(y)
            picks.append(test[i][0])
        if len(picks) == n:
            break
    return picks


def _decompositions(
    figs: Figures,
    fig_dir: Path,
    models: Mapping[str, nn.Module],
    test: Any,
    in_chans: int,
    dataset: str,
) -> None:
    """Test images, and photos, through the dataset's WAE (the distilled one's when the WAE
    row was not run; no figure without either) and Decomposition+CNN."""
    key = next((k for k in ("wae", "wae_kd") if k in models), None)
    if key is None:
        return
    wae, enc = models[key], models.get("encoder")
    caption = figures.STRETCH_CAPTION
    who = "WAE" if key == "wae" else "WAE + distillation"
    title = f"{dataset} test images: {who} (after stage 3)" + (
        " and Decomposition+CNN" if enc is not None else ""
    )
    rows = decomposition_rows(wae, _one_per_class(test), enc)
    path = figures.decomposition_grid(rows, fig_dir / "decomposition_dataset.png", title)
    figs.add("Decomposition of test images (Fig. 3/4)", path, fig_dir.parent, caption)
    grey = in_chans == 1
    photos = [load_photo(n, 112, grey=grey) for n in PHOTO_TEST]
    title = (
        f"Photos (scikit-image {', '.join(PHOTO_TEST)}) through the models trained on "
        f"{dataset}" + (" (grey)" if grey else "")
    )
    path = figures.decomposition_grid(
        decomposition_rows(wae, photos, enc), fig_dir / "decomposition_photos.png", title
    )
    figs.add(
        "Photos through the dataset's WAE and Decomposition+CNN", path, fig_dir.parent, caption
    )


def _photo_wae(figs: Figures, fig_dir: Path, steps: int) -> None:
    """A colour WAE trained briefly on some photos, shown on others it never saw."""
    photo_wae, plog = train_photo_wae(steps)
    rows = []
    with torch.no_grad():
        for name in PHOTO_TEST:
            x = load_photo(name, 112)[None]
            out = photo_wae(x)
            rows.append(
                [
                    (f"input ({name})", x[0], False),
                    ("I_L", out.low[0], True),
                    ("I_H", out.high[0], True),
                    ("I'", out.recon[0], False),
                    ("D_L(I_L)", photo_wae.decode_low(out.low, x.shape[-2:])[0], False),
                ]
            )
        held_out = torch.stack([load_photo(n, 112) for n in PHOTO_TEST])
        plog["held_out_stats"] = decomposition_stats(photo_wae, held_out)
    title = (
        f"Colour WAE trained {steps} steps on other scikit-image photos "
        f"({', '.join(plog['train_photos'])}), shown on held-out ones"
    )
    path = figures.decomposition_grid(rows, fig_dir / "decomposition_photos_rgb.png", title)
    figs.add("Colour WAE on held-out photos", path, fig_dir.parent, figures.STRETCH_CAPTION)
    figs.photo_log = plog


def _accuracy(figs: Figures, fig_dir: Path, methods: Mapping[str, Mapping[str, Any]]) -> None:
    """Accuracy against CPU latency (batch 256 and 1) and against the noise variance."""
    known = figures.METHOD_STYLES
    styles = {m["label"]: known[k] for k, m in methods.items() if k in known}
    beyond = any(k in BEYOND_KEYS for k in methods)  # captions as before without those rows
    for b, name in (("b256", "batch 256"), ("b1", "batch 1")):
        points = {
            m["label"]: {
                "latency_ms": (m.get("latency") or {}).get(b, {}) and m["latency"][b]["median_ms"],
                "top1": m["top1"],
                "top1_std": m.get("top1_std"),
            }
            for m in methods.values()
        }
        path = figures.accuracy_vs_latency(
            points,
            fig_dir / f"accuracy_vs_latency_{b}.png",
            f"Accuracy vs measured CPU latency ({name})",
            f"CPU latency per {name} (ms, median)",
            styles,
        )
        markers = _MARKERS + (_MARKERS_BEYOND if beyond else "")
        figs.add(f"Accuracy vs CPU latency ({name})", path, fig_dir.parent, markers)
    series = {m["label"]: [(r["var"], r["top1"]) for r in m["noise"]] for m in methods.values()}
    path = figures.accuracy_vs_noise(
        series, fig_dir / "accuracy_vs_noise.png", "Accuracy under Gaussian noise (Table 7)", styles
    )
    caption = (
        "Mean top-1 accuracy over seeds at each noise variance V (V = 0: the clean test set); "
        "markers and colours as in the latency figures, WAE w/o stage 3 dashed"
        + ("; the rows beyond the paper (distillation, light encoder) dotted." if beyond else ".")
    )
    figs.add("Accuracy vs noise variance (Table 7)", path, fig_dir.parent, caption)
