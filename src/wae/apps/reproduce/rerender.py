"""Re-render a finished reproduction's report from its results.json, training nothing.

The verdict rule and the figures' styles may change after a long run (e.g. a newer wae): the
claims and the number-based figures (accuracy against latency and noise) are recomputed
from the stored numbers; the decomposition figures, which need the trained models, are kept
as they are and get their captions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...checkpoint import atomic_write_json
from ...runlock import RunLock
from . import figures
from .draw import Figures, draw_number_figures
from .methods import ReproduceError
from .report import claims, write_report

__all__ = ["rerender_report"]


def rerender_report(out_dir: str | os.PathLike[str]) -> Path:
    """Recompute claims and number-based figures of the reproduction in `out_dir`, then
    rewrite its results.json and report.md; returns the report's path."""
    out = Path(out_dir)
    try:
        results: dict[str, Any] = json.loads((out / "results.json").read_text())
        methods = results["methods"]
    except (OSError, ValueError, KeyError) as e:
        raise ReproduceError(
            f"{out} holds no finished reproduction (results.json with its methods: {e}). Run "
            f"`wae reproduce -o {out}` first."
        ) from None
    with RunLock(out, "wae reproduce --report-only"):
        figs = draw_number_figures(out / "figures", methods)
        _keep_model_figures(results, figs)
        results["figures"], results["figure_captions"] = figs.paths, figs.captions
        results["claims"] = claims(results)
        atomic_write_json(out / "results.json", results)
        return write_report(results, out)


def _keep_model_figures(results: dict[str, Any], figs: Figures) -> None:
    """The decomposition figures drawn from the trained models, captioned, as they were."""
    for title, path in (results.get("figures") or {}).items():
        if title not in figs.paths and "decomposition" in path:
            figs.paths[title] = path
            figs.captions[title] = figures.STRETCH_CAPTION
