"""`wae models`: the registered model names (what ``wae.list_models()`` returns), with the input
size, channels and classes each was registered for."""

from __future__ import annotations

import argparse
import json

from . import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "models",
        help="list the registered models",
        description="List the models `create_model(name)`, `wae export --model` and the "
        "recipes' model.name accept: WAE models (wae_*), their full- and half-resolution "
        "baselines (*_full, *_half), with the input and classes each is built for by default.",
        examples=[
            "wae models",
            "wae models 'wae_*'                       # a shell-style pattern",
            "wae models --json",
        ],
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern")
    p.add_argument("--json", action="store_true", help="print one JSON object: name -> cfg")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import WAEError
    from ..models import list_models, model_cfg

    cfgs = {name: model_cfg(name) for name in list_models(args.pattern)}
    if not cfgs:
        raise WAEError(
            f"No registered model matches {args.pattern!r}. `wae models` lists all of them; "
            f"a pattern may use * and ? (e.g. 'wae_*')."
        )
    if args.json:
        print(json.dumps(cfgs, indent=2))
        return 0
    rows = [("model", "kind", "backbone", "input", "classes")]
    for name, c in cfgs.items():
        size = c.get("input_size")
        shape = f"{c['in_chans']}x{size}x{size}" if size and c.get("in_chans") else "-"
        rows.append(
            (name, c.get("kind", "-"), c.get("backbone", "-"), shape, c.get("num_classes", "-"))
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0
