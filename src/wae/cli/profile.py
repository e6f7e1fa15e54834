"""`wae profile`: the backbone at full resolution, at half resolution (I_R) and inside WAE,
side by side: MACs, parameters, per-part breakdown, measured latency, speed-up."""

from __future__ import annotations

import argparse
import json

import torch

from .. import cost
from ..models import PlainNet, WAENet

PAPER_BOUND = 1 / (1 / 4 + 1 / 64)  # the paper's upper bound on the speed-up, 3.76x


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="count MACs and time a backbone with and without WAE")
    p.add_argument("--backbone", default="vgg16", help="torchvision name, timm:<name>, small_vgg")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.add_argument(
        "--memory-format",
        default="best",
        choices=["best", "contiguous", "channels_last"],
        help="'best' times both layouts for each model and keeps its faster one",
    )
    p.add_argument("--min-run-time", type=float, default=2.0, help="seconds of timing per model")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--no-latency", action="store_true", help="count only, do not time")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def build_trio(
    backbone: str, *, num_classes: int, in_chans: int, input_size: int
) -> dict[str, torch.nn.Module]:
    """The three models `wae profile` compares, freshly initialised, in eval mode."""
    kw = dict(num_classes=num_classes, in_chans=in_chans)
    models = {
        "baseline": PlainNet.from_backbone(backbone, **kw),
        "half_res": PlainNet.from_backbone(backbone, half=True, **kw),
        "wae": WAENet.from_backbone(backbone, input_size=input_size, **kw),
    }
    return {k: m.eval() for k, m in models.items()}


def run(args: argparse.Namespace) -> int:
    models = build_trio(
        args.backbone,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        input_size=args.input_size,
    )
    device = torch.device(args.device)
    for m in models.values():
        m.to(device)
    result = cost.compare(
        models,
        args.input_size,
        batch_size=args.batch_size,
        in_chans=args.in_chans,
        latency=not args.no_latency,
        threads=args.threads,
        memory_format=args.memory_format,
        min_run_time=args.min_run_time,
        rounds=args.rounds,
        device=device,
        reference="baseline",
    )
    out = cost.comparison_to_dict(result)
    summary = {
        "backbone": args.backbone,
        "speedup": result["speedup"]["wae"],
        "mac_ratio": result["mac_ratio"]["wae"],
        "paper_bound": PAPER_BOUND,
    }
    if args.json:
        doc = {name: _entry(out["profiles"][name]) for name in models}
        doc.update(summary, machine=out["machine"], settings=out["settings"])
        print(json.dumps(doc, indent=2))
        return 0
    print(cost.format_table(result))
    sp = summary["speedup"]
    print(
        f"\nWAE vs full resolution: MAC ratio {summary['mac_ratio']:.2f}x, measured speed-up "
        + (f"{sp:.2f}x" if sp is not None else "not measured")
        + f"; the paper's bound 1 / (1/4 + 1/64) = {PAPER_BOUND:.2f}x."
    )
    return 0


def _entry(p: dict) -> dict:
    """One model's JSON entry: the headline figures first, then everything measured."""
    lat = p.get("latency") or {}
    return {
        "macs": p["ops"]["macs"],
        "flops": p["ops"]["flops"],
        "params": p["ops"]["params"],
        "latency_ms": lat.get("median_ms"),
        "latency_iqr_ms": lat.get("iqr_ms"),
        "memory_format": lat.get("memory_format"),
        "parts": p["ops"]["parts"],
        "latency": lat or None,
    }
