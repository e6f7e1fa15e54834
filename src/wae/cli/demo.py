"""`wae demo`: accelerate a trained SmallVGG on Fashion-MNIST (WAE and half-size input, both
taught by it), print one table; `--full` trains the SmallVGG first.
The work is `wae.apps.demo.run_demo`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse

from ..apps.demo import BASELINE_RECIPE, format_results, run_demo
from . import add_backends_argument, add_command, add_set_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="the main job: make a trained CNN ~3x cheaper on Fashion-MNIST, one table",
        description=(
            "Accelerate a trained full-resolution SmallVGG on the embedded Fashion-MNIST "
            "(standing for your trained model; wae ships it, hash-checked) as `wae accelerate` "
            "does: a WAE started from its weights and taught by it (light encoder, a short "
            "budget), and the same network on the half-size image (I_R) with the same "
            "teaching. All three are measured in one run (test accuracy, MACs, CPU latency "
            "eager and on the fastest backend, speed-up) and a verdict says what WAE keeps and "
            "adds: about ten minutes on 2 cores. --full trains the SmallVGG here first and "
            "the students the whole budget with the paper's encoder (about an hour). "
            "Re-running reuses finished runs."
        ),
        examples=[
            "wae demo                          # writes runs/demo/ (~10 min on 2 cores)",
            "wae demo --full -o runs/demo-full  # train the network too; the paper's encoder",
            "wae demo --quick -o /tmp/demo     # a smoke test of the whole path (~1 min)",
            "wae demo --student-set stages.classifier.epochs=8",
            "wae demo --full --set data.subset=60000  # every run on the full training set",
        ],
    )
    p.add_argument("--output", "-o", default="runs/demo", help="where everything is written")
    p.add_argument(
        "--full",
        action="store_true",
        help="train the network here from --recipe, then the students' whole budget with the "
        "paper's encoder (about an hour on 2 cores)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke test; numbers mean nothing")
    p.add_argument("--overwrite", action="store_true", help="retrain (old runs moved aside)")
    p.add_argument(
        "--recipe",
        default=None,
        help=f"with --full: the network's recipe, a packaged name or a TOML file (default: "
        f"{BASELINE_RECIPE})",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: the recipe's)",
    )
    add_set_argument(p, help="override values of every run trained (as wae train --set)")
    p.add_argument(
        "--student-set",
        dest="student_overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override values of the two students only (the stages of "
        "recipes/templates/accelerate.toml)",
    )
    p.add_argument("--latency-batch", type=int, default=256, help="batch size for timing")
    p.add_argument("--threads", type=int, default=None, help="timing threads (default: all)")
    add_backends_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train.overrides import format_override

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(format_override("data.data_dir", args.data_dir))
    results = run_demo(
        args.output,
        full=args.full,
        recipe=args.recipe,
        quick=args.quick,
        overwrite=args.overwrite,
        overrides=overrides,
        student_overrides=args.student_overrides,
        latency_batch=args.latency_batch,
        threads=args.threads,
        min_run_time=0.3 if args.quick else 2.0 if args.full else 1.0,
        backends=args.backends,
    )
    print()
    print(format_results(results))
    out = args.output
    print(
        f"\nSaved: {out}/results.json, {out}/results.md, {out}/decomposition.png; checkpoints "
        f"in {out}/baseline/final, {out}/wae/final and {out}/half/final."
    )
    return 0
