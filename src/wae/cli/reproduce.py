"""`wae reproduce`: the paper's comparison on one dataset, end to end.

    wae reproduce --dataset fashion-mnist --quick            # smoke test, a few minutes
    wae reproduce --dataset fashion-mnist                    # the full run (~40 min on 2 cores)
    wae reproduce --dataset fashion-mnist --plan             # print the plan, train nothing
    wae reproduce --dataset /data/faces --set data.input_size=32 model.name=wae_small_vgg_32

Trains what is missing, reuses what is already trained (OUT/runs/<method>/seed<s>), and
writes OUT/report.md, OUT/results.json, OUT/config.json and OUT/figures/.
"""

from __future__ import annotations

import argparse

from . import add_backends_argument, add_command, add_set_argument

_EXAMPLES = [
    "wae reproduce --quick                          # smoke test of the whole pipeline",
    "wae reproduce --dataset fashion-mnist          # the paper's tables (~40 min on 2 cores)",
    "wae reproduce --dataset skimage-textures       # 64x64 texture patches (recipe: textures)",
    "wae reproduce --plan                           # what it would train, and how long",
    "wae reproduce --seeds 0 1 2 --jobs 3           # three seeds side by side",
    "wae reproduce --methods half_kd wae_kd         # two rows (and the teacher they need)",
    "wae reproduce --dataset /data/faces --set data.input_size=32 model.name=wae_small_vgg_32",
]
_EPILOG = """\
methods: full resolution, I_R (half-size input), Wavelet+CNN, cA alone, Decomposition+CNN,
WAE without stage 3 (the WAE run's stage-2 checkpoint), WAE, I_L alone (WAE from stage 1,
frozen), Taylor pruning of the full network to about the WAE's MACs. ThiNet is not run (see
the report). Beyond the paper: WAE + distillation and I_R + distillation, started from and
taught by the trained full network (as `wae accelerate`).

budget: every classifier trains for the WAE recipe's stage 2 + stage 3 epochs; without
--subset the training subset is the largest that the time estimate of the paper's methods
fits into --budget-minutes (the distillation rows come on top), at most the recipe's
data.subset. --set KEY=VALUE applies to the WAE recipe,
from which every method takes its data, evaluation and backbone; the baseline recipe
contributes only its training stage.

reuse: a method whose run directory holds a run of the same config is reused (a partial run
continues). A run of a different config (the recipe changed) is refused before anything
trains, unless --retrain-changed (its old files are moved to replaced-<time>/, not deleted).

seeds: with --jobs > 1 each seed trains in its own process (OUT/logs/seed<s>.log holds its
output); the report is written once every seed is trained.

output: one command writes OUT at a time (it holds OUT/.wae.lock; each run directory under it
has its own lock while it trains); a second command into OUT is refused, naming the first.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "reproduce",
        help="reproduce the paper's comparison (train, measure, report)",
        description="Reproduce the paper's tables on one dataset: train or reuse every method, "
        "measure accuracy, noise robustness, MACs and CPU latency, and write a report with "
        "the paper's numbers beside ours and a verdict per claim.",
        examples=_EXAMPLES,
        epilog=_EPILOG,
    )
    _add_data_arguments(p)
    _add_training_arguments(p)
    _add_mode_arguments(p)
    p.set_defaults(run=run)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The dataset, and where the results go."""
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="a dataset name (fashion-mnist, skimage-textures, ...) or an ImageFolder path",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="where the dataset lives (default: the dataset's usual place, as wae train)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output directory (default: runs/reproduce-<dataset>[-quick])",
    )


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    """What every method trains with: seeds, subset and budget, recipes, threads and jobs."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny subset, one epoch per stage, width 8 (numbers meaningless)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds to train each method with (default: 0 1; quick: 0)",
    )
    p.add_argument(
        "--subset",
        default=None,
        help=(
            "training subset size, or 'all' (default: the largest that --budget-minutes fits, "
            "at most the recipe's)"
        ),
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=50.0,
        help="time the automatic subset is fitted to (default: 50)",
    )
    p.add_argument(
        "--recipe",
        default=None,
        help="WAE recipe: a TOML file or a packaged recipe's name (default: textures for a "
        "skimage-textures dataset, else fashion_mnist)",
    )
    p.add_argument(
        "--baseline-recipe",
        default=None,
        help="baseline recipe: a TOML file or a packaged recipe's name (default: "
        "textures_baseline for a skimage-textures dataset, else fashion_mnist_baseline)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="KEY",
        help="train and report only these methods (and what they start from, e.g. wae_kd "
        "brings full); keys as in the report: full half wavelet ca decomposition wae ... "
        "(default: all)",
    )
    add_set_argument(p, help="override values of the WAE recipe (as wae train --set)")
    p.add_argument(
        "--retrain-changed",
        action="store_true",
        help="retrain runs whose config changed (old files moved aside)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for training and timing (default: 1; on a shared 2-core "
        "machine one thread is faster than two, and the time estimate assumes it)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="seeds trained side by side, one process each (default: usable cores // "
        "--threads, at most the number of seeds)",
    )


def _add_mode_arguments(p: argparse.ArgumentParser) -> None:
    """How much of the pipeline runs, and how much it says."""
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train (or reuse) the runs in this process, then stop: no measurements, figures "
        "or report",
    )
    p.add_argument("--no-latency", action="store_true", help="count MACs but do not time")
    add_backends_argument(p)
    p.add_argument("--plan", action="store_true", help="print the plan and exit")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="re-render the finished reproduction in -o from its results.json (claims, "
        "accuracy figures, report.md), training and timing nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..apps.reproduce import ReproduceError, ReproduceOptions, run_reproduce
    from ..apps.reproduce.plan import default_output, parse_subset

    if args.report_only:
        from ..apps.reproduce.rerender import rerender_report

        if args.output is None:
            raise ReproduceError("--report-only needs -o, the reproduction's output directory.")
        print(f"report: {rerender_report(args.output)}")
        return 0

    output = args.output or default_output(args.dataset, args.quick)
    opts = ReproduceOptions(
        output=output,
        dataset=args.dataset,
        data_dir=args.data_dir,
        quick=args.quick,
        seeds=args.seeds,
        methods=args.methods,
        subset=parse_subset(args.subset),
        recipe=args.recipe,
        baseline_recipe=args.baseline_recipe,
        overrides=list(args.overrides),
        retrain_changed=args.retrain_changed,
        threads=args.threads,
        budget_minutes=args.budget_minutes,
        plan_only=args.plan,
        verbose=not args.quiet,
        latency=not args.no_latency,
        backends=args.backends,
        jobs=args.jobs,
        train_only=args.train_only,
    )
    run_reproduce(opts)
    if not (args.plan or args.train_only):
        print(f"report: {Path(output) / 'report.md'}")
    return 0
