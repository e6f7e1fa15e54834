"""MACs of networks at full resolution and inside WAE with each encoder: the table of
docs/light-encoder.md.

Every model is built on the meta device (no weights allocated, nothing computed) and counted
with the library's own counter (wae.cost.mac_payoff: FlopCounterMode, MACs = FLOPs / 2,
convolutions and matrix products only). "original" is the backbone's own classifier at full
resolution (PlainNet.from_backbone); the ratio is original / WAE. Takes ~10-30 s.

    python benchmarks/light_encoder_macs.py              # the docs' nine networks at 224
    python benchmarks/light_encoder_macs.py --json       # the figures as JSON
    python benchmarks/light_encoder_macs.py --backbone resnet18 timm:resnet18
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from wae import PlainNet, WAENet
from wae.cost import mac_payoff
from wae.encoders import encoder_names

NETWORKS = (
    "timm:mobilenetv3_large_100",
    "timm:efficientnet_b0",
    "timm:ghostnet_100",
    "timm:regnetx_002",
    "timm:mixnet_s",
    "timm:rexnet_100",
    "timm:convnext_atto",
    "resnet50",
    "vgg16",
)


def count(backbone: str, input_size: int = 224, in_chans: int = 3) -> dict[str, Any]:
    """{"backbone", "original", "wae": {encoder: {"macs", "encoder_macs", "ratio"}}}."""
    with torch.device("meta"):
        full = PlainNet.from_backbone(backbone, in_chans=in_chans)
        row: dict[str, Any] = {"backbone": backbone, "wae": {}}
        for name in encoder_names():
            net = WAENet.from_backbone(
                backbone,
                in_chans=in_chans,
                input_size=input_size,
                encoder=name,
                check_payoff=False,
            )
            p = mac_payoff(net, full)
            row["original"] = p.full_macs
            row["wae"][name] = {
                "macs": p.wae_macs,
                "encoder_macs": p.encoder_macs,
                "ratio": p.ratio,
            }
    return row


def markdown(rows: list[dict[str, Any]], input_size: int) -> str:
    """The table: original MACs, WAE MACs and the ratio original / WAE per encoder."""
    names = encoder_names()
    head = ["network", "original MMACs"]
    for n in names:
        head += [f"WAE ({n}) MMACs", f"ratio ({n})"]
    lines = [
        f"MACs per {input_size}x{input_size} RGB image (MMACs = 1e6 multiply-accumulates); "
        f"ratio = original / WAE.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for r in rows:
        cells = [r["backbone"], f"{r['original'] / 1e6:.1f}"]
        for n in names:
            w = r["wae"][n]
            cells += [f"{w['macs'] / 1e6:.1f}", f"{w['ratio']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    enc = ", ".join(
        f"{n} {rows[0]['wae'][n]['encoder_macs'] / 1e6:.1f} MMACs" for n in names if rows
    )
    lines += ["", f"The encoders alone: {enc}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", nargs="+", default=list(NETWORKS))
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    rows = [count(b, args.input_size) for b in args.backbone]
    print(json.dumps(rows, indent=2) if args.json else markdown(rows, args.input_size))


if __name__ == "__main__":
    main()
