"""`wae bench`: time the full-resolution network, the half-resolution one and WAE on every
backend (PyTorch eager, channels_last, torch.compile, optimize_for_inference, ONNX Runtime)
and write a Markdown table and a JSON file. See wae.bench for what each backend means."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .. import bench
from ..precision import INFERENCE_PRECISIONS
from . import CommandHelpFormatter, add_encoder_argument

#: --quick: tiny models, one thread, very short timing (a smoke run for CI, < 1 min).
QUICK = {
    "backbone": [bench.QUICK_BACKBONE],
    "batch_size": [1],
    "threads": ["1"],
    "backends": ["eager", "channels_last", "optimized", "ort", "ort_optimized"],
    "precision": ["fp32"],
    "min_run_time": 0.05,
    "rounds": 1,
    "warmup": 1,
}
DEFAULTS = {
    "backbone": ["vgg16", "resnet50"],
    "batch_size": [1, 16],
    "threads": ["all", "1"],  # the first config (all cores, batch 1) is the headline
    "backends": list(bench.ALL_BACKENDS),
    "precision": ["fp32"],
    "min_run_time": 2.0,
    "rounds": 3,
    "warmup": 2,
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
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
        epilog=(
            "examples:\n"
            "  wae bench --quick                      # tiny models, a smoke run (< 1 min)\n"
            "  wae bench --backbone vgg16 --batch-size 1 --threads 2 --name vgg16-b1\n"
            "  wae bench --parts --batch-size 1       # where WAE's time goes, per part\n"
            "  wae bench --backbone vgg16 --threads 2 --precision fp32 bf16 int8\n"
            "  wae bench --backbone resnet50 --encoder light --batch-size 1 --threads 2\n"
            "  wae bench --quick --output-dir benchmarks/results --name quick"
        ),
        formatter_class=CommandHelpFormatter,
    )
    p.add_argument("--backbone", nargs="+", default=None, help="default: vgg16 resnet50")
    p.add_argument("--input-size", type=int, default=None, help="default: the models' (224)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None, help="default: 1 16")
    p.add_argument("--threads", nargs="+", default=None, help="ints or 'all' (default: all 1)")
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
    p.add_argument(
        "--min-run-time", type=float, default=None, help="seconds per candidate (default: 2)"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved timing rounds (default: 3)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed calls before timing (default: 2)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny models (small_vgg_28 family), 1 thread, very short timing: a smoke test",
    )
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
    p.set_defaults(run=run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else DEFAULTS
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check(args: argparse.Namespace, s: dict[str, Any], stem: str) -> list[Path]:
    """Every option and the result files' paths, checked before any model is built: a bad
    value or an unwritable --output-dir must not cost a whole benchmark. Returns the paths."""
    from ..outputs import check_output_file

    bench.check_settings(
        backbones=s["backbone"],
        backends=s["backends"],
        input_size=args.input_size,
        batch_sizes=s["batch_size"],
        threads=s["threads"],
        device=args.device,
        num_classes=args.num_classes,
        min_run_time=s["min_run_time"],
        rounds=s["rounds"],
        warmup=s["warmup"],
        precisions=s["precision"],
        encoder=args.encoder,
    )
    if args.parts:
        bench.part_precision(s["precision"])
    if args.no_save:
        return []
    return [
        check_output_file(args.output_dir / f"{stem}{ext}", "The bench result file")
        for ext in (".md", ".json")
    ]


def _measure(args: argparse.Namespace, s: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The benchmark (or, with --parts, the per-part timing): (JSON document, Markdown)."""
    if args.parts:
        results = [
            bench.time_parts(
                backbone,
                input_size=args.input_size,
                batch_size=bs,
                threads=t,
                min_run_time=s["min_run_time"],
                rounds=s["rounds"],
                warmup=s["warmup"],
                precision=bench.part_precision(s["precision"]),
                encoder=args.encoder,
                log=_log,
            )
            for backbone in s["backbone"]
            for bs in s["batch_size"]
            for t in s["threads"]
        ]
        return {"parts": results}, "\n".join(bench.format_parts_markdown(r) for r in results)
    doc = bench.run_bench(
        s["backbone"],
        input_size=args.input_size,
        batch_sizes=s["batch_size"],
        threads=s["threads"],
        backends=s["backends"],
        device=args.device,
        amp=args.amp,
        precisions=s["precision"],
        num_classes=args.num_classes,
        min_run_time=s["min_run_time"],
        rounds=s["rounds"],
        warmup=s["warmup"],
        encoder=args.encoder,
        log=_log,
    )
    return doc, bench.format_markdown(doc)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_bytes

    s = _settings(args)
    stem = args.name or ("quick" if args.quick else f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    stem = f"{stem}-parts" if args.parts else stem
    paths = _check(args, s, stem)
    doc, text = _measure(args, s)
    if paths:  # --no-save: none
        texts = (text + "\n", json.dumps(doc, indent=2) + "\n")
        for path, data in zip(paths, texts, strict=True):
            atomic_write_bytes(path, data.encode())  # a crash never leaves a half-written one
        _log(f"wrote {args.output_dir / stem}.md and .json")
    if args.json:
        print(json.dumps(_headline(doc), indent=2))
    else:
        print(text)
    return 0


def _headline(doc: dict[str, Any]) -> dict[str, Any]:
    """The JSON printed by --json: the first config's figures at the top level (speedup =
    full network's best backend / WAE's best backend, every backend's numbers beside it),
    then machine, settings and every config."""
    if "configs" not in doc or not doc["configs"]:
        return doc
    first = doc["configs"][0]
    out = {
        "speedup": first["speedup"],
        "backbone": first["config"]["backbone"],
        "input_size": first["config"]["input_size"],
        "batch_size": first["config"]["batch_size"],
        "threads": first["config"]["threads"],
        "best": first["best"],
        "half_speedup": first["half_speedup"],
        "speedup_per_backend": first["speedup_per_backend"],
        "mac_ratio": first["mac_ratio"]["wae"],
        "backends": first["models"],
        # per precision and model: best backend, median_ms, speedup_same_precision,
        # speedup_vs_fp32
        "by_precision": {p: v["best"] for p, v in first.get("precisions", {}).items()},
        "fastest": first.get("fastest"),
    }
    out.update({k: v for k, v in doc.items() if k not in ("speedup",)})
    return out
