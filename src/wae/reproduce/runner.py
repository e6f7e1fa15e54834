"""`wae reproduce`: train what is missing, reuse what is trained, measure, and report.

Layout of the output directory::

    OUT/runs/<method>/seed<s>/   one engine run per method and seed (config.json, stage*/,
                                 final/, results.json, ...); I_L alone and the pruned network
                                 also keep the checkpoint they start from (init-*/, pruned-*/)
    OUT/runs/wae/seed<s>/eval_stage2.json   the evaluation of WAE without stage 3
    OUT/config.json              the options, both recipes resolved, every method's config
    OUT/results.json             every number of the report
    OUT/report.md                the paper's tables with our numbers beside them, verdicts
    OUT/figures/*.png

Reuse: a method's run is reused when its directory holds a run of the same config fingerprint
(the engine's ``resume=True``: a complete run is read back, a partial one continues). A
directory holding a run of a *different* config (the recipe changed) is refused before
anything trains, unless ``retrain_changed``: then that run starts over and the engine moves the
old files to ``replaced-<time>/`` (nothing is deleted). I_L alone and the pruned network start
from checkpoints named by what made them (``model.init``, an absolute path, is part of their
fingerprint): a moved output directory makes those two runs count as changed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..autoencoder import WaveletAutoEncoder
from ..checkpoint import atomic_write_json, load_checkpoint, load_model, save_checkpoint
from ..cost import compare, comparison_to_dict, count_ops, machine_info
from ..data import build_dataset, build_loader, train_val_split
from ..models import WAENet, create_model, model_cfg
from ..models.pruned import changed_shapes
from ..train import rundir
from ..train.config import (
    TrainConfig,
    config_diff,
    config_to_dict,
    fingerprint,
    load_config,
    stage_fingerprint,
)
from ..train.engine import run_training
from ..train.evaluate import evaluate
from ..wavelet import WaveletDecomposer
from . import figures
from .analysis import PHOTO_TEST, decomposition_stats, load_photo, train_photo_wae
from .methods import (
    METHODS,
    Plan,
    ReproduceError,
    auto_subset,
    derive_configs,
    estimate_seconds,
    plain_names,
    resolve_recipe,
    short_hash,
)
from .pruning import taylor_prune
from .report import claims, write_report

__all__ = ["ReproduceOptions", "run_reproduce"]

NOISE_VARS = [0.01, 0.02, 0.05, 0.1]  # the paper's Table 7 (V = 0 is the clean accuracy)
QUICK_OVERRIDES = [
    "model.kwargs.width=8",
    "data.subset=600",
    "eval.subset=500",
]
TRAIN_ORDER = ("full", "wae", "half", "wavelet", "ca", "encoder", "il", "taylor")
LABELS = {m.key: m.label for m in METHODS}


@dataclass
class ReproduceOptions:
    """What `wae reproduce` was asked to do (see the CLI for the meaning of each)."""

    output: str = "runs/reproduce"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    quick: bool = False
    seeds: list[int] | None = None  # default: [0] quick, [0, 1] otherwise
    subset: int | str | None = None  # int, "all", or None (the recipe's, else auto)
    recipe: str | None = None
    baseline_recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    retrain_changed: bool = False
    threads: int | None = 1  # the budget estimate assumes one thread (see the CLI)
    budget_minutes: float = 50.0
    plan_only: bool = False
    verbose: bool = True
    latency: bool = True
    photo_steps: int | None = None  # colour-WAE steps for the photo figure (default by mode)
    jobs: int | None = None  # seeds trained side by side (default: cores // threads)
    train_only: bool = False  # train the runs, then stop (each --jobs process does this)


class _Log:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __call__(self, msg: str = "") -> None:
        if self.verbose:
            print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------------------------


def run_status(run_dir: Path, cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """("train" | "resume" | "reuse" | "changed", config differences) of a method's run dir."""
    st = rundir.inspect(run_dir)
    if st.empty:
        return "train", []
    if st.config is not None and fingerprint(st.config) != fingerprint(cfg):
        return "changed", config_diff(st.config, cfg)
    final = run_dir / rundir.FINAL / "model.json"
    done = (run_dir / rundir.RESULTS).is_file() and final.is_file()
    return ("reuse" if done else "resume"), []


def _run_dir(out: Path, key: str, seed: int) -> Path:
    return out / "runs" / key / f"seed{seed}"


# --------------------------------------------------------------------------------------------
# Checkpoints that start I_L alone and the pruned network
# --------------------------------------------------------------------------------------------


def il_init_dir(out: Path, wae_cfg: dict[str, Any], seed: int) -> Path:
    """Where I_L alone's start lives; named by what decides its content (the WAE's stage 1
    and the seed), so a changed recipe gives a new path and hence a new fingerprint."""
    key = {"wae_stage1": stage_fingerprint(wae_cfg, 1), "seed": seed}
    return _run_dir(out, "il", seed) / f"init-{short_hash(key)}"


def make_il_init(wae_run: Path, il_cfg: dict[str, Any], dest: Path) -> Path:
    """I_L alone's starting weights: its own seeded initialisation (as the engine would draw
    it) with the WAE and I_L normalisation copied from the WAE run's stage-1 checkpoint."""
    if (dest / "model.json").is_file():
        return dest
    doc, state = load_checkpoint(wae_run / "stage1")
    meta = doc["meta"]
    torch.manual_seed(il_cfg["seed"])  # the engine seeds the same way before building
    model = create_model(
        il_cfg["model"]["name"],
        num_classes=meta["num_classes"],
        in_chans=meta["in_chans"],
        input_size=meta["input_size"],
        **il_cfg["model"]["kwargs"],
    )
    own = model.state_dict()
    copied = [k for k in state if k.startswith(("wae.", "norm_low.")) and k in own]
    if not any(k.startswith("wae.") for k in copied):
        raise ReproduceError(f"{wae_run}/stage1 holds no WAE weights to start I_L alone from.")
    for k in copied:
        own[k] = state[k]
    model.load_state_dict(own)
    save_checkpoint(
        dest,
        model,
        meta={**meta, "source": str(wae_run / "stage1"), "copied": "wae.*, norm_low.*"},
    )
    return dest


def _train_subset(cfg: dict[str, Any], input_size: int, in_chans: int) -> Any:
    """The training images of a method's run (same subset and validation hold-out), without
    augmentation, at the model's input size and channels."""
    d = cfg["data"]
    ds = build_dataset(
        d["dataset"],
        "train",
        data_dir=d["data_dir"],
        input_size=input_size,
        in_chans=in_chans,
        train_transforms=False,
        subset=d["subset"],
        seed=cfg["seed"],
    )
    if d["val_fraction"] > 0:
        ds, _ = train_val_split(ds, d["val_fraction"], cfg["seed"])
        ds = ds.with_indices(torch.arange(len(ds)), False, "train")
    return ds


def pruned_dir(
    out: Path, full_cfg: dict[str, Any], seed: int, target_macs: float, grad: Sequence[int]
) -> Path:
    """Where the pruned network's start lives; named by what decides it (the full network's
    config, the MAC target, the gradient batches), so a change gives a new fingerprint."""
    key = {
        "full": fingerprint(full_cfg),
        "target_macs": round(float(target_macs)),
        "grad": list(grad),
        "seed": seed,
        "method": "taylor-v1",
    }
    return _run_dir(out, "taylor", seed) / f"pruned-{short_hash(key)}"


def read_pruned(dest: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(model config, pruning log) of a pruning already on disk, else None."""
    if not (dest / "model.json").is_file():
        return None
    doc = json.loads((dest / "model.json").read_text())
    return _pruned_model_cfg(doc["spec"]["kwargs"], dest), doc["meta"]["pruning"]


def make_pruned(
    out: Path,
    full_cfg: dict[str, Any],
    seed: int,
    target_macs: float,
    *,
    grad_batches: int,
    grad_batch_size: int,
    log: _Log,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prune the trained full network (Taylor) to about `target_macs`; returns the pruned
    model's ``{"name", "kwargs", "init"}`` for the config and the pruning log. The pruned
    weights are saved once under OUT/runs/taylor/seed<s>/pruned-<hash> and reused."""
    full_dir = _run_dir(out, "full", seed)
    dest = pruned_dir(out, full_cfg, seed, target_macs, (grad_batches, grad_batch_size))
    done = read_pruned(dest)
    if done is not None:
        return done
    log(
        f"  pruning the full network (seed {seed}) with Taylor importance to about "
        f"{target_macs / 1e6:.2f} MMACs"
    )
    full, doc = load_model(full_dir / rundir.FINAL)
    meta = doc["meta"]
    ds = _train_subset(full_cfg, meta["input_size"], meta["in_chans"])
    loader = build_loader(ds, grad_batch_size, shuffle=True, seed=seed)
    batches = []
    for i, b in enumerate(loader):
        if i >= grad_batches:
            break
        batches.append(b)
    example = torch.zeros(1, meta["in_chans"], meta["input_size"], meta["input_size"])
    pruned, plog = taylor_prune(
        full, batches, target_macs, example, num_classes=meta["num_classes"]
    )
    spec_kw = dict(doc["spec"]["kwargs"])
    full_name = doc["spec"]["name"]
    kwargs = {
        "base": full_name,
        "shapes": changed_shapes(full, pruned),
        **{k: v for k, v in spec_kw.items() if k not in ("num_classes", "in_chans", "input_size")},
    }
    rebuilt = create_model(
        "pruned_net",
        num_classes=meta["num_classes"],
        in_chans=meta["in_chans"],
        input_size=meta["input_size"],
        **kwargs,
    )
    rebuilt.load_state_dict(pruned.state_dict())  # proves the builder rebuilds it exactly
    log(
        f"  pruned to {plog['final_macs'] / 1e6:.2f} MMACs (full: {plog['base_macs'] / 1e6:.2f})"
        + (f"; {plog['note']}" if plog.get("note") else "")
    )
    plog["source"] = str(full_dir / rundir.FINAL)
    plog["channels"] = {
        k: v[0]
        for k, v in kwargs["shapes"].items()
        if len(v) == 3  # conv out-channels
    }
    save_checkpoint(dest, rebuilt, meta={**meta, "pruning": plog})
    return _pruned_model_cfg(kwargs, dest), plog


def _pruned_model_cfg(kwargs: dict[str, Any], dest: Path) -> dict[str, Any]:
    kw = {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans", "input_size")}
    return {"name": "pruned_net", "kwargs": kw, "init": str(dest)}


# --------------------------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------------------------


def _test_set(cfg: dict[str, Any]) -> Any:
    d, e = cfg["data"], cfg["eval"]
    return build_dataset(
        d["dataset"],
        e["split"],
        data_dir=d["data_dir"],
        input_size=d["input_size"],
        in_chans=d["in_chans"],
        subset=e["subset"],
        seed=cfg["seed"],
    )


def eval_stage2(wae_run: Path, cfg: dict[str, Any], log: _Log) -> dict[str, Any]:
    """The WAE run's stage-2 checkpoint on the test set (with noise), cached beside it."""
    doc = json.loads((wae_run / "stage2" / "model.json").read_text())
    key = {"stage2": doc["meta"]["stage_fingerprint"], "eval": cfg["eval"], "seed": cfg["seed"]}
    cache = wae_run / "eval_stage2.json"
    if cache.is_file():
        old = json.loads(cache.read_text())
        if old.get("key") == key:
            return old["result"]
    log("  evaluating the WAE's stage-2 checkpoint (without stage 3)")
    model, mdoc = load_model(wae_run / "stage2")
    meta = mdoc["meta"]
    c = copy.deepcopy(cfg)
    c["data"]["input_size"] = c["data"]["input_size"] or meta["input_size"]
    c["data"]["in_chans"] = c["data"]["in_chans"] or meta["in_chans"]
    result = evaluate(
        model,
        _test_set(c),
        cfg["eval"]["noise_vars"],
        batch_size=cfg["eval"]["batch_size"],
        seed=cfg["seed"],
    )
    atomic_write_json(cache, {"key": key, "result": result})
    return result


def _summary(test: dict[str, Any]) -> dict[str, Any]:
    return {
        "top1": test["top1"],
        "top5": test["top5"],
        "num_images": test["num_images"],
        "noise": [{"var": 0.0, "top1": test["top1"], "top5": test["top5"]}]
        + [{"var": r["var"], "top1": r["top1"], "top5": r["top5"]} for r in test["noise"]],
    }


def _mean_std(xs: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def aggregate(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of top-1, top-5 and each noise level."""
    runs = list(per_seed.values())
    out: dict[str, Any] = {}
    for k in ("top1", "top5"):
        out[k], out[f"{k}_std"] = _mean_std([r[k] for r in runs])
    noise = []
    for i, r0 in enumerate(runs[0]["noise"]):
        m1, s1 = _mean_std([r["noise"][i]["top1"] for r in runs])
        m5, s5 = _mean_std([r["noise"][i]["top5"] for r in runs])
        noise.append({"var": r0["var"], "top1": m1, "top1_std": s1, "top5": m5, "top5_std": s5})
    out["noise"] = noise
    return out


def _inference_params(model: nn.Module) -> int:
    """Parameters used at inference: a WAENet's decoder only serves the transform loss."""
    n = sum(p.numel() for p in model.parameters())
    wae = getattr(model, "wae", None)
    if isinstance(wae, WaveletAutoEncoder) and wae.has_decoder:
        for dec in (wae.decoder_low, wae.decoder_high):
            n -= sum(p.numel() for p in dec.parameters())
    return n


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _budget_text(key: str, cfg: dict[str, Any] | None) -> str:
    if key == "wae_noft":
        return "the WAE run's stage-2 checkpoint (stages 1 + 2, no fine-tuning)"
    if cfg is None:
        return ""
    parts = [
        f"{s['name'] or 'stage'} {s['epochs']} ep ({s['optimizer']} lr {s['lr']:g}, "
        f"{s['schedule']['name']}" + (f", frozen {s['freeze']}" if s["freeze"] else "") + ")"
        for s in cfg["stages"]
    ]
    pre = {
        "il": "WAE from the WAE run's stage 1, frozen; ",
        "taylor": "Taylor-pruned from the trained full network, then fine-tuned: ",
    }.get(key, "")
    return pre + " + ".join(parts)


def _load_inputs(opts: ReproduceOptions) -> tuple[TrainConfig, TrainConfig, Path, Path]:
    recipe = resolve_recipe(opts.recipe, "fashion_mnist.toml")
    base_recipe = resolve_recipe(opts.baseline_recipe, "fashion_mnist_baseline.toml")
    ov = [
        f"data.dataset={json.dumps(str(opts.dataset))}",
        'eval.split="test"',
        f"eval.noise_vars={json.dumps(NOISE_VARS)}",
        f"runtime.verbose={'true' if opts.verbose else 'false'}",
    ]
    if opts.data_dir is not None:
        ov.append(f"data.data_dir={json.dumps(str(opts.data_dir))}")
    if opts.quick:
        ov += QUICK_OVERRIDES
    if opts.subset is not None:
        ov.append("data.subset=none" if opts.subset == "all" else f"data.subset={int(opts.subset)}")
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
    )


def _resolve_jobs(opts: ReproduceOptions, n_seeds: int) -> int:
    """Seed processes to run side by side: --jobs, else as many as the usable cores hold at
    --threads each; never more than the seeds."""
    if opts.jobs is not None:
        if opts.jobs < 1:
            raise ReproduceError(f"--jobs must be at least 1, got {opts.jobs}.")
        jobs = opts.jobs
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jobs = max(1, (cores or 1) // max(1, opts.threads or 1))
    return 1 if opts.train_only else min(jobs, n_seeds)


def make_plan(opts: ReproduceOptions, log: _Log) -> tuple[Plan, TrainConfig, TrainConfig, dict]:
    """Decide subset, seeds and budgets; returns (plan, WAE config, baseline config, info)."""
    wae_cfg, base_cfg, recipe, base_recipe = _load_inputs(opts)
    seeds = list(opts.seeds) if opts.seeds else ([0] if opts.quick else [0, 1])
    jobs = _resolve_jobs(opts, len(seeds))
    d = wae_cfg.data
    # Image size and channels as the engine resolves them (the data's, else the model's).
    mc = model_cfg(wae_cfg.model.name)
    in_size, in_chans = d.input_size or mc["input_size"], d.in_chans or mc["in_chans"]
    # Sizes of the data (a one-off load; Fashion-MNIST is a few MB in memory).
    full_train = build_dataset(
        d.dataset, "train", data_dir=d.data_dir, input_size=in_size, in_chans=in_chans
    )
    test = build_dataset(
        d.dataset,
        "test",
        data_dir=d.data_dir,
        input_size=in_size,
        in_chans=in_chans,
        subset=wae_cfg.eval.subset,
        seed=wae_cfg.seed,
    )
    if opts.quick:
        source = "quick"
    elif opts.subset is not None or any(o.startswith("data.subset=") for o in opts.overrides):
        source = "--subset"
    else:
        # The largest subset whose estimate fits the budget, at most the recipe's: the demo
        # recipe's subset suits two trainings, not the ~20 of a two-seed reproduction.
        cap = min(d.subset, len(full_train)) if d.subset else len(full_train)

        def make(n: int) -> dict:
            return _placeholder_configs(load_config(wae_cfg, [f"data.subset={n}"]), base_cfg, False)

        n = auto_subset(
            make,
            total_train=cap,
            val_fraction=d.val_fraction,
            n_test=len(test),
            seeds=len(seeds),
            budget_s=opts.budget_minutes * 60.0,
            jobs=jobs,
        )
        if n is None:  # the cap fits
            source = "recipe" if d.subset else "auto"
        else:
            source = f"auto, fitted to {opts.budget_minutes:g} min" + (
                f" (recipe: {d.subset})" if d.subset else ""
            )
            wae_cfg = load_config(wae_cfg, [f"data.subset={n}"])
        d = wae_cfg.data
    subset = d.subset
    n_all = min(subset, len(full_train)) if subset else len(full_train)
    n_val = int(math.floor(n_all * d.val_fraction)) if d.val_fraction > 0 else 0
    configs = _placeholder_configs(wae_cfg, base_cfg, opts.quick)
    est = estimate_seconds(
        configs, n_all - n_val, n_val, len(test), seeds=len(seeds), quick=opts.quick
    )
    plan = Plan(
        seeds=seeds,
        subset=subset,
        subset_source=source,
        n_train=n_all - n_val,
        n_val=n_val if n_val else len(test),
        n_test=len(test),
        # What the classifiers actually get (1 in quick mode).
        classifier_epochs=configs["full"]["stages"][0]["epochs"],
        stages={
            k: [{"name": s["name"], "epochs": s["epochs"]} for s in c["stages"]]
            for k, c in configs.items()
        },
        estimate_s=est,
        jobs=jobs,
    )
    info = {
        "recipe": str(recipe),
        "baseline_recipe": str(base_recipe),
        "num_classes": full_train.num_classes,
        "in_chans": full_train.in_chans,
        "input_size": full_train.input_size,
    }
    return plan, wae_cfg, base_cfg, info


def _grad(quick: bool) -> tuple[int, int]:
    """(batches, batch size) of the gradients that rank channels for Taylor pruning."""
    return (2, 64) if quick else (2, 128)


def _seed_configs(
    out: Path,
    wae_cfg: TrainConfig,
    base_cfg: TrainConfig,
    seed: int,
    quick: bool,
    target_macs: float,
) -> dict[str, dict[str, Any]]:
    """The configs of one seed that are known before training (the pruned network's only if
    its pruning is already on disk)."""
    seeded = load_config(wae_cfg, [f"seed={seed}"])
    cfgs = derive_configs(seeded, base_cfg, seed=seed, quick=quick)
    il_dir = il_init_dir(out, cfgs["wae"], seed)
    pruned = read_pruned(pruned_dir(out, cfgs["full"], seed, target_macs, _grad(quick)))
    return derive_configs(
        seeded,
        base_cfg,
        seed=seed,
        quick=quick,
        il_init=str(il_dir),
        taylor_model=pruned[0] if pruned else None,
    )


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


def print_plan(plan: Plan, statuses: dict[str, dict[int, str]], log: _Log, out: Path) -> None:
    log(f"wae reproduce -> {out}   seeds {plan.seeds}")
    sub = f"subset {plan.subset} ({plan.subset_source})" if plan.subset else "all training images"
    log(
        f"data: {sub}: {plan.n_train} train / {plan.n_val} val images, {plan.n_test} test "
        f"images; every classifier trains E_c = {plan.classifier_epochs} epochs"
    )
    log(
        f"{'method':<10} {'stages (epochs)':<44} "
        + " ".join(f"seed{s:<7}" for s in plan.seeds)
        + " est. min"
    )
    for m in METHODS:
        st = plan.stages.get(m.key)
        desc = (
            " + ".join(f"{s['name']} {s['epochs']}" for s in st)
            if st
            else "stage-2 checkpoint of the WAE run"
        )
        cells = " ".join(f"{statuses.get(m.key, {}).get(s, '-'):<11}" for s in plan.seeds)
        log(f"{m.key:<10} {desc:<44} {cells} {plan.estimate_s.get(m.key, 0) / 60:6.1f}")
    if plan.jobs > 1:
        log(f"the seeds train side by side in {plan.jobs} processes (--jobs)")
    log(
        f"estimated total: {plan.total_estimate_s / 60:.0f} min (nominal one-thread rates of "
        f"this project's 2-core machine, incl. {plan.estimate_s.get('fixed', 0) / 60:.0f} min "
        f"for measurements and figures; the machine's load changes it)"
    )


def run_reproduce(opts: ReproduceOptions) -> dict[str, Any]:
    """Run the whole reproduction (see the module docstring); returns results.json's dict
    (with ``plan_only``: ``{"plan": ...}``)."""
    n_threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts)
    finally:
        torch.set_num_threads(n_threads)


def _train_seeds_in_processes(
    opts: ReproduceOptions, plan: Plan, seeds: Sequence[int], out: Path, log: _Log
) -> None:
    """Train each seed's runs in its own `wae reproduce --train-only` process, `plan.jobs` at
    a time; this process then finds every run complete and reuses it. The data subset is
    passed explicitly, so every process trains exactly the planned configs."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "wae", "reproduce", "--train-only", "--output", str(out)]
    base += ["--dataset", str(opts.dataset), "--threads", str(opts.threads or 1)]
    if opts.data_dir is not None:
        base += ["--data-dir", str(opts.data_dir)]
    if opts.quick:
        base.append("--quick")
    else:  # one seed alone would fit a larger subset: pass the planned one
        base += ["--subset", str(plan.subset) if plan.subset else "all"]
    for flag, value in (("--recipe", opts.recipe), ("--baseline-recipe", opts.baseline_recipe)):
        if value is not None:
            base += [flag, str(Path(value).absolute())]
    if opts.retrain_changed:
        base.append("--retrain-changed")
    if opts.overrides:
        base += ["--set", *opts.overrides]
    queue = list(seeds)
    running: dict[int, tuple[subprocess.Popen, Path, Any]] = {}
    failed: list[str] = []
    log(f"training seeds {list(seeds)} in {plan.jobs} processes; logs in {logs}/seed<s>.log")
    try:
        while queue or running:
            while queue and len(running) < plan.jobs:
                seed = queue.pop(0)
                path = logs / f"seed{seed}.log"
                f = open(path, "w")  # closed when its process ends
                proc = subprocess.Popen(
                    [*base, "--seeds", str(seed)], stdout=f, stderr=subprocess.STDOUT
                )
                running[seed] = (proc, path, f)
            time.sleep(1.0)
            for seed, (proc, path, f) in list(running.items()):
                if proc.poll() is None:
                    continue
                f.close()
                del running[seed]
                if proc.returncode == 0:
                    log(f"seed {seed}: trained (log {path})")
                else:
                    tail = path.read_text(errors="replace").strip().splitlines()[-3:]
                    failed.append(f"seed {seed} exited with {proc.returncode}: {' / '.join(tail)}")
    finally:
        for proc, _, f in running.values():  # interrupted: stop the others too
            proc.terminate()
            proc.wait()
            f.close()
    if failed:
        raise ReproduceError(
            "Training a seed in its own process failed (finished runs are kept; rerun the "
            "same command to continue, or pass --jobs 1 to train in this process): "
            + " | ".join(failed)
            + f". Full logs: {logs}."
        )


def _run(opts: ReproduceOptions) -> dict[str, Any]:
    t_start = time.perf_counter()
    log = _Log(opts.verbose)
    out = Path(opts.output).expanduser().absolute()
    plan, wae_cfg, base_cfg, info = make_plan(opts, log)

    # Status of every run that can be known now; refuse changed runs before training.
    target = wae_macs(wae_cfg, info["num_classes"], info["in_chans"], info["input_size"])
    seed_cfgs = {
        s: _seed_configs(out, wae_cfg, base_cfg, s, opts.quick, target) for s in plan.seeds
    }
    statuses: dict[str, dict[int, str]] = {}
    changed: list[str] = []
    for s, cfgs in seed_cfgs.items():
        for key, cfg in cfgs.items():
            st, diff = run_status(_run_dir(out, key, s), cfg)
            statuses.setdefault(key, {})[s] = st
            if st == "changed":
                changed.append(f"{key} seed {s}: " + "; ".join(diff[:4]))
        statuses.setdefault("wae_noft", {})[s] = "from wae"
        statuses.setdefault("taylor", {}).setdefault(s, "after full")
    plan.status = statuses
    print_plan(plan, statuses, log, out)
    if changed and not opts.retrain_changed:
        raise ReproduceError(
            "These runs in "
            f"{out}/runs were made with a different config (the recipe or options changed): "
            + " | ".join(changed[:6])
            + ". Pass --retrain-changed to train them again (their old files are moved to "
            "replaced-<time>/ inside each run directory), or choose another --output."
        )
    if opts.plan_only:
        return {"plan": asdict(plan)}

    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    done = ("reuse", "from wae")
    pending = [s for s in plan.seeds if any(statuses[k].get(s) not in done for k in statuses)]
    if plan.jobs > 1 and len(pending) > 1:
        t0 = time.perf_counter()
        _train_seeds_in_processes(opts, plan, pending, out, log)
        timing["parallel_training"] = time.perf_counter() - t0
    per_seed: dict[str, dict[str, dict[str, Any]]] = {}
    used_cfgs: dict[str, dict[str, dict[str, Any]]] = {}
    pruning: dict[str, Any] = {}

    def train(key: str, seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
        rd = _run_dir(out, key, seed)
        st, diff = run_status(rd, cfg)
        if st == "changed" and not opts.retrain_changed:
            raise ReproduceError(
                f"{rd} holds a run of a different config ({'; '.join(diff[:4])}). Pass "
                f"--retrain-changed to train it again, or choose another --output."
            )
        log(f"== seed {seed} {LABELS[key]} [{key}]: {st} ({_budget_text(key, cfg)})")
        t0 = time.perf_counter()
        res = run_training(cfg, rd, resume=st != "changed", overwrite=st == "changed")
        timing[f"{key}/seed{seed}"] = time.perf_counter() - t0
        if not res.get("complete") or not res.get("test"):
            raise ReproduceError(f"The run in {rd} did not complete (see its files).")
        used_cfgs.setdefault(key, {})[str(seed)] = cfg
        per_seed.setdefault(key, {})[str(seed)] = {**_summary(res["test"]), "run_dir": str(rd)}
        return res

    first = plan.seeds[0]
    for seed in plan.seeds:
        cfgs = seed_cfgs[seed]
        for key in TRAIN_ORDER:
            if key == "il":
                il_init = Path(cfgs["il"]["model"]["init"])
                make_il_init(_run_dir(out, "wae", seed), cfgs["il"], il_init)
                train("il", seed, cfgs["il"])
            elif key == "taylor":
                t0 = time.perf_counter()
                n_b, b_size = _grad(opts.quick)
                pruned_spec, plog = make_pruned(
                    out,
                    cfgs["full"],
                    seed,
                    target,
                    grad_batches=n_b,
                    grad_batch_size=b_size,
                    log=log,
                )
                timing[f"prune/seed{seed}"] = time.perf_counter() - t0
                pruning[str(seed)] = plog
                seeded = load_config(wae_cfg, [f"seed={seed}"])
                tcfg = derive_configs(
                    seeded, base_cfg, seed=seed, quick=opts.quick, taylor_model=pruned_spec
                )["taylor"]
                train("taylor", seed, tcfg)
            else:
                train(key, seed, cfgs[key])
                if key == "wae":
                    t0 = time.perf_counter()
                    r = eval_stage2(_run_dir(out, "wae", seed), cfgs["wae"], log)
                    timing[f"wae_noft/seed{seed}"] = time.perf_counter() - t0
                    per_seed.setdefault("wae_noft", {})[str(seed)] = {
                        **_summary(r),
                        "run_dir": str(_run_dir(out, "wae", seed) / "stage2"),
                    }

    if opts.train_only:
        return {"trained": {k: sorted(v) for k, v in per_seed.items()}, "timing_s": timing}

    # ---- aggregate ----------------------------------------------------------------------
    methods: dict[str, dict[str, Any]] = {}
    for m in METHODS:
        if m.key not in per_seed:
            continue
        cfg0 = used_cfgs.get(m.key, {}).get(str(first))
        methods[m.key] = {
            "label": m.label,
            "paper": m.paper,
            "budget": _budget_text(m.key, cfg0),
            "per_seed": per_seed[m.key],
            **aggregate(per_seed[m.key]),
        }

    # ---- cost: MACs, params, latency at batch 256 and 1 (the first seed's models) -------------
    t0 = time.perf_counter()
    models: dict[str, nn.Module] = {}
    for key in methods:
        if key == "wae_noft":
            continue
        models[key], _ = load_model(_run_dir(out, key, first) / rundir.FINAL)
    meta = json.loads((_run_dir(out, "wae", first) / rundir.FINAL / "model.json").read_text())[
        "meta"
    ]
    in_chans, size = meta["in_chans"], meta["input_size"]
    cost: dict[str, Any] = {}
    for b in (256, 1):
        log(f"== measuring latency at batch {b} ({len(models)} models, interleaved)")
        with warnings.catch_warnings():
            # WAENet's cost groups name the I_H branch, which the I_L-alone models lack.
            warnings.filterwarnings("ignore", "parts prefixes match no child module")
            res = compare(
                models,
                size,
                batch_size=b,
                in_chans=in_chans,
                latency=opts.latency,
                reference="full",
                min_run_time=0.05 if opts.quick else 1.0,
                rounds=1 if opts.quick else 3,
                memory_format="contiguous" if opts.quick else "best",
                warmup=1 if opts.quick else 3,
            )
        cost[f"b{b}"] = comparison_to_dict(res)
    for key, m in methods.items():
        src = "wae" if key == "wae_noft" else key
        p1 = cost["b1"]["profiles"][src]
        m["macs"] = p1["ops"]["macs"]
        m["params"] = p1["ops"]["params"]
        m["params_inference"] = _inference_params(models[src])
        m["mac_ratio"] = cost["b1"]["mac_ratio"][src]
        m["latency"] = {}
        m["speedup"] = {}
        for b in ("b256", "b1"):
            lat = cost[b]["profiles"][src]["latency"]
            m["latency"][b] = (
                {"median_ms": lat["median_ms"], "iqr_ms": lat["iqr_ms"]} if lat else None
            )
            m["speedup"][b] = cost[b]["speedup"][src]
    timing["cost"] = time.perf_counter() - t0

    # ---- what I_H carries, figures ------------------------------------------------------
    t0 = time.perf_counter()
    test_cfg = copy.deepcopy(seed_cfgs[first]["wae"])
    test_cfg["data"]["input_size"], test_cfg["data"]["in_chans"] = size, in_chans
    test = _test_set(test_cfg)
    n_img = min(len(test), 200 if opts.quick else 2000)
    images = torch.stack([test[i][0] for i in range(n_img)])
    wae_s1, _ = load_model(_run_dir(out, "wae", first) / "stage1")
    decomposition = {
        "wae_stage1": decomposition_stats(wae_s1.wae, images),
        "wae_final": decomposition_stats(models["wae"].wae, images),
        "dwt": decomposition_stats(WaveletDecomposer(in_chans), images),
    }
    timing["decomposition"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fig_dir = out / "figures"
    figs: dict[str, str] = {}
    photo_log = _figures(
        fig_dir, figs, models, test, methods, opts, in_chans, log, dataset=str(opts.dataset)
    )
    timing["figures"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start

    wmodel = config_to_dict(wae_cfg)["model"]
    backbone = f"{wmodel['name']} {wmodel['kwargs']}"
    results: dict[str, Any] = {
        "quick": opts.quick,
        "dataset": str(opts.dataset),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wae_version": __version__,
        "backbone": backbone,
        "seeds": plan.seeds,
        "num_test": len(test),
        "plan": asdict(plan),
        "methods": methods,
        "cost": cost,
        "decomposition": decomposition,
        "pruning": pruning,
        "photo_wae": photo_log,
        "figures": figs,
        "machine": machine_info(),
        "timing_s": timing,
        "notes": _notes(opts, methods),
    }
    results["claims"] = claims(results)
    atomic_write_json(
        out / "config.json",
        {
            "options": asdict(opts),
            **info,
            "wae_recipe_resolved": config_to_dict(wae_cfg),
            "baseline_recipe_resolved": config_to_dict(base_cfg),
            "methods": used_cfgs,
        },
    )
    atomic_write_json(out / "results.json", results)
    path = write_report(results, out)
    log(f"== done in {timing['total'] / 60:.1f} min: {path}")
    return results


def _notes(opts: ReproduceOptions, methods: dict[str, Any]) -> list[str]:
    notes = [
        "Top-5 error on a 10-class dataset is near zero for every method; the verdicts use top-1.",
        "The paper's ImageNet/CACD numbers come from VGG16 at 224x224; ours from a small VGG "
        "on 28x28 images, where the WAE's full-resolution encoder is a larger share of the "
        "cost than on VGG16 (see the MAC ratio).",
        "MACs count convolutions and matrix products only (element-wise work is not counted), "
        "per image; params of WAE models include the decoder, which inference does not run "
        "(results.json also has params_inference).",
        "Noise is drawn per test image from a fixed seed (the run's seed), the same draws for "
        "every method of a seed, and not clamped (as in the paper).",
    ]
    if opts.quick:
        notes.insert(0, "QUICK run: tiny subset, one epoch per stage, width 8.")
    return notes


def _figures(
    fig_dir: Path,
    figs: dict[str, str],
    models: dict[str, nn.Module],
    test: Any,
    methods: dict[str, Any],
    opts: ReproduceOptions,
    in_chans: int,
    log: _Log,
    dataset: str,
) -> dict[str, Any]:
    """All figures into fig_dir; records {title: relative path} in figs; returns the photo
    WAE's training log."""
    log("== figures")
    wae: WAENet = models["wae"]
    enc: WAENet | None = models.get("encoder")

    def rows_for(images: Sequence[torch.Tensor]) -> list[list[tuple[str, torch.Tensor, bool]]]:
        rows = []
        with torch.no_grad():
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

    # One test image per class (the first of each), up to 6.
    picks, seen = [], set()
    targets = getattr(test, "targets", None)
    for i in range(len(test)):
        y = int(targets[i]) if targets is not None else test[i][1]
        if y not in seen:
            seen.add(y)
            picks.append(test[i][0])
        if len(picks) == 6:
            break
    title = f"{dataset} test images: WAE (after stage 3) and Decomposition+CNN"
    p = figures.decomposition_grid(rows_for(picks), fig_dir / "decomposition_dataset.png", title)
    figs["Decomposition of test images (Fig. 3/4)"] = str(p.relative_to(fig_dir.parent))

    grey = in_chans == 1
    photos = [load_photo(n, 112, grey=grey) for n in PHOTO_TEST]
    title = (
        f"Photos (scikit-image {', '.join(PHOTO_TEST)}) through the models trained on "
        f"{dataset}" + (" (grey)" if grey else "")
    )
    p = figures.decomposition_grid(rows_for(photos), fig_dir / "decomposition_photos.png", title)
    figs["Photos through the dataset's WAE and Decomposition+CNN"] = str(
        p.relative_to(fig_dir.parent)
    )

    steps = opts.photo_steps if opts.photo_steps is not None else (20 if opts.quick else 400)
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
        stats = decomposition_stats(photo_wae, held_out)
    plog["held_out_stats"] = stats
    title = (
        f"Colour WAE trained {steps} steps on other scikit-image photos "
        f"({', '.join(plog['train_photos'])}), shown on held-out ones"
    )
    p = figures.decomposition_grid(rows, fig_dir / "decomposition_photos_rgb.png", title)
    figs["Colour WAE on held-out photos"] = str(p.relative_to(fig_dir.parent))

    for b, name in (("b256", "batch 256"), ("b1", "batch 1")):
        points = {
            m["label"]: {
                "latency_ms": (m.get("latency") or {}).get(b, {}) and m["latency"][b]["median_ms"],
                "top1": m["top1"],
                "top1_std": m.get("top1_std"),
            }
            for m in methods.values()
        }
        p = figures.accuracy_vs_latency(
            points,
            fig_dir / f"accuracy_vs_latency_{b}.png",
            f"Accuracy vs measured CPU latency ({name})",
            f"CPU latency per {name} (ms, median)",
        )
        figs[f"Accuracy vs CPU latency ({name})"] = str(p.relative_to(fig_dir.parent))
    series = {m["label"]: [(r["var"], r["top1"]) for r in m["noise"]] for m in methods.values()}
    p = figures.accuracy_vs_noise(
        series, fig_dir / "accuracy_vs_noise.png", "Accuracy under Gaussian noise (Table 7)"
    )
    figs["Accuracy vs noise variance (Table 7)"] = str(p.relative_to(fig_dir.parent))
    return plog
