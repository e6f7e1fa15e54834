"""`wae eval`: top-1/top-5, per-class accuracy and accuracy under Gaussian noise of a checkpoint.
The work is `wae.train.evaluate_checkpoint`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse
import json

from ..data import DATASET_NAMES
from . import add_allow_code_argument, add_command

_HEADS = ("average", "low", "fused")  # WAENet.HEADS (a test pins it), no torch for --help


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "eval",
        help="evaluate a checkpoint (accuracy, per class, under noise)",
        description="Evaluate a checkpoint written by `wae train` (a directory with "
        "model.safetensors + model.json, e.g. runs/<name>/final).",
        examples=[
            "wae eval --checkpoint runs/fm/final",
            "wae eval --checkpoint runs/fm/final --data fashion-mnist --noise-var 0.01 0.05 0.1",
            "wae eval --checkpoint runs/fm/final --json --output runs/fm/eval.json",
            "wae eval --checkpoint runs/fm/final --head low   # a WAE's s_L alone (no I_H)",
            "wae eval --checkpoint runs/fm/final --precision int8   # as deployed in int8",
        ],
        epilog="The noise is zero-mean Gaussian of the given variances added to the [0, 1] "
        "images, seeded per image (--seed), not clamped (as in the paper).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument(
        "--data",
        default=None,
        help=f"{DATASET_NAMES} (default: the dataset the checkpoint was trained on)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="where the dataset lives (default: the run's data.data_dir, without --data)",
    )
    p.add_argument("--split", default="test", help="train, val or test")
    p.add_argument("--subset", type=int, default=None, help="class-balanced subset size")
    p.add_argument(
        "--noise-var",
        type=float,
        nargs="+",
        default=[],
        metavar="V",
        help="also evaluate with Gaussian noise of these variances (e.g. 0.01 0.02 0.05 0.1)",
    )
    p.add_argument(
        "--head",
        choices=_HEADS,
        default="average",
        help="for a WAE: score with (s_L + s_c) / 2, the model's prediction (average), s_L "
        "alone (low: I_L's branch) or s_c alone (fused)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="fp32: as trained; bf16: the model cast to bfloat16 (inputs too, no autocast); "
        "int8: ONNX Runtime int8 (QDQ) of the exported model, calibrated on the dataset's "
        "train split, on the CPU",
    )
    p.add_argument(
        "--calibration-size",
        type=int,
        default=None,
        metavar="N",
        help="with --precision int8: seeded train images that calibrate it (default: 512)",
    )
    p.add_argument("--seed", type=int, default=0, help="noise (and subset, calibration) seed")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    add_allow_code_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--output", default=None, help="also write the JSON result to this file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_json
    from ..outputs import check_output_file
    from ..train import evaluate_checkpoint, format_eval

    if args.output:  # checked before the evaluation, so its result is never lost to a bad path
        check_output_file(args.output, "The result file (--output)")
    result = evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        data_dir=args.data_dir,
        split=args.split,
        subset=args.subset,
        head=args.head,
        noise_vars=args.noise_var,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        num_workers=args.num_workers,
        allow_code=args.allow_code,
        precision=args.precision,
        calibration_size=args.calibration_size,
    )
    if args.output:
        atomic_write_json(args.output, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        header = [
            ("checkpoint", f"{args.checkpoint}  ({result['model']})"),
            *([("head", args.head)] if args.head != "average" else []),
            *([("precision", _precision(result))] if args.precision != "fp32" else []),
            ("data", f"{result['dataset']} {args.split}"),
        ]
        print(format_eval(result, header))
    return 0


def _precision(result: dict) -> str:
    cal = result.get("calibration")
    if not cal:
        return result["precision"]
    return (
        f"{result['precision']} ({cal['tool']} {cal['format']}, calibrated on {cal['images']} "
        f"{cal['split']} images, seed {cal['seed']})"
    )
