"""Probe: what halving the image costs on the fonts dataset (wae.data.fonts).

Trains SmallVGG at full resolution (small_vgg_64_full) and on the half-size image
(small_vgg_64_half: the paper's I_R) through the library's training service, with the one
classification stage of the packaged fonts_baseline recipe, then prints each test top-1, the
difference with two standard errors, the weakest faces and the elapsed times. Heavy at the
defaults (tens of minutes on 2 cores): not run by the tests.

    .venv/bin/python benchmarks/fonts_probe.py --size 64 --train 20000 --test 5000 \\
        --epochs 6 --width 32
    .venv/bin/python benchmarks/fonts_probe.py --train 420 --test 84 --epochs 1 --width 8  # smoke
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from wae.data.fonts import DEFAULT_FACES, FontSpec
from wae.train import run_training

MODELS = {"full": "small_vgg_64_full", "half": "small_vgg_64_half"}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64, help="image side (multiple of 16, 32-256)")
    p.add_argument("--train", type=int, default=20_000, help="training renders (10%% validate)")
    p.add_argument("--test", type=int, default=5_000, help="test renders")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--width", type=int, default=32, help="SmallVGG's first-stage channels")
    p.add_argument("--faces", default=None, help="face+face+... (default: all 21)")
    p.add_argument("--sizes", default=None, help="font sizes min-max in px (default: scaled)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: a temp dir)")
    return p.parse_args()


def _dataset(args: argparse.Namespace) -> str:
    """The fonts dataset name the options select."""
    faces = tuple(args.faces.split("+")) if args.faces else DEFAULT_FACES
    sizes = tuple(int(v) for v in args.sizes.split("-")) if args.sizes else None
    return FontSpec(args.size, faces, args.train, args.test, font_sizes=sizes).name


def _train(key: str, dataset: str, args: argparse.Namespace, out: Path) -> tuple[dict, float]:
    """(results of one run, seconds it took)."""
    overrides = [
        f"data.dataset={json.dumps(dataset)}",
        f"data.input_size={args.size}",
        f"model.name={MODELS[key]}",
        f"model.kwargs.width={args.width}",
        f"stages.1.epochs={args.epochs}",
        "eval.noise_vars=[]",
    ]
    if args.epochs == 1:  # the recipe's one warm-up epoch needs a second one
        overrides.append("stages.1.schedule.warmup_epochs=0")
    if args.threads:
        overrides.append(f"runtime.threads={args.threads}")
    start = time.perf_counter()
    res = run_training("fonts_baseline", out / key, overrides=overrides)
    return res, time.perf_counter() - start


def main() -> None:
    args = _args()
    dataset = _dataset(args)
    out = args.out or Path(tempfile.mkdtemp(prefix="fonts-probe-"))
    print(f"{dataset}: SmallVGG width {args.width}, {args.epochs} epochs; runs in {out}")
    top1 = {}
    for key in MODELS:
        res, secs = _train(key, dataset, args, out)
        top1[key] = res["test"]["top1"]
        weakest = sorted(res["test"]["per_class"].items(), key=lambda kv: kv[1])[:3]
        worst = ", ".join(f"{c} {v:.1f}" for c, v in weakest)
        print(f"{key:>4}: top-1 {top1[key]:.2f} %  ({secs:.0f} s; weakest: {worst})")
    p, q, n = top1["full"] / 100, top1["half"] / 100, args.test
    two_se = 200 * math.sqrt((p * (1 - p) + q * (1 - q)) / n)
    print(
        f"full - half: {top1['full'] - top1['half']:.2f} points (2 SE {two_se:.2f}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
