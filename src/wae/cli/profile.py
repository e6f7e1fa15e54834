"""`wae profile`: the backbone at full resolution, at half resolution (I_R) and inside WAE,
side by side: MACs, parameters, per-part breakdown, measured latency, speed-up.

The work is `wae.cost.compare_baselines`; this module parses, calls it and prints. When WAE
does not pay off (MAC ratio below 1.5x) the library warns; the command prints that paragraph
to stderr instead, after the table (or the JSON, whose "payoff" entry has the verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import add_command, add_encoder_argument

_DESCRIPTION = """\
Build one backbone three ways, freshly initialised (no training needed): at full resolution,
on the image resized to half size (the paper's I_R) and inside WAE. Count each one's MACs
and parameters per part, time the three interleaved in one process, and print a table with
the speed-up and MAC ratio against full resolution, and whether WAE pays off (a MAC ratio of
at least 1.5x; below that a warning on stderr says what to do instead).
"""

_EXAMPLES = [
    "wae profile                                   # VGG16 at 224x224, batch 1, all cores",
    "wae profile --backbone resnet50 --threads 1 --batch-size 8",
    "wae profile --backbone small_vgg --input-size 28 --in-chans 1 --num-classes 10 --no-latency",
    "wae profile --backbone timm:resnet18 --json > profile.json",
    "wae profile --backbone timm:mobilenetv3_large_100 --encoder light --no-latency",
]
_EPILOG = """\
The same from Python: print(wae.profile(net, 224, baselines=True)) for a WAENet `net`, or
print(wae.cost.compare_baselines("vgg16", 224)).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "profile",
        help="count MACs and time a backbone with and without WAE",
        description=_DESCRIPTION,
        examples=_EXAMPLES,
        epilog=_EPILOG,
    )
    p.add_argument(
        "--backbone",
        default="vgg16",
        help="torchvision name, timm:<name> or small_vgg (default: %(default)s)",
    )
    p.add_argument(
        "--input-size", type=int, default=224, help="image height = width (default: %(default)s)"
    )
    p.add_argument("--in-chans", type=int, default=3, help="image channels (default: %(default)s)")
    add_encoder_argument(p)
    p.add_argument(
        "--num-classes", type=int, default=1000, help="classifier outputs (default: %(default)s)"
    )
    p.add_argument(
        "--batch-size", type=int, default=1, help="images per call (default: %(default)s)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: torch's, all cores)"
    )
    p.add_argument(
        "--memory-format",
        default="best",
        choices=["best", "contiguous", "channels_last"],
        help="'best' (the default) times both layouts for each model and keeps its faster one",
    )
    p.add_argument(
        "--min-run-time",
        type=float,
        default=2.0,
        help="seconds of timing per model (default: %(default)s)",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="interleaved timing rounds (default: %(default)s)"
    )
    p.add_argument("--no-latency", action="store_true", help="count only, do not time")
    p.add_argument(
        "--device",
        default="cpu",
        help="where to run: cpu, cuda, cuda:1, ... (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..cost import PayoffWarning, compare_baselines

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PayoffWarning)  # printed below, as a paragraph
        result = compare_baselines(
            args.backbone,
            args.input_size,
            num_classes=args.num_classes,
            in_chans=args.in_chans,
            batch_size=args.batch_size,
            device=args.device,
            encoder=args.encoder,
            latency=not args.no_latency,
            threads=args.threads,
            memory_format=args.memory_format,
            min_run_time=args.min_run_time,
            rounds=args.rounds,
        )
    print(json.dumps(result.to_report(), indent=2) if args.json else result, flush=True)
    payoff = result.payoff
    if not payoff.pays_off:
        print(f"wae profile: warning: {payoff.message()}", file=sys.stderr)
    return 0
