"""`wae eval`: top-1/top-5, per-class accuracy and accuracy under Gaussian noise.

    wae eval --checkpoint runs/fm/final
    wae eval --checkpoint runs/fm/final --data fashion-mnist --noise-var 0.01 0.02 0.05 0.1
    wae eval --checkpoint runs/fm/final --json --output runs/fm/eval.json
    wae eval --checkpoint runs/fm/final --head low      # a WAE's s_L alone (no I_H)

The noise is zero-mean Gaussian of the given variances added to the [0, 1] images, seeded per
image (--seed), not clamped (as in the paper).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

_HEADS = ("average", "low", "fused")


class _OneHead(nn.Module):
    """A WAENet scored by one of its heads: s_L ("low") or s_c ("fused")."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model, self.index = model, _HEADS.index(head) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x))[self.index]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (accuracy, per class, under noise)",
        description="Evaluate a checkpoint written by `wae train` (a directory with "
        "model.safetensors + model.json, e.g. runs/<name>/final).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory")
    p.add_argument(
        "--data",
        default=None,
        help="fashion-mnist, cifar10, cifar100 or an ImageFolder path "
        "(default: the dataset the checkpoint was trained on)",
    )
    p.add_argument("--data-dir", default=None, help="where the dataset lives")
    p.add_argument("--split", default="test", help="train, val or test (default: test)")
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
    p.add_argument("--seed", type=int, default=0, help="noise (and subset) seed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--output", default=None, help="also write the JSON result to this file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError, atomic_write_json, load_checkpoint, load_model
    from ..data import DataError, build_dataset
    from ..train.distributed import resolve_device
    from ..train.evaluate import evaluate, format_eval

    if args.batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if any(v < 0 for v in args.noise_var):
        raise DataError(f"--noise-var takes variances >= 0, got {args.noise_var}.")
    doc, _ = load_checkpoint(args.checkpoint)  # fails early, and never unpickles
    meta, config = doc.get("meta", {}), doc.get("config", {})
    data_cfg = config.get("data", {}) if isinstance(config, dict) else {}
    dataset = args.data or meta.get("dataset") or data_cfg.get("dataset")
    if not dataset:
        raise CheckpointError(
            f"The checkpoint {args.checkpoint} does not say which data it was trained on; "
            f"pass --data (fashion-mnist, cifar10, cifar100 or an ImageFolder path)."
        )
    data_dir = args.data_dir
    if data_dir is None and args.data is None:
        data_dir = data_cfg.get("data_dir")
    spec_kw = doc["spec"].get("kwargs", {})
    input_size = meta.get("input_size") or _size(spec_kw.get("input_size"))
    in_chans = meta.get("in_chans") or spec_kw.get("in_chans")
    ds = build_dataset(
        dataset,
        args.split,
        data_dir=data_dir,
        input_size=input_size,
        in_chans=in_chans,
        subset=args.subset,
        seed=args.seed,
    )
    model, _ = load_model(args.checkpoint, num_classes=ds.num_classes)
    saved_classes = meta.get("classes")
    if saved_classes and list(saved_classes) != list(ds.classes):
        raise CheckpointError(
            f"The checkpoint was trained on classes {saved_classes[:5]}... but {dataset} has "
            f"{list(ds.classes)[:5]}...: the labels would not mean the same thing. Evaluate on "
            f"the dataset the checkpoint was trained on."
        )
    if args.head != "average":
        from ..models import WAENet

        if not isinstance(model, WAENet) or (args.head == "fused" and model.head_fused is None):
            raise CheckpointError(
                f"--head {args.head} needs a WAE checkpoint with that head; "
                f"{args.checkpoint} holds {type(model).__name__}"
                + ("" if isinstance(model, WAENet) else " (a plain network has one output)")
                + ". Drop --head."
            )
        model = _OneHead(model, args.head)
    device = resolve_device(args.device)
    model.to(device)
    result = evaluate(
        model,
        ds,
        args.noise_var,
        batch_size=args.batch_size,
        device=device,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    result.update(
        checkpoint=str(Path(args.checkpoint)),
        dataset=str(dataset),
        split=args.split,
        model=doc["spec"].get("name") or doc["spec"].get("backbone"),
        head=args.head,
        config=config,
    )
    if args.output:
        atomic_write_json(args.output, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        header = [
            ("checkpoint", f"{args.checkpoint}  ({result['model']})"),
            *([("head", args.head)] if args.head != "average" else []),
            ("data", f"{dataset} {args.split}"),
        ]
        print(format_eval(result, header))
    return 0


def _size(v: object) -> int | None:
    if isinstance(v, (list, tuple)) and v:
        return int(v[0])
    return int(v) if isinstance(v, int) else None
