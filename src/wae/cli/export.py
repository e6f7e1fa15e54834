"""`wae export`: write a trained checkpoint (or an untrained registered model) as ONNX, then
check that ONNX Runtime reproduces PyTorch's logits on a batch before calling it done.
The work is `wae.export_checkpoint.export_checkpoint`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import add_allow_code_argument, add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="export a model to ONNX and check it against PyTorch",
        description=(
            "Export the inference path (encoder, both branches, heads, score average; no "
            "decoder) to ONNX with its metadata (input contract: shape, layout, pixel range, "
            "normalisation; mean/std, class names), then run ONNX Runtime and PyTorch on the "
            "same batch and fail if the logits differ by more than --atol."
        ),
        examples=[
            "wae export --checkpoint runs/fm/final            # -> runs/fm/final/model.onnx",
            "wae export --checkpoint runs/fm/final --optimize --output fm_optimized.onnx",
            "wae export --model wae_vgg16 --no-dynamic-batch --batch-size 8   # untrained",
        ],
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint directory (wae train output)")
    src.add_argument("--model", help="a registered model name, untrained (e.g. for benchmarks)")
    p.add_argument(
        "--num-classes", type=int, default=None, help="with --model (default: the model's)"
    )
    p.add_argument("--format", default="onnx", choices=["onnx"], help="file format")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="symbolic batch dimension; --no-dynamic-batch fixes it to --batch-size",
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size of a static export")
    p.add_argument("--input-size", type=int, default=None, help="default: the model's")
    p.add_argument("--in-chans", type=int, default=None, help="default: the model's")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="export optimize_for_inference's rewrite (norms and linear heads folded); the "
        "parity check still compares with the original model",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: <checkpoint>/model.onnx, or <model>.onnx with --model",
    )
    p.add_argument("--check-batch", type=int, default=3, help="batch size of the parity check")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed")
    add_allow_code_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..export_checkpoint import export_checkpoint

    summary = export_checkpoint(
        args.checkpoint,
        model_name=args.model,
        output=args.output,
        num_classes=args.num_classes,
        input_size=args.input_size,
        in_chans=args.in_chans,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        batch_size=args.batch_size,
        optimize=args.optimize,
        check_batch=args.check_batch,
        atol=args.atol,
        allow_code=args.allow_code,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['path']} ({summary['size_mb']} MB, opset {args.opset}, input "
            f"{summary['input_shape']}); ONNX Runtime vs PyTorch on a batch of "
            f"{summary['parity_batch']}: max abs logit difference "
            f"{summary['parity_max_abs_diff']:.2e} (<= {args.atol:.0e})"
        )
    return 0
