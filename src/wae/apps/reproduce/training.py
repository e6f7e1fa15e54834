"""Configs -> trained runs: every method of one seed in order (:func:`train_seed`), and the
seeds side by side in a pool of processes, each calling :func:`train_seed` (never the CLI).

A seed trains its methods in :data:`TRAIN_ORDER`: the methods that start from another one's
checkpoint come after it (I_L alone after the WAE's stage 1, the pruned network and the
distillation rows after the full one), the rows beyond the paper last. Each run goes through
:func:`wae.train.run_training`, which reuses a complete run and continues a partial one.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from ...checkpoint import atomic_write_json, read_meta
from ...progress import JobProgress, PlannedRun
from ...train import evaluate_checkpoint, run_training
from ...train.rundir import epochs_done
from .methods import METHODS, TAUGHT_KEYS, ReproduceError, budget_text
from .options import Log
from .plan import SeedConfigs, Setup
from .rundirs import run_dir, run_status
from .starts import grad_batches, make_il_init, make_kd_teacher, make_pruned

__all__ = [
    "TRAIN_ORDER",
    "SeedJob",
    "SeedResult",
    "eval_stage2",
    "run_in_processes",
    "train_seed",
    "train_seeds",
]

# The rows beyond the paper last: every row of the paper's is trained before them.
TRAIN_ORDER = (
    "full",
    "wae",
    "half",
    "wavelet",
    "ca",
    "encoder",
    "il",
    "taylor",
    "wae_kd",
    "half_kd",
    "wae_light",
    "wae_kd_unfrozen",
    "wae_kd_wide",
    "wae_kd_feat",
)
LABELS = {m.key: m.label for m in METHODS}
NOMINAL_BASIS = "an estimate from the plan's nominal rates, spread over each method's epochs"


@dataclass
class SeedJob:
    """What one seed's training needs (picklable: a seed process receives it)."""

    out: Path
    configs: SeedConfigs
    target_macs: float  # the pruning target (the WAE's MACs per image)
    grad: tuple[int, int]  # (batches, batch size) of the pruning gradients
    retrain_changed: bool = False
    verbose: bool = True  # progress lines, and the engine's per-epoch lines
    runs: tuple[PlannedRun, ...] = ()  # the seed's runs as planned, for the job's progress

    @property
    def seed(self) -> int:
        return self.configs.seed


@dataclass
class SeedResult:
    """One seed's outcome: per method the test summary, the config it ran with (in the
    order trained) and its training precision (results.json's precision keys), the pruning
    log, and seconds per step."""

    seed: int
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    precision: dict[str, dict[str, Any]] = field(default_factory=dict)
    pruning: dict[str, Any] | None = None
    timing: dict[str, float] = field(default_factory=dict)


def make_jobs(setup: Setup, *, verbose: bool) -> dict[int, SeedJob]:
    """One job per planned seed."""
    return {
        s: SeedJob(
            setup.out,
            setup.seeds[s],
            setup.target_macs,
            grad_batches(setup.opts.quick),
            setup.opts.retrain_changed,
            verbose,
            planned_runs(setup, s),
        )
        for s in setup.plan.seeds
    }


def planned_runs(setup: Setup, seed: int) -> tuple[PlannedRun, ...]:
    """The seed's training runs for the job's progress: each method's stages, its share of
    the plan's estimate (``plan.estimate_s``, spread evenly over its epochs) and the epochs
    its run directory holds already."""
    plan, sc = setup.plan, setup.seeds[seed]
    runs = []
    for key in TRAIN_ORDER:
        stages = tuple((st["name"], int(st["epochs"])) for st in plan.stages.get(key) or ())
        if key not in sc.methods or not stages:
            continue
        per_epoch = plan.estimate_s.get(key, 0.0) / len(plan.seeds) / sum(n for _, n in stages)
        cfg = sc.configs.get(key)  # the pruned network's is known once it is pruned
        done = epochs_done(run_dir(setup.out, key, seed), cfg) if cfg else 0
        runs.append(PlannedRun(_run_name(key, seed), stages, (per_epoch,) * len(stages), 0.0, done))
    return tuple(runs)


def _run_name(key: str, seed: int) -> str:
    return f"{key} seed {seed}"


def train_seeds(setup: Setup, log: Log) -> tuple[dict[int, SeedResult], dict[str, float]]:
    """Train (or reuse) every seed's runs: the seeds with work left side by side in
    ``plan.jobs`` processes when there are several, the others here. Returns the results in
    seed order and the seconds of the parallel part (``parallel_training``), if any."""
    plan, timing = setup.plan, {}
    done = ("reuse", "from wae")
    pending = [s for s in plan.seeds if any(st.get(s) not in done for st in plan.status.values())]
    results: dict[int, SeedResult] = {}
    if plan.jobs > 1 and len(pending) > 1:
        t0 = time.perf_counter()
        # A log file per seed holds everything, whatever --quiet says (as a console would).
        jobs = make_jobs(setup, verbose=True)
        log(
            f"training seeds {pending} in {plan.jobs} processes; logs in "
            f"{setup.out / 'logs'}/seed<s>.log"
        )
        results = run_in_processes(
            _train_seed_logged,
            {s: jobs[s] for s in pending},
            plan.jobs,
            logs=setup.out / "logs",
            threads=setup.opts.threads or 1,
            log=log,
        )
        timing["parallel_training"] = time.perf_counter() - t0
    here = make_jobs(setup, verbose=setup.opts.verbose)
    left = [s for s in plan.seeds if s not in results]
    runs = [r for s in left for r in here[s].runs]  # the plan is printed: announce nothing
    bar = None if setup.opts.verbose else False
    with JobProgress(runs, log=log, bar=bar, basis=NOMINAL_BASIS, announce=False) as job:
        for s in left:
            results[s] = train_seed(here[s], log, job)
    return {s: results[s] for s in plan.seeds}, timing


def train_seed(
    job: SeedJob, log: Callable[[str], None], progress: JobProgress | None = None
) -> SeedResult:
    """Train (or reuse) every method of one seed, in :data:`TRAIN_ORDER`. `progress`: the
    job's, else the seed's own (a seed process: its plan and progress go to its log)."""
    if progress is not None:
        return _train_seed(job, log, progress)
    bar = None if job.verbose else False
    with JobProgress(job.runs, log=log, bar=bar, basis=NOMINAL_BASIS) as own:
        return _train_seed(job, log, own)


def _train_seed(job: SeedJob, log: Callable[[str], None], progress: JobProgress) -> SeedResult:
    res = SeedResult(job.seed)
    cfgs = job.configs.configs
    for key in TRAIN_ORDER:
        if key not in job.configs.methods:
            continue
        if key == "il":
            make_il_init(
                run_dir(job.out, "wae", job.seed), cfgs["il"], Path(cfgs["il"]["model"]["init"])
            )
            _train_method(job, res, "il", cfgs["il"], log, progress)
        elif key == "taylor":
            _train_method(job, res, "taylor", _prune(job, res, log), log, progress)
        elif key in TAUGHT_KEYS:
            teacher = Path(cfgs[key]["teacher"]["checkpoint"])
            make_kd_teacher(run_dir(job.out, "full", job.seed), teacher)
            _train_method(job, res, key, cfgs[key], log, progress)
        else:
            _train_method(job, res, key, cfgs[key], log, progress)
            if key == "wae" and "wae_noft" in job.configs.methods:
                _add_stage2(job, res, log)
    return res


def _train_seed_logged(job: SeedJob) -> SeedResult:
    """A seed process's work: everything it says goes to its log file."""
    return train_seed(job, Log(True))


def _train_method(
    job: SeedJob,
    res: SeedResult,
    key: str,
    cfg: dict[str, Any],
    log: Callable[[str], None],
    progress: JobProgress | None = None,
) -> None:
    """One method's run (trained, continued or reused); adds its test summary to `res` and
    its epochs to the job's `progress`, if given."""
    rd = run_dir(job.out, key, job.seed)
    st, diff = run_status(rd, cfg)
    if st == "changed" and not job.retrain_changed:
        raise ReproduceError(
            f"{rd} holds a run of a different config ({'; '.join(diff[:4])}). Pass "
            f"--retrain-changed to train it again, or choose another --output."
        )
    log(f"== seed {job.seed} {LABELS[key]} [{key}]: {st} ({budget_text(key, cfg)})")
    # A seed process prints every epoch to its log; the config recorded stays as planned
    # (runtime settings are not part of a run's fingerprint).
    loud = ["runtime.verbose=true"] if job.verbose and not cfg["runtime"]["verbose"] else []
    t0 = time.perf_counter()
    tracked = progress.run(_run_name(key, job.seed)) if progress else contextlib.nullcontext()
    with tracked as hooks:
        out = run_training(
            cfg, rd, resume=st != "changed", overwrite=st == "changed", overrides=loud, hooks=hooks
        )
    res.timing[f"{key}/seed{job.seed}"] = time.perf_counter() - t0
    if not out.get("complete") or not out.get("test"):
        raise ReproduceError(f"The run in {rd} did not complete (see its files).")
    res.configs[key] = cfg
    res.summaries[key] = {**_summary(out["test"]), "run_dir": str(rd)}
    res.precision[key] = {k: v for k, v in out.items() if k.startswith("precision")}


def _prune(job: SeedJob, res: SeedResult, log: Callable[[str], None]) -> dict[str, Any]:
    """The pruned network's config, pruning the trained full network first if needed."""
    t0 = time.perf_counter()
    n_b, b_size = job.grad
    spec, res.pruning = make_pruned(
        job.out,
        job.configs.configs["full"],
        job.seed,
        job.target_macs,
        grad_batches=n_b,
        grad_batch_size=b_size,
        log=log,
    )
    res.timing[f"prune/seed{job.seed}"] = time.perf_counter() - t0
    return job.configs.derivation.taylor(spec)


def _add_stage2(job: SeedJob, res: SeedResult, log: Callable[[str], None]) -> None:
    """WAE without stage 3: its run's stage-2 checkpoint on the test set."""
    t0 = time.perf_counter()
    wae_run = run_dir(job.out, "wae", job.seed)
    r = eval_stage2(wae_run, job.configs.configs["wae"], log)
    res.timing[f"wae_noft/seed{job.seed}"] = time.perf_counter() - t0
    res.summaries["wae_noft"] = {**_summary(r), "run_dir": str(wae_run / "stage2")}


def eval_stage2(wae_run: Path, cfg: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The WAE run's stage-2 checkpoint on the test set (with noise), cached beside it."""
    doc = read_meta(wae_run / "stage2")
    key = {"stage2": doc["meta"]["stage_fingerprint"], "eval": cfg["eval"], "seed": cfg["seed"]}
    cache = wae_run / "eval_stage2.json"
    if cache.is_file():
        old = json.loads(cache.read_text())
        if old.get("key") == key:
            return old["result"]
    log("  evaluating the WAE's stage-2 checkpoint (without stage 3)")
    e, d = cfg["eval"], cfg["data"]
    result = evaluate_checkpoint(
        wae_run / "stage2",
        data=d["dataset"],
        data_dir=d["data_dir"],
        split=e["split"],
        subset=e["subset"],
        noise_vars=e["noise_vars"],
        batch_size=e["batch_size"],
        device="cpu",  # where this evaluation has always run: the same numbers as before
        seed=cfg["seed"],
    )
    result.pop("config", None)  # the run's config.json has it
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


# --------------------------------------------------------------------------------------------
# A pool of seed processes
# --------------------------------------------------------------------------------------------


def run_in_processes(
    fn: Callable[[Any], Any],
    tasks: Mapping[int, Any],
    n_procs: int,
    *,
    logs: Path,
    threads: int,
    log: Callable[[str], None],
) -> dict[int, Any]:
    """``{seed: fn(task)}``, each call in a fresh process ("spawn": no state copied from
    this one), `n_procs` at a time, with `threads` torch threads and its output (stdout and
    stderr, Python's and the libraries') in ``logs/seed<s>.log``. `fn` must be importable
    (a module-level function). Raises :class:`ReproduceError` naming every seed that failed,
    after the others finish (their runs are kept: a rerun continues)."""
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[int, Any] = {}
    failed: list[str] = []
    pool = ProcessPoolExecutor(
        n_procs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    )
    try:
        futures = {
            pool.submit(_call_logged, fn, task, logs / f"seed{seed}.log", threads): seed
            for seed, task in tasks.items()
        }
        for fut in as_completed(futures):
            seed = futures[fut]
            path = logs / f"seed{seed}.log"
            try:
                results[seed] = fut.result()
            except Exception as e:  # noqa: BLE001 - reported below with the seed's log
                failed.append(f"seed {seed}: {type(e).__name__}: {e}")
                continue
            log(f"seed {seed}: trained (log {path})")
    finally:
        # Interrupted: the queued seeds never start; the running ones were interrupted too
        # (a terminal's Ctrl-C reaches the whole process group).
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        raise ReproduceError(
            "Training a seed in its own process failed (finished runs are kept; rerun the "
            "same command to continue, or pass --jobs 1 to train in this process): "
            + " | ".join(failed)
            + f". Full logs: {logs}."
        )
    return {s: results[s] for s in tasks}


def _call_logged(fn: Callable[[Any], Any], task: Any, log_path: Path, threads: int) -> Any:
    """Runs in a seed process: set the thread count first (before any torch work), send all
    output to the log file, and leave the traceback of a failure there too."""
    torch.set_num_threads(threads)
    with open(log_path, "w") as f, _output_to(f):
        try:
            return fn(task)
        except BaseException:
            traceback.print_exc()
            raise


@contextlib.contextmanager
def _output_to(f: IO[str]) -> Iterator[None]:
    """Redirect this process's stdout and stderr (file descriptors 1 and 2, so output of
    C++ libraries follows too) to `f`; restored afterwards."""
    streams: Sequence[Any] = (sys.stdout, sys.stderr)
    for s in streams:
        s.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        yield
    finally:
        for s in streams:
            s.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
