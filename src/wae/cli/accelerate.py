"""`wae accelerate`: a trained full-resolution classifier in, a WAE ~3x cheaper out (taught by
it), beside plain half-size input with the same teaching, one table and a verdict.
The work is `wae.apps.accelerate.accelerate`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse

from ..apps.accelerate import accelerate, format_results
from . import (
    add_allow_code_argument,
    add_backends_argument,
    add_command,
    add_encoder_argument,
    add_set_argument,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "accelerate",
        help="make a trained CNN ~3x cheaper: WAE started from it and distilled from it",
        description=(
            "Start a WAE from your trained full-resolution network (its feature extractor "
            "becomes the I_L network, its classifier s_L's head), train the paper's three "
            "stages with your network as teacher (knowledge distillation), train the same "
            "network on the half-size image (I_R) with the same teaching as the alternative, "
            "and measure all three in one run: accuracy, MACs, CPU latency, speed-up, and a "
            "verdict. Before any training it computes the WAE's MAC ratio and stops when WAE "
            "cannot pay off (below 1.5x; --force goes on). The stages are "
            "recipes/templates/accelerate.toml; change them with --set. Re-running reuses "
            "finished runs."
        ),
        examples=[
            "wae accelerate --checkpoint runs/full/final -o runs/fast",
            "wae accelerate --model timm:resnet18 --weights my.safetensors \\\n"
            "    --data /data/my_imagefolder --input-size 224 -o runs/fast",
            "wae accelerate --checkpoint runs/full/final -o runs/fast "
            "--set stages.classifier.epochs=20",
            "wae accelerate --checkpoint runs/full/final -o runs/fast-light --encoder light",
        ],
    )
    src = p.add_argument_group("the trained network (one of)")
    src.add_argument("--checkpoint", default=None, help="a wae checkpoint dir (runs/X/final)")
    src.add_argument(
        "--model", default=None, help="its backbone: torchvision name, timm:<name>, small_vgg"
    )
    src.add_argument("--weights", default=None, help="with --model: its state_dict .safetensors")
    src.add_argument("--data", default=None, help="with --model: dataset name or ImageFolder")
    src.add_argument("--data-dir", default=None, help="with --model: where the dataset lives")
    src.add_argument("--input-size", type=int, default=None, help="with --model: image size")
    src.add_argument("--in-chans", type=int, default=None, help="with --model: 1 or 3")
    add_allow_code_argument(src)
    p.add_argument("--output", "-o", required=True, help="where everything is written")
    add_set_argument(p, help="override values of the students' config (as wae train --set)")
    add_encoder_argument(p)
    p.add_argument("--no-half", action="store_true", help="skip the I_R + KD alternative")
    p.add_argument("--force", action="store_true", help="train even if WAE cannot pay off")
    p.add_argument("--overwrite", action="store_true", help="retrain (old runs moved aside)")
    p.add_argument("--quick", action="store_true", help="a smoke test; numbers mean nothing")
    p.add_argument("--latency-batch", type=int, default=256, help="batch size for timing")
    p.add_argument("--threads", type=int, default=None, help="timing threads (default: all)")
    add_backends_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    results = accelerate(
        args.output,
        checkpoint=args.checkpoint,
        model=args.model,
        weights=args.weights,
        data=args.data,
        data_dir=args.data_dir,
        input_size=args.input_size,
        in_chans=args.in_chans,
        overrides=args.overrides,
        allow_code=args.allow_code,
        half=not args.no_half,
        force=args.force,
        overwrite=args.overwrite,
        quick=args.quick,
        latency_batch=args.latency_batch,
        threads=args.threads,
        min_run_time=0.3 if args.quick else 2.0,
        encoder=args.encoder,
        backends=args.backends,
    )
    print()
    print(format_results(results))
    print(
        f"\nSaved: {args.output}/results.json, {args.output}/results.md; students in "
        f"{args.output}/wae/final" + ("" if args.no_half else f" and {args.output}/half/final")
    )
    return 0
