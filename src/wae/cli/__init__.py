"""The `wae` command. Each subcommand is a module in this package exposing
`add_parser(subparsers)` and `run(args) -> int`; `main` wires them up and turns the library's
user-facing errors (WAEError) into a one-paragraph message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order `wae --help` lists them.
_COMMANDS = ["demo", "train", "eval", "profile", "export", "bench", "reproduce"]


def add_set_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]`` into ``args.overrides`` (repeatable): the config
    overrides every training command takes, parsed by ``wae.train.config.load_config``."""
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wae",
        description="Wavelet-like Auto-Encoder: make CNN classifiers cheaper at inference.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import WAEError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except WAEError as e:
        print(f"wae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
