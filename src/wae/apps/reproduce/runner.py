"""`wae reproduce`: train what is missing, reuse what is trained, measure, and report.

One pass, each step a function of the previous one's output (options -> plan -> configs ->
results)::

    prepare        plan.py       recipes, subset, budget, every seed's configs, run statuses
    train_seeds    training.py   every seed's runs (seeds side by side in a process pool)
    method_table   measure.py    accuracy per method, mean and spread over seeds
    time_models    measure.py    MACs, params, CPU latency of the first seed's models
    analyse        analysis.py   what I_H carries (reconstruction with and without it)
    draw_figures   draw.py       figures
    write          report.py     results.json, config.json, report.md

The output directory's layout and the reuse rules are in :mod:`wae.apps.reproduce.rundirs`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch

from ..._version import __version__
from ...checkpoint import atomic_write_json, load_model
from ...cost import machine_info, resolve_backends
from ...data import CUE_FEATURES, trivial_cue_accuracy
from ...runlock import RunLock
from ...runtime import describe_precision
from ...train import build_datasets
from ...train.config import config_to_dict
from .analysis import decomposition_table
from .draw import draw_figures
from .measure import add_cost, aggregate, load_models, method_table, time_models
from .options import Log, ReproduceOptions
from .plan import (
    Setup,
    check_unchanged,
    make_plan,
    prepare,
    print_plan,
    resolve_jobs,
    wae_macs,
)
from .report import claims, write_report
from .rundirs import run_dir, run_status
from .starts import il_init_dir, make_il_init, make_pruned, pruned_dir, read_pruned
from .training import SeedResult, eval_stage2, train_seeds

__all__ = [
    # Names from before the split into steps, importable from here as they were.
    "ReproduceOptions",
    "aggregate",
    "eval_stage2",
    "il_init_dir",
    "make_il_init",
    "make_plan",
    "make_pruned",
    "print_plan",
    "pruned_dir",
    "read_pruned",
    "resolve_jobs",
    "run_reproduce",
    "run_status",
    "wae_macs",
]


def run_reproduce(opts: ReproduceOptions) -> dict[str, Any]:
    """Run the whole reproduction (see the module docstring); returns results.json's dict
    (with ``plan_only``: ``{"plan": ...}``; with ``train_only``: what was trained).

    With ``jobs`` > 1 the seeds train in processes started with "spawn", which import the
    calling script again: a script calling this must guard its top level with
    ``if __name__ == "__main__":``.
    """
    n_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts)
    finally:
        torch.set_num_threads(n_threads)


@contextlib.contextmanager
def _timed(timing: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timing[key] = time.perf_counter() - t0


def _run(opts: ReproduceOptions) -> dict[str, Any]:
    """Plan, then (owning the output directory: :mod:`wae.runlock`) train, measure, report.
    An unwritable output directory, or one another command is writing, is refused first."""
    t_start = time.perf_counter()
    log = Log(opts.verbose)
    resolve_backends(opts.backends, quick=opts.quick)  # checked before anything is planned
    lock = None if opts.plan_only else RunLock(opts.output, "wae reproduce")
    if lock is not None:
        lock.check()
    setup = prepare(opts, log)
    if lock is None:
        return {"plan": asdict(setup.plan)}
    with lock:
        check_unchanged(setup)
        return _work(setup, log, t_start)


def _work(setup: Setup, log: Log, t_start: float) -> dict[str, Any]:
    """Everything after the plan: train, then (unless ``train_only``) measure and report."""
    opts = setup.opts
    seeds, timing = train_seeds(setup, log)
    for r in seeds.values():
        timing.update(r.timing)
    if opts.train_only:
        return {"trained": _trained(seeds), "timing_s": timing}
    methods = method_table(seeds)
    with _timed(timing, "cost"):
        models, cost, in_chans = _cost(setup, methods, log)
    with _timed(timing, "decomposition"):
        test = build_datasets(_data_cfg(setup), ["test"])["test"]
        decomposition = _analyse(setup, models, test)
    with _timed(timing, "trivial_cue"):
        cue = _trivial_cue(setup, test)
    with _timed(timing, "figures"):
        steps = opts.photo_steps if opts.photo_steps is not None else (20 if opts.quick else 400)
        figs = draw_figures(
            setup.out / "figures",
            models,
            test,
            methods,
            in_chans=in_chans,
            dataset=str(opts.dataset),
            photo_steps=steps,
            log=log,
        )
    timing["total"] = time.perf_counter() - t_start
    precision = _precision(seeds)
    results = {
        **_header(setup, len(test)),
        "methods": methods,
        "cost": cost,
        "decomposition": decomposition,
        "trivial_cue": cue,
        "pruning": {str(s): r.pruning for s, r in seeds.items() if r.pruning is not None},
        "photo_wae": figs.photo_log,
        "figures": figs.paths,
        "figure_captions": figs.captions,
        "machine": machine_info(),
        "timing_s": timing,
        "precision": precision,
        "notes": _notes(opts, setup.info, precision),
    }
    results["claims"] = claims(results)
    _write(setup, seeds, results, log)
    return results


def _trained(seeds: dict[int, SeedResult]) -> dict[str, list[str]]:
    """Per method, the seeds trained (or reused)."""
    trained: dict[str, list[str]] = {}
    for s, r in seeds.items():
        for key in r.summaries:
            trained.setdefault(key, []).append(str(s))
    return {k: sorted(v) for k, v in trained.items()}


def _cost(
    setup: Setup, methods: dict[str, dict[str, Any]], log: Log
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the first seed's models, their cost, input channels); adds each method's cost to
    its row of `methods`."""
    models = load_models(setup.out, list(methods), setup.first)
    in_chans, size = setup.info["in_chans"], setup.info["input_size"]
    opts = setup.opts
    cost = time_models(
        models,
        size,
        in_chans,
        latency=opts.latency,
        quick=opts.quick,
        log=log,
        backends=opts.backends,
    )
    add_cost(methods, cost, models)
    return models, cost, in_chans


def _header(setup: Setup, num_test: int) -> dict[str, Any]:
    """results.json's first keys: what was run, when, on what."""
    wmodel = config_to_dict(setup.wae_cfg)["model"]
    return {
        "quick": setup.opts.quick,
        "dataset": str(setup.opts.dataset),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wae_version": __version__,
        "backbone": f"{wmodel['name']} {wmodel['kwargs']}",
        "seeds": setup.plan.seeds,
        "num_test": num_test,
        "plan": asdict(setup.plan),
    }


def _data_cfg(setup: Setup) -> dict[str, Any]:
    """A run config of the first seed (every method has the same data and evaluation)."""
    cfgs = setup.seeds[setup.first].configs
    return cfgs.get("wae") or next(iter(cfgs.values()))


def _analyse(setup: Setup, models: dict[str, Any], test: Any) -> dict[str, Any]:
    """What I_H carries, in the first seed's WAE after stage 1 and after stage 3, over the
    first test images (the distilled WAE's when the WAE row was not run; empty without
    either)."""
    key = next((k for k in ("wae", "wae_kd") if k in models), None)
    if key is None:
        return {}
    n_img = min(len(test), 200 if setup.opts.quick else 2000)
    images = torch.stack([test[i][0] for i in range(n_img)])
    wae_s1, _ = load_model(run_dir(setup.out, key, setup.first) / "stage1")
    return decomposition_table(wae_s1.wae, models[key].wae, images)


def _trivial_cue(setup: Setup, test: Any) -> dict[str, Any]:
    """Test top-1 of a logistic regression on each image's mean, standard deviation and ink
    fraction, trained on the first seed's training images as they are (no augmentation),
    chance, and the features it saw."""
    train = build_datasets(_data_cfg(setup), ["train"], augment=False)["train"]
    return {
        "top1": trivial_cue_accuracy(train, test),
        "chance": 100.0 / setup.info["num_classes"],
        "features": list(CUE_FEATURES),
    }


def _write(setup: Setup, seeds: dict[int, SeedResult], results: dict[str, Any], log: Log) -> None:
    """config.json (options, recipes resolved, every run's config), results.json, report.md."""
    used: dict[str, dict[str, dict[str, Any]]] = {}
    for s, r in seeds.items():
        for key, cfg in r.configs.items():
            used.setdefault(key, {})[str(s)] = cfg
    atomic_write_json(
        setup.out / "config.json",
        {
            "options": asdict(setup.opts),
            **setup.info,
            "wae_recipe_resolved": config_to_dict(setup.wae_cfg),
            "baseline_recipe_resolved": config_to_dict(setup.base_cfg),
            "methods": used,
        },
    )
    atomic_write_json(setup.out / "results.json", results)
    path = write_report(results, setup.out)
    log(f"== done in {results['timing_s']['total'] / 60:.1f} min: {path}")


def _precision(seeds: dict[int, SeedResult]) -> dict[str, dict[str, Any]]:
    """The training precision of every run, "<method>/seed<s>" -> results.json's keys."""
    return {f"{key}/seed{s}": p for s, r in seeds.items() for key, p in r.precision.items()}


def _notes(
    opts: ReproduceOptions, info: dict[str, Any], precision: dict[str, dict[str, Any]]
) -> list[str]:
    size, colour = info["input_size"], "grey" if info["in_chans"] == 1 else "colour"
    notes = [
        "Top-5 error on a 10-class dataset is near zero for every method; the verdicts use top-1.",
        "The paper's ImageNet/CACD numbers come from VGG16 at 224x224; ours from a small VGG "
        f"on {size}x{size} {colour} images, where the WAE's full-resolution encoder is a "
        "larger share of the cost than on VGG16 (see the MAC ratio).",
        "MACs count convolutions and matrix products only (element-wise work is not counted), "
        "per image; params of WAE models include the decoder, which inference does not run "
        "(results.json also has params_inference).",
        "Noise is drawn per test image from a fixed seed (the run's seed), the same draws for "
        "every method of a seed, and not clamped (as in the paper).",
        describe_precision(precision),
    ]
    if opts.quick:
        notes.insert(0, "QUICK run: tiny subset, one epoch per stage, width 8.")
    return notes
