"""Options -> plan: the recipes resolved, the subset and budget chosen, every seed's method
configs derived (once), the status of every run directory, and the printed plan.

:func:`prepare` is the only step that reads :class:`ReproduceOptions`; the later ones
(training, measuring, drawing) work on the :class:`Setup` it returns.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...cost import count_ops
from ...models import create_model
from ...runtime import usable_cores
from ...train import build_datasets, load_config
from ...train.config import TrainConfig, config_to_dict
from ...train.overrides import format_override
from .budget import Plan, auto_subset, estimate_seconds
from .methods import (
    BEYOND_KEYS,
    METHOD_KEYS,
    METHODS,
    Derivation,
    ReproduceError,
    default_recipes,
    derive_configs,
    plain_names,
    recipe_source,
    select_methods,
)
from .options import NOISE_VARS, QUICK_OVERRIDES, Log, ReproduceOptions
from .rundirs import run_dir, run_status
from .starts import grad_batches, il_init_dir, kd_teacher_dir, pruned_dir, read_pruned

__all__ = [
    "SeedConfigs",
    "Setup",
    "check_unchanged",
    "default_output",
    "make_plan",
    "parse_subset",
    "prepare",
    "print_plan",
    "resolve_jobs",
    "seed_configs",
    "wae_macs",
]


@dataclass
class SeedConfigs:
    """One seed's method configs, derived once: every method known before training (I_L
    alone and the distillation rows with the paths of their starts; the pruned network only
    if its pruning is on disk).
    ``derivation`` completes the pruned network's once the pruning exists."""

    seed: int
    configs: dict[str, dict[str, Any]]
    derivation: Derivation
    methods: tuple[str, ...] = METHOD_KEYS  # the rows to run (the plan's)


@dataclass
class Setup:
    """Everything the later steps need, decided once from the options."""

    opts: ReproduceOptions
    out: Path  # the output directory, absolute
    plan: Plan
    wae_cfg: TrainConfig  # the WAE recipe with the options applied (and the chosen subset)
    base_cfg: TrainConfig
    info: dict[str, Any]  # recipes, num_classes, in_chans, input_size
    target_macs: float  # the WAE's MACs per image: the pruning target
    seeds: dict[int, SeedConfigs]

    @property
    def first(self) -> int:
        """The seed whose models are measured and drawn."""
        return self.plan.seeds[0]


def prepare(opts: ReproduceOptions, log: Log) -> Setup:
    """Plan the reproduction, derive every seed's configs, find what is already trained and
    print the plan; refuses runs made with a different config unless ``retrain_changed``."""
    out = Path(opts.output).expanduser().absolute()
    plan, wae_cfg, base_cfg, info = make_plan(opts, log)
    target = wae_macs(wae_cfg, info["num_classes"], info["in_chans"], info["input_size"])
    seeds = {
        s: seed_configs(out, wae_cfg, base_cfg, s, opts.quick, target, plan.methods)
        for s in plan.seeds
    }
    plan.status, changed = _statuses(out, seeds)
    print_plan(plan, plan.status, log, out)
    if changed and not opts.retrain_changed:
        raise ReproduceError(
            "These runs in "
            f"{out}/runs were made with a different config (the recipe or options changed): "
            + " | ".join(changed[:6])
            + ". Pass --retrain-changed to train them again (their old files are moved to "
            "replaced-<time>/ inside each run directory), or choose another --output."
        )
    return Setup(opts, out, plan, wae_cfg, base_cfg, info, target, seeds)


def check_unchanged(setup: Setup) -> None:
    """Refuse when the runs under ``setup.out`` changed since :func:`prepare` looked (another
    command wrote there before this one took the directory): the plan would be stale."""
    now, _ = _statuses(setup.out, setup.seeds)
    if now != setup.plan.status:
        raise ReproduceError(
            f"The runs in {setup.out}/runs changed while this command was planning: another "
            f"command wrote into it. Nothing was written by this one; run it again to plan "
            f"from what is there now."
        )


def _statuses(
    out: Path, seeds: dict[int, SeedConfigs]
) -> tuple[dict[str, dict[int, str]], list[str]]:
    """Status of every run that can be known now, and the changed ones described."""
    statuses: dict[str, dict[int, str]] = {}
    changed: list[str] = []
    for s, sc in seeds.items():
        for key, cfg in sc.configs.items():
            st, diff = run_status(run_dir(out, key, s), cfg)
            statuses.setdefault(key, {})[s] = st
            if st == "changed":
                changed.append(f"{key} seed {s}: " + "; ".join(diff[:4]))
        if "wae_noft" in sc.methods:
            statuses.setdefault("wae_noft", {})[s] = "from wae"
        if "taylor" in sc.methods:
            statuses.setdefault("taylor", {}).setdefault(s, "after full")
    return statuses, changed


def parse_subset(subset: int | str | None) -> int | str | None:
    """``--subset`` (the training subset): a positive number of images (an int, or its text),
    "all", or None (not given: the recipe's, else fitted to the budget)."""
    if subset is None or subset == "all":
        return subset
    try:
        n = int(subset)
    except (TypeError, ValueError):
        raise ReproduceError(
            f"--subset takes a number of images or 'all', got {subset!r}."
        ) from None
    if n < 1:
        raise ReproduceError(f"--subset must be positive, got {n}.")
    return n


def default_output(dataset: str | os.PathLike[str], quick: bool = False) -> str:
    """Where a reproduction goes without ``-o``: runs/reproduce-<dataset's name>[-quick]."""
    name = Path(str(dataset)).name or "data"
    return f"runs/reproduce-{name}" + ("-quick" if quick else "")


def _load_inputs(opts: ReproduceOptions) -> tuple[TrainConfig, TrainConfig, Any, Any]:
    """(WAE config with the options applied, baseline config, the two recipes' sources)."""
    wae_default, base_default = default_recipes(str(opts.dataset))
    recipe = recipe_source(opts.recipe, wae_default)
    base_recipe = recipe_source(opts.baseline_recipe, base_default)
    ov = [
        format_override("data.dataset", str(opts.dataset)),
        format_override("eval.split", "test"),
        format_override("eval.noise_vars", NOISE_VARS),
        format_override("runtime.verbose", bool(opts.verbose)),
    ]
    if opts.data_dir is not None:
        ov.append(format_override("data.data_dir", str(opts.data_dir)))
    if opts.quick:
        ov += QUICK_OVERRIDES
    subset = parse_subset(opts.subset)
    if subset is not None:
        ov.append(format_override("data.subset", None if subset == "all" else subset))
    ov += list(opts.overrides)  # the user's --set wins
    wae_cfg = load_config(recipe, ov)
    base_cfg = load_config(base_recipe)
    return wae_cfg, base_cfg, recipe, base_recipe


def _placeholder_configs(wae_cfg: TrainConfig, base_cfg: TrainConfig, quick: bool) -> dict:
    """All methods' configs for estimating (the derived ones with stand-in inputs)."""
    w = config_to_dict(wae_cfg)
    full_name, _ = plain_names(w["model"]["name"])
    kw = {k: v for k, v in w["model"]["kwargs"].items() if k not in ("head",)}
    return derive_configs(
        wae_cfg,
        base_cfg,
        seed=w["seed"],
        quick=quick,
        il_init="<wae stage 1>",
        taylor_model={
            "name": "pruned_net",
            "kwargs": {"base": full_name, "shapes": {}, **kw},
            "init": "<pruned>",
        },
        kd_teacher="<full final>",
    )


def resolve_jobs(opts: ReproduceOptions, n_seeds: int) -> int:
    """Seed processes to run side by side: --jobs, else as many as the usable cores hold at
    --threads each; never more than the seeds. ``train_only`` trains in this process."""
    if opts.jobs is not None:
        if opts.jobs < 1:
            raise ReproduceError(f"--jobs must be at least 1, got {opts.jobs}.")
        jobs = opts.jobs
    else:
        jobs = max(1, usable_cores() // max(1, opts.threads or 1))
    return 1 if opts.train_only else min(jobs, n_seeds)


def _fit_subset(
    opts: ReproduceOptions,
    wae_cfg: TrainConfig,
    base_cfg: TrainConfig,
    *,
    n_total: int,
    n_test: int,
    n_seeds: int,
    jobs: int,
) -> tuple[TrainConfig, str]:
    """(WAE config with the training subset chosen, where the subset came from)."""
    d = wae_cfg.data
    if opts.quick:
        return wae_cfg, "quick"
    if opts.subset is not None or any(o.startswith("data.subset=") for o in opts.overrides):
        return wae_cfg, "--subset"
    # The largest subset whose estimate fits the budget, at most the recipe's: the demo
    # recipe's subset suits two trainings, not the ~20 of a two-seed reproduction.
    cap = min(d.subset, n_total) if d.subset else n_total

    def make(n: int) -> dict:
        # Fitted to the paper's comparison: the rows beyond it come on top of the budget, so
        # adding them changes no run of the paper's rows.
        cfgs = _placeholder_configs(load_config(wae_cfg, [f"data.subset={n}"]), base_cfg, False)
        return {k: c for k, c in cfgs.items() if k not in BEYOND_KEYS}

    n = auto_subset(
        make,
        total_train=cap,
        val_fraction=d.val_fraction,
        n_test=n_test,
        seeds=n_seeds,
        budget_s=opts.budget_minutes * 60.0,
        jobs=jobs,
    )
    if n is None:  # the cap fits
        return wae_cfg, ("recipe" if d.subset else "auto")
    source = f"auto, fitted to {opts.budget_minutes:g} min" + (
        f" (recipe: {d.subset})" if d.subset else ""
    )
    return load_config(wae_cfg, [f"data.subset={n}"]), source


def make_plan(opts: ReproduceOptions, log: Log) -> tuple[Plan, TrainConfig, TrainConfig, dict]:
    """Decide subset, seeds and budgets; returns (plan, WAE config, baseline config, info)."""
    methods = select_methods(opts.methods)
    wae_cfg, base_cfg, recipe, base_recipe = _load_inputs(opts)
    seeds = list(opts.seeds) if opts.seeds else ([0] if opts.quick else [0, 1])
    jobs = resolve_jobs(opts, len(seeds))
    # Sizes of the data (a one-off load; Fashion-MNIST is a few MB in memory).
    data = build_datasets(wae_cfg, ["all_train", "test"])
    full_train, test = data["all_train"], data["test"]
    wae_cfg, source = _fit_subset(
        opts,
        wae_cfg,
        base_cfg,
        n_total=len(full_train),
        n_test=len(test),
        n_seeds=len(seeds),
        jobs=jobs,
    )
    d = wae_cfg.data
    n_all = min(d.subset, len(full_train)) if d.subset else len(full_train)
    n_val = int(math.floor(n_all * d.val_fraction)) if d.val_fraction > 0 else 0
    every = _placeholder_configs(wae_cfg, base_cfg, opts.quick)
    configs = {k: c for k, c in every.items() if k in methods}
    est = estimate_seconds(
        configs, n_all - n_val, n_val, len(test), seeds=len(seeds), quick=opts.quick
    )
    est = {k: t for k, t in est.items() if k in methods or k == "fixed"}
    plan = Plan(
        seeds=seeds,
        subset=d.subset,
        subset_source=source,
        n_train=n_all - n_val,
        n_val=n_val if n_val else len(test),
        n_test=len(test),
        # What the classifiers actually get (1 in quick mode).
        classifier_epochs=every["full"]["stages"][0]["epochs"],
        stages={
            k: [{"name": s["name"], "epochs": s["epochs"]} for s in c["stages"]]
            for k, c in configs.items()
        },
        estimate_s=est,
        jobs=jobs,
        methods=methods,
    )
    info = {
        "recipe": str(recipe),
        "baseline_recipe": str(base_recipe),
        "num_classes": full_train.num_classes,
        "in_chans": full_train.in_chans,
        "input_size": full_train.input_size,
    }
    return plan, wae_cfg, base_cfg, info


def seed_configs(
    out: Path,
    wae_cfg: TrainConfig,
    base_cfg: TrainConfig,
    seed: int,
    quick: bool,
    target_macs: float,
    methods: tuple[str, ...] = METHOD_KEYS,
) -> SeedConfigs:
    """The configs of one seed's `methods` that are known before training (the pruned
    network's only if its pruning is already on disk)."""
    seeded = load_config(wae_cfg, [f"seed={seed}"])
    d = Derivation.of(seeded, base_cfg, seed=seed, quick=quick)
    cfgs = d.configs()
    cfgs["il"] = d.il(str(il_init_dir(out, cfgs["wae"], seed)))
    teacher = str(kd_teacher_dir(out, cfgs["full"], seed))
    cfgs.update(d.taught(teacher))
    pruned = read_pruned(pruned_dir(out, cfgs["full"], seed, target_macs, grad_batches(quick)))
    if pruned:
        cfgs["taylor"] = d.taylor(pruned[0])
    return SeedConfigs(seed, {k: c for k, c in cfgs.items() if k in methods}, d, methods)


def wae_macs(wae_cfg: TrainConfig, num_classes: int, in_chans: int, input_size: int) -> float:
    """MACs per image of the WAE model (the pruning target); built on the meta device."""
    c = config_to_dict(wae_cfg)["model"]
    with torch.device("meta"):
        model = create_model(
            c["name"],
            num_classes=num_classes,
            in_chans=in_chans,
            input_size=input_size,
            **c["kwargs"],
        )
    ex = torch.empty(1, in_chans, input_size, input_size, device="meta")
    return count_ops(model, ex).macs


def print_plan(plan: Plan, statuses: dict[str, dict[int, str]], log: Log, out: Path) -> None:
    """The plan as a table: each method's stages, its status per seed, its estimated time."""
    log(f"wae reproduce -> {out}   seeds {plan.seeds}")
    sub = f"subset {plan.subset} ({plan.subset_source})" if plan.subset else "all training images"
    log(
        f"data: {sub}: {plan.n_train} train / {plan.n_val} val images, {plan.n_test} test "
        f"images; every classifier trains E_c = {plan.classifier_epochs} epochs"
    )
    w = max(10, *(len(k) for k in plan.methods))  # the key column fits the longest key
    log(
        f"{'method':<{w}} {'stages (epochs)':<44} "
        + " ".join(f"seed{s:<7}" for s in plan.seeds)
        + " est. min"
    )
    for m in METHODS:
        if m.key not in plan.methods:
            continue
        st = plan.stages.get(m.key)
        desc = (
            " + ".join(f"{s['name']} {s['epochs']}" for s in st)
            if st
            else "stage-2 checkpoint of the WAE run"
        )
        cells = " ".join(f"{statuses.get(m.key, {}).get(s, '-'):<11}" for s in plan.seeds)
        log(f"{m.key:<{w}} {desc:<44} {cells} {plan.estimate_s.get(m.key, 0) / 60:6.1f}")
    beyond = [k for k in BEYOND_KEYS if k in plan.methods]
    if beyond:
        log(
            f"{', '.join(beyond)}: beyond the paper (knowledge distillation from the trained "
            f"full network; the light encoder); an automatic subset is fitted to the budget "
            f"without them"
        )
    if plan.jobs > 1:
        log(f"the seeds train side by side in {plan.jobs} processes (--jobs)")
    log(
        f"estimated total: {plan.total_estimate_s / 60:.0f} min (nominal one-thread rates of "
        f"this project's 2-core machine, incl. {plan.estimate_s.get('fixed', 0) / 60:.0f} min "
        f"for measurements and figures; the machine's load changes it)"
    )
