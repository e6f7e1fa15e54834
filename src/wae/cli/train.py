"""`wae train`: run a recipe's stages (all, or one with --stage), resumable, on 1..N processes.
The work is `wae.train.run_training`; this module parses, calls it and prints."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

from . import add_command, add_set_argument

_EXAMPLES = [
    "wae train -c fashion_mnist -o runs/fm            # a packaged recipe (wae recipes)",
    "wae train -c my_recipe.toml -o runs/mine         # or a TOML file",
    "wae train -c fashion_mnist -o runs/fm --set stages.2.lr=0.02 data.subset=20000",
    "wae train -c fashion_mnist -o runs/fm --resume",
    "wae train -c runs/fm/config.json -o runs/fm --resume  # continue with the run's own config",
    "torchrun --nproc_per_node 4 -m wae train -c imagenet_vgg16 -o runs/vgg",
]
_EPILOG = """\
overrides: --set KEY=VALUE [KEY=VALUE ...]; KEY is a dotted path, stages by number (1-based)
or name: stages.2.lr=0.01, stages.classifier.epochs=5, data.subset=20000,
model.kwargs.width=8, stages.1.schedule.name=step, eval.noise_vars=[0.01,0.05].
VALUE is a TOML value; a bare word is a string; none/null unsets an optional key.

output directory: a run refuses to write into a directory holding another run unless
--resume (same config: continue from the newest checkpoint; `-c OUT/config.json` resumes
with the run's own config, --set values included) or --overwrite (the files it replaces are
moved to OUT/replaced-<time>/, nothing is deleted). Running the stages one at a time (--stage
1, then --stage 2, ...) into the same directory needs neither. A directory being written by
another command (its lock OUT/.wae.lock is held) is refused, naming that command.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "train",
        help="train a model through a recipe's stages",
        description="Train a WAE model (or a plain baseline) through the stages of a TOML "
        "recipe. Launch with torchrun for several processes/GPUs.",
        examples=_EXAMPLES,
        epilog=_EPILOG,
    )
    p.add_argument(
        "-c",
        "--config",
        required=True,
        metavar="RECIPE",
        help="a packaged recipe's name (`wae recipes` lists them), a TOML file's path, or a "
        "run's OUT/config.json",
    )
    p.add_argument(
        "-o", "--output", default=None, help="output directory (default: runs/<recipe name>)"
    )
    add_set_argument(p, help="override config values (see below)")
    p.add_argument(
        "--stage",
        type=int,
        default=None,
        help="run only this stage (1-based; default: all, in order)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in the output dir")
    g.add_argument(
        "--overwrite", action="store_true", help="replace the run there (old files moved aside)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="shortcut for --set data.data_dir=DIR (default: the recipe's)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="shortcut for --set runtime.device=DEV (default: the recipe's)",
    )
    p.add_argument(
        "--max-epochs-this-run",
        type=int,
        default=None,
        help="stop (resumably) after this many epochs; continue later with --resume",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config (JSON) and exit"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train import config_to_dict, load_config, run_training
    from ..train.overrides import format_override

    overrides = list(args.overrides)
    for key, value in (
        ("data.data_dir", args.data_dir),
        ("runtime.device", args.device),
        ("runtime.max_epochs_this_run", args.max_epochs_this_run),
    ):
        if value is not None:
            overrides.append(format_override(key, value))
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    output = args.output or f"runs/{cfg.name or 'run'}"
    result = run_training(
        cfg, output, resume=args.resume, overwrite=args.overwrite, stages=args.stage
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    if args.json:
        print(json.dumps(result, indent=2))
    elif result.get("complete") and result.get("final_checkpoint"):
        from ..train.setup import recipe_code

        allow = "".join(f" --allow-code {name}" for name in recipe_code(cfg))
        print(
            f"done: {result['final_checkpoint']}  (evaluate: wae eval --checkpoint "
            f"{result['final_checkpoint']}{allow})"
        )
    elif result.get("stopped"):
        # The run's own config.json holds every --set value: no override to repeat.
        saved = shlex.quote(str(Path(output) / "config.json"))
        print(f"stopped; continue with: wae train -c {saved} -o {shlex.quote(output)} --resume")
    return 0
