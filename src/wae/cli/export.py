"""`wae export`: write a trained checkpoint (or an untrained registered model) as ONNX or
OpenVINO IR, in float32 or int8, and check the file before calling it done. The work is
`wae.apps.export_checkpoint.export_checkpoint`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data import DATASET_NAMES
from . import add_allow_code_argument, add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="export a model to ONNX or OpenVINO (fp32 or int8) and check it against PyTorch",
        description=(
            "Export the inference path (encoder, both branches, heads, score average; no "
            "decoder) to ONNX with its metadata (input contract: shape, layout, pixel range, "
            "normalisation; mean/std, class names), then run ONNX Runtime and PyTorch on the "
            "same batch and fail if the logits differ by more than --atol. --format openvino "
            "converts the checked ONNX file to OpenVINO IR (model.xml + model.bin) and checks "
            "OpenVINO's fp32 logits the same way. --precision int8 quantises it (ONNX Runtime "
            "QDQ, or NNCF for OpenVINO) on --calibration-size train images of --calibration "
            "and keeps it only if its top-1 class agrees with PyTorch's on at least "
            "--min-agreement of --check-size test images."
        ),
        examples=[
            "wae export --checkpoint runs/fm/final            # -> runs/fm/final/model.onnx",
            "wae export --checkpoint runs/fm/final --optimize --output fm_optimized.onnx",
            "wae export --model wae_vgg16 --no-dynamic-batch --batch-size 8   # untrained",
            "wae export --checkpoint runs/fm/final --format openvino   # -> model.xml + .bin",
            "wae export --checkpoint runs/fm/final --precision int8 --calibration fashion-mnist",
        ],
        epilog=(
            "Loading the OpenVINO IR (OpenVINO also reads the ONNX file directly):\n"
            "\n"
            "    import openvino as ov\n"
            '    compiled = ov.Core().compile_model("model.xml", "CPU")\n'
            "    logits = compiled(images)[0]   # (N, C, H, W) float32 in [0, 1], no mean/std\n"
            "\n"
            "--format openvino and int8 with it need the extra: pip install 'wae[openvino]'."
        ),
    )
    _add_source_arguments(p)
    _add_deploy_arguments(p)
    _add_graph_arguments(p)
    p.add_argument("--check-batch", type=int, default=3, help="batch size of the parity check")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed")
    add_allow_code_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _add_source_arguments(p: argparse.ArgumentParser) -> None:
    """What is exported: a checkpoint, or a registered model (untrained)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint directory (wae train output)")
    src.add_argument("--model", help="a registered model name, untrained (e.g. for benchmarks)")
    p.add_argument(
        "--num-classes", type=int, default=None, help="with --model (default: the model's)"
    )


def _add_deploy_arguments(p: argparse.ArgumentParser) -> None:
    """The file's format and precision, and the int8 calibration and check."""
    p.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "openvino"],
        help="onnx, or openvino (IR .xml + .bin)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "int8"],
        help="int8: post-training static quantisation (needs --calibration; checkpoints only)",
    )
    int8 = p.add_argument_group("int8 (--precision int8)")
    int8.add_argument(
        "--calibration",
        default=None,
        metavar="DATA",
        help=f"dataset to calibrate and check on: {DATASET_NAMES} (as wae eval --data)",
    )
    int8.add_argument("--data-dir", default=None, help="where that dataset lives")
    int8.add_argument(
        "--calibration-size", type=int, default=512, metavar="N", help="train images, seeded"
    )
    int8.add_argument(
        "--check-size", type=int, default=1000, metavar="M", help="held-out test images"
    )
    int8.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        metavar="F",
        help="least fraction of held-out images whose int8 top-1 matches fp32 PyTorch's",
    )


def _add_graph_arguments(p: argparse.ArgumentParser) -> None:
    """The exported graph: opset, batch dimension, input shape, rewrite, and where it goes."""
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
        help="default: <checkpoint>/model.onnx (model.xml with --format openvino; "
        "model_int8.* at int8), or <model>.onnx / .xml with --model",
    )


def run(args: argparse.Namespace) -> int:
    from ..apps.export_checkpoint import export_checkpoint

    summary = export_checkpoint(
        args.checkpoint,
        model_name=args.model,
        output=args.output,
        format=args.format,
        precision=args.precision,
        calibration=args.calibration,
        data_dir=args.data_dir,
        calibration_size=args.calibration_size,
        check_size=args.check_size,
        min_agreement=args.min_agreement,
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
    print(json.dumps(summary, indent=2) if args.json else _text(summary))
    return 0


def _text(s: dict[str, Any]) -> str:
    checked = "the float32 ONNX export: " if s["precision"] == "int8" else ""
    lines = [
        f"wrote {s['path']} ({s['format']}, {s['precision']}, {s['size_mb']} MB, opset "
        f"{s['opset']}, input {s['input_shape']}); {checked}{s['parity_runtime']} vs PyTorch on a "
        f"batch of {s['parity_batch']}: max abs logit difference "
        f"{s['parity_max_abs_diff']:.2e} (<= {s['atol']:.0e})"
    ]
    if s["precision"] == "int8":
        lines.append(
            f"int8 calibrated on {s['calibration_images']} {s['calibration_data']} "
            f"{s['calibration_split']} images; on {s['check_images']} held-out "
            f"{s['check_split']} images its top-1 agrees with float32 PyTorch's on "
            f"{s['top1_agreement']:.1%} (>= {s['min_agreement']:.1%}); top-1 accuracy int8 "
            f"{s['top1_int8']:.2f} %, float32 {s['top1_fp32']:.2f} %"
        )
    return "\n".join(lines)
