"""`wae bench`: time the full-resolution network, the half-resolution one and WAE on every
backend (PyTorch eager, channels_last, torch.compile, optimize_for_inference, ONNX Runtime)
and write a Markdown table and a JSON file. See wae.apps.bench for what each backend means.
The work is `wae.apps.bench.run_benchmark`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..apps import bench
from ..precision import INFERENCE_PRECISIONS
from . import add_command, add_encoder_argument

_DEFAULTS = bench.DEFAULT_SETTINGS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        help="benchmark full / half-resolution / WAE models on every backend",
        description=(
            "Time the backbone at full resolution, at half resolution and inside WAE, on\n"
            "PyTorch eager, channels_last, torch.compile, optimize_for_inference, ONNX\n"
            "Runtime and OpenVINO, at every precision, batch size and thread count given.\n"
            "Writes <name>.md and <name>.json to --output-dir (default runs/bench). speed-up\n"
            "= full network's best backend / WAE's best backend, at the same precision and\n"
            "against the float32 full network. Run it on a quiet machine: the load average\n"
            "is recorded."
        ),
        examples=[
            "wae bench --quick                      # tiny models, a smoke run (< 1 min)",
            "wae bench --backbone vgg16 --batch-size 1 --threads 2 --name vgg16-b1",
            "wae bench --parts --batch-size 1       # where WAE's time goes, per part",
            "wae bench --backbone vgg16 --threads 2 --precision fp32 bf16 int8",
            "wae bench --backbone resnet50 --encoder light --batch-size 1 --threads 2",
            "wae bench --quick --output-dir benchmarks/results --name quick",
        ],
    )
    _add_matrix_arguments(p)
    _add_timing_arguments(p)
    _add_output_arguments(p)
    p.set_defaults(run=run)


def _words(key: str) -> str:
    return " ".join(str(v) for v in _DEFAULTS[key])


def _add_matrix_arguments(p: argparse.ArgumentParser) -> None:
    """What is timed: backbones, sizes, threads, backends, device and precisions."""
    p.add_argument("--backbone", nargs="+", default=None, help=f"default: {_words('backbone')}")
    p.add_argument("--input-size", type=int, default=None, help="default: the models' (224)")
    p.add_argument(
        "--batch-size", type=int, nargs="+", default=None, help=f"default: {_words('batch_size')}"
    )
    p.add_argument(
        "--threads", nargs="+", default=None, help=f"ints or 'all' (default: {_words('threads')})"
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=list(bench.ALL_BACKENDS),
        help="default: all",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument(
        "--amp",
        action="store_true",
        help="PyTorch backends under autocast (fp16 on CUDA, bf16 on CPU)",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        default=None,
        choices=list(INFERENCE_PRECISIONS),
        help="precisions to time; fp32 is always timed, as the reference (default: fp32). "
        "bf16/fp16: PyTorch backends with weights cast once, OpenVINO's bf16 hint; int8: "
        "ONNX Runtime QDQ and OpenVINO NNCF static quantization",
    )
    p.add_argument("--num-classes", type=int, default=None, help="default: the models' (1000)")
    add_encoder_argument(p)


def _add_timing_arguments(p: argparse.ArgumentParser) -> None:
    """How long each candidate is timed, and the quick preset."""
    p.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        help=f"seconds per candidate (default: {_DEFAULTS['min_run_time']:g})",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"interleaved timing rounds (default: {_DEFAULTS['rounds']})",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"untimed calls before timing (default: {_DEFAULTS['warmup']})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny models (small_vgg_28 family), 1 thread, very short timing: a smoke test",
    )


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """What is measured (the matrix, or the parts) and where the results go."""
    p.add_argument(
        "--parts",
        action="store_true",
        help="instead: where WAE's time goes, per part, before/after optimize_for_inference",
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/bench"),
        help="where <name>.md and <name>.json go (default: runs/bench)",
    )
    p.add_argument(
        "--name", default=None, help="file name stem (default: bench-<time>, quick with --quick)"
    )
    p.add_argument("--no-save", action="store_true", help="print only, write no files")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    result = bench.run_benchmark(
        quick=args.quick,
        parts=args.parts,
        backbone=args.backbone,
        input_size=args.input_size,
        batch_size=args.batch_size,
        threads=args.threads,
        backends=args.backends,
        device=args.device,
        amp=args.amp,
        precision=args.precision,
        num_classes=args.num_classes,
        encoder=args.encoder,
        min_run_time=args.min_run_time,
        rounds=args.rounds,
        warmup=args.warmup,
        output_dir=args.output_dir,
        name=args.name,
        save=not args.no_save,
        log=_log,
    )
    print(json.dumps(result.headline(), indent=2) if args.json else result.markdown)
    return 0
