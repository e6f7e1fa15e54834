"""`wae export`: write a trained checkpoint (or an untrained registered model) as ONNX, then
check that ONNX Runtime reproduces PyTorch's logits on a batch before calling it done."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WAEError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX and check it against PyTorch",
        description=(
            "Export the inference path (encoder, both branches, heads, score average; no "
            "decoder) to ONNX with its metadata (input name/shape, mean/std, class names), "
            "then run ONNX Runtime and PyTorch on the same batch and fail if the logits "
            "differ by more than --atol."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint directory (wae train output)")
    src.add_argument("--model", help="a registered model name, untrained (e.g. for benchmarks)")
    p.add_argument("--num-classes", type=int, default=None, help="with --model")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="symbolic batch dimension (default); --no-dynamic-batch fixes it to --batch-size",
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
    p.add_argument("--output", type=Path, default=None, help="default: <checkpoint>/model.onnx")
    p.add_argument("--check-batch", type=int, default=3, help="batch size of the parity check")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _load(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, its checkpoint metadata, where it came from)."""
    from ..models import create_model, is_model, list_models, model_cfg

    if args.checkpoint is not None:
        from ..checkpoint import load_model

        model, doc = load_model(args.checkpoint, num_classes=args.num_classes)
        meta = dict(doc.get("meta") or {})
        spec = doc.get("spec", {})
        defaults: dict[str, Any] = {}
        if spec.get("builder") == "registry" and is_model(spec.get("name", "")):
            defaults = model_cfg(spec["name"])
        for key in ("input_size", "in_chans"):
            if meta.get(key) is None:
                meta[key] = spec.get("kwargs", {}).get(key, defaults.get(key))
        return model, meta, {"weights": f"checkpoint {args.checkpoint}"}
    if not is_model(args.model):
        raise WAEError(
            f"Unknown model {args.model!r}. Registered models: {', '.join(list_models())}."
        )
    cfg = model_cfg(args.model)
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if args.input_size is not None and args.model.startswith("wae_"):
        kwargs["input_size"] = args.input_size  # the VGG heads are sized for it
    model = create_model(args.model, **kwargs).eval()
    meta = {"input_size": cfg["input_size"], "in_chans": cfg["in_chans"]}
    return model, meta, {"weights": "untrained (random initialisation)", "model_name": args.model}


def _size(args: argparse.Namespace, model: nn.Module, meta: dict[str, Any]) -> tuple[int, int]:
    size = args.input_size or meta.get("input_size") or getattr(model, "input_size", None)
    if size is None:
        raise WAEError("The input size is not recorded in the checkpoint: pass --input-size.")
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def run(args: argparse.Namespace) -> int:
    from ..export import ExportError, check_parity, export_onnx, onnx_session

    t0 = time.perf_counter()
    model, meta, origin = _load(args)
    h, w = _size(args, model, meta)
    in_chans = int(args.in_chans or meta.get("in_chans") or getattr(model, "in_chans", 3))
    if args.output is not None:
        out = args.output
    elif args.checkpoint is not None:
        out = args.checkpoint / "model.onnx"
    else:
        out = Path(f"{args.model}.onnx")
    metadata = {k: v for k, v in meta.items() if k not in ("input_size", "in_chans")}
    metadata.update(origin)
    target = model
    if args.optimize:
        from ..optimize import optimize_for_inference

        target = optimize_for_inference(model, fuse_mkldnn=False, channels_last=False)
        metadata["optimized"] = "optimize_for_inference(fuse_mkldnn=False)"
    path = export_onnx(
        target,
        out,
        (h, w),
        in_chans=in_chans,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        metadata=metadata,
        batch_size=args.batch_size,
    )
    # A batch size the export did not trace with (2), so a batch baked into the graph shows.
    n = args.check_batch if args.dynamic_batch else args.batch_size
    x = torch.rand(n, in_chans, h, w, generator=torch.Generator().manual_seed(0))
    try:
        diff = check_parity(model, onnx_session(path), x, atol=args.atol)
    except ExportError:
        path.unlink(missing_ok=True)  # an unfaithful export must not be picked up by mistake
        raise
    summary = {
        "path": str(path),
        "format": args.format,
        "opset": args.opset,
        "size_mb": round(path.stat().st_size / 2**20, 2),
        "input_shape": ["batch" if args.dynamic_batch else args.batch_size, in_chans, h, w],
        "parity_max_abs_diff": diff,
        "parity_batch": n,
        "atol": args.atol,
        "seconds": round(time.perf_counter() - t0, 2),
        **origin,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {path} ({summary['size_mb']} MB, opset {args.opset}, input "
            f"{summary['input_shape']}); ONNX Runtime vs PyTorch on a batch of {n}: max abs "
            f"logit difference {diff:.2e} (<= {args.atol:.0e})",
            file=sys.stdout,
        )
    return 0
