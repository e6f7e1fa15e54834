"""`wae demo`: train WAE and the full-resolution baseline on Fashion-MNIST, print one table.
The work is `wae.demo.run_demo`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse

from ..demo import format_results, run_demo
from . import add_command, add_set_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="the main job: three-stage WAE vs full resolution on Fashion-MNIST, one table",
        description=(
            "Train WAE + SmallVGG (the paper's three stages) and the full-resolution SmallVGG "
            "on the embedded Fashion-MNIST, then measure both in one run (test accuracy, MACs, "
            "CPU latency, speed-up). Re-running reuses finished runs."
        ),
        examples=[
            "wae demo                          # ~13 min on 2 cores; writes runs/demo/",
            "wae demo --quick -o /tmp/demo     # a smoke test of the whole path (< 1 min)",
            "wae demo --set data.subset=60000  # both recipes on the full training set",
        ],
    )
    p.add_argument("--output", "-o", default="runs/demo", help="where everything is written")
    p.add_argument("--quick", action="store_true", help="a smoke test in well under a minute")
    p.add_argument("--overwrite", action="store_true", help="retrain (old runs moved aside)")
    p.add_argument(
        "--recipes",
        default=None,
        help="folder with your own fashion_mnist.toml and fashion_mnist_baseline.toml "
        "(default: $WAE_RECIPES if set, else the packaged recipes)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: the recipes')",
    )
    add_set_argument(p, help="override values of both recipes (as wae train --set)")
    p.add_argument("--latency-batch", type=int, default=256, help="batch size for timing")
    p.add_argument("--threads", type=int, default=None, help="timing threads (default: all)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    results = run_demo(
        args.output,
        recipe_dir=args.recipes,
        quick=args.quick,
        overwrite=args.overwrite,
        overrides=overrides,
        latency_batch=args.latency_batch,
        threads=args.threads,
        min_run_time=0.3 if args.quick else 2.0,
    )
    print()
    print(format_results(results))
    out = results["wae"]["run_dir"].rsplit("/", 1)[0]
    print(
        f"\nSaved: {out}/results.json, {out}/results.md, {out}/decomposition.png; "
        f"checkpoints in {out}/wae/final and {out}/baseline/final."
    )
    return 0
