"""The reproduction's time budget: an estimate from nominal throughputs
(:func:`estimate_seconds`, :func:`wall_seconds`), the largest training subset that fits
``--budget-minutes`` (:func:`auto_subset`), and :class:`Plan`, what the reproduction will do."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...models import is_model, model_cfg
from .methods import METHOD_KEYS

__all__ = ["Plan", "auto_subset", "estimate_seconds", "wall_seconds"]

# Images per second with one thread, SmallVGG width 48 (the recipe's) on 28x28: training steps
# (images of the stages' batches, channels_last) and evaluation forwards (batch 500), measured
# by `benchmarks/train_rates.py --images 1000` on this project's 2-core machine with its other
# core idle (with two trainings sharing the cores they were ~1.5x lower). Taylor's pruned net
# is not measured there: its rates are full's scaled by its speed ratio to full at width 32.
# Only used to estimate and to choose the auto subset, never recorded in a config, so they
# cannot change what a run computes.
_RATE_WIDTH = 48
_RATE_SIZE = 28  # other input sizes scale the rates by the pixel count
_TRAIN_RATE = {
    "full": 300.0,
    "half": 1050.0,
    "wavelet": 860.0,
    "ca": 1030.0,
    "encoder": 695.0,
    "wae/1": 920.0,
    "wae/2": 805.0,
    "wae/3": 450.0,
    "il": 805.0,  # as wae/2: the same network, WAE frozen
    "taylor": 575.0,
    # Not measured: the student's rate with the teacher's forward added (the full network's
    # forward at ~900 images/s, three times its training rate); stage 1 has no teacher.
    "wae_kd/1": 920.0,
    "wae_kd/2": 425.0,
    "wae_kd/3": 300.0,
    "half_kd": 485.0,
    # Not measured: the WAE's. Its encoder is far cheaper, but the decoder (full resolution,
    # unchanged) dominates stage 1 and the backbone stages 2 and 3.
    "wae_light/1": 920.0,
    "wae_light/2": 805.0,
    "wae_light/3": 450.0,
    # Not measured: the distilled WAE's (the unfrozen encoder and the wider branch a little
    # slower in stage 2 / throughout).
    "wae_kd_unfrozen/1": 920.0,
    "wae_kd_unfrozen/2": 330.0,
    "wae_kd_unfrozen/3": 300.0,
    "wae_kd_wide/1": 920.0,
    "wae_kd_wide/2": 380.0,
    "wae_kd_wide/3": 280.0,
    "wae_kd_feat/1": 920.0,
    "wae_kd_feat/2": 425.0,
    "wae_kd_feat/3": 300.0,
}
_EVAL_RATE = {
    "full": 545.0,
    "half": 2950.0,
    "wavelet": 2420.0,
    "ca": 2810.0,
    "encoder": 1570.0,
    "wae_noft": 1510.0,
    "wae": 1510.0,
    "il": 1510.0,
    "taylor": 1020.0,
    "wae_kd": 1510.0,  # the WAE's and the half-size network's: evaluation has no teacher
    "half_kd": 2950.0,
    "wae_light": 1510.0,  # not measured: the WAE's
    "wae_kd_unfrozen": 1510.0,
    "wae_kd_wide": 1300.0,
    "wae_kd_feat": 1510.0,
}
# Two one-thread trainings side by side on the 2-core machine each ran at ~0.9x their rate
# alone (WAE stage 2: 26 s per epoch vs 23.7 s); budget a little more than that.
_PARALLEL_EFFICIENCY = 0.85
_FIXED_S = 240.0  # latency tables, I_H analysis, figures, photo WAE, data loading
_FIXED_QUICK_S = 60.0


@dataclass
class Plan:
    """What the reproduction will do, for printing and for results.json."""

    seeds: list[int]
    subset: int | None
    subset_source: str  # "recipe", "--subset", "auto", "auto, fitted to ...", "quick"
    n_train: int
    n_val: int
    n_test: int
    classifier_epochs: int
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    estimate_s: dict[str, float] = field(default_factory=dict)
    status: dict[str, dict[int, str]] = field(default_factory=dict)
    jobs: int = 1  # seeds trained side by side, one process each
    methods: tuple[str, ...] = METHOD_KEYS  # the rows to run (--methods, with their needs)

    @property
    def total_estimate_s(self) -> float:
        return wall_seconds(self.estimate_s, self.jobs)


def wall_seconds(estimate: Mapping[str, float], jobs: int = 1) -> float:
    """Wall-clock estimate of :func:`estimate_seconds`'s figures when `jobs` processes share
    the seeds' trainings (the ``"fixed"`` part runs once, after them)."""
    fixed = estimate.get("fixed", 0.0)
    work = sum(estimate.values()) - fixed
    return fixed + (work if jobs <= 1 else work / (jobs * _PARALLEL_EFFICIENCY))


def _rate_scale(width: int | None, input_size: int | None) -> float:
    """Rough throughput factor of a classifier's width and input size vs the measured ones
    (_RATE_WIDTH, _RATE_SIZE)."""
    # Roughly as the MACs (conv channels squared); tiny widths are overhead-bound: cap the gain.
    w = min((_RATE_WIDTH / width) ** 2, 4.0) if width else 1.0
    return w * (_RATE_SIZE / input_size) ** 2 if input_size else w


def _input_size(cfg: Mapping[str, Any]) -> int | None:
    """A method config's input size: its data's, else its registered model's."""
    name = cfg["model"]["name"]
    return cfg["data"].get("input_size") or (
        model_cfg(name).get("input_size") if is_model(name) else None
    )


def estimate_seconds(
    configs: Mapping[str, Mapping[str, Any]],
    n_train: int,
    n_val: int,
    n_test: int,
    *,
    seeds: int = 1,
    quick: bool = False,
) -> dict[str, float]:
    """Estimated seconds per method (training + validation + test with noise), all seeds,
    plus ``"fixed"`` for what runs once."""
    out: dict[str, float] = {}
    width = size = None
    for key, c in configs.items():
        width = width or c["model"]["kwargs"].get("width")
        size = size or _input_size(c)
        scale = _rate_scale(c["model"]["kwargs"].get("width"), size)
        n_noise = 1 + len(c["eval"]["noise_vars"])
        t = 0.0
        for i, s in enumerate(c["stages"], 1):
            # The WAE alone (stage 1) runs no classifier: its cost does not follow the width.
            sc = _rate_scale(None, size) if set(s["losses"]) <= {"transform"} else scale
            rate = _TRAIN_RATE.get(f"{key}/{i}", _TRAIN_RATE.get(key, 800.0)) * sc
            t += s["epochs"] * (n_train / rate + n_val / (_EVAL_RATE.get(key, 1000.0) * sc))
        t += n_test * n_noise / (_EVAL_RATE.get(key, 1000.0) * scale)
        out[key] = t * seeds
    if "wae" in configs:  # its stage-2 checkpoint is evaluated too
        c = configs["wae"]
        n_noise = 1 + len(c["eval"]["noise_vars"])
        scale = _rate_scale(width, size)
        out["wae_noft"] = n_test * n_noise / (_EVAL_RATE["wae_noft"] * scale) * seeds
    out["fixed"] = _FIXED_QUICK_S if quick else _FIXED_S
    return out


def auto_subset(
    make_configs: Any,
    *,
    total_train: int,
    val_fraction: float,
    n_test: int,
    seeds: int,
    budget_s: float,
    jobs: int = 1,
    step: int = 1000,
    minimum: int = 2000,
) -> int | None:
    """The largest training subset (a multiple of `step`) whose estimate fits `budget_s` with
    `jobs` seeds trained side by side; None if the whole training set fits.
    ``make_configs(subset)`` -> the method configs."""
    best = None
    n = step
    while n <= total_train:
        cfgs = make_configs(n)
        n_val = int(math.floor(n * val_fraction))
        est = estimate_seconds(cfgs, n - n_val, n_val, n_test, seeds=seeds)
        if wall_seconds(est, jobs) > budget_s:
            break
        best = n
        n += step
    if best is None:
        return minimum
    return None if best + step > total_train else max(best, minimum)
