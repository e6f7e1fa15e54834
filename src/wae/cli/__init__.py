"""The `wae` command. Each subcommand is a module in this package exposing
`add_parser(subparsers)` and `run(args) -> int`; `main` wires them up and turns the library's
user-facing errors (WAEError) into a one-paragraph message and exit code 2.

A subcommand builds its parser with :func:`add_command`, so every ``--help`` has the same
shape: a description, the options with their defaults, then examples.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import textwrap
from collections.abc import Sequence

from .. import __version__

# Subcommand modules, in the order `wae --help` lists them.
_COMMANDS = [
    "demo",
    "accelerate",
    "train",
    "eval",
    "profile",
    "export",
    "bench",
    "reproduce",
    "models",
    "recipes",
]

_EXAMPLES = """\
examples:
  wae demo                                  # the main job: WAE vs full resolution, one table
  wae accelerate --checkpoint runs/fm-full/final -o runs/fast   # your trained CNN, ~3x cheaper
  wae train -c fashion_mnist -o runs/fm     # a packaged recipe by name (see `wae recipes`)
  wae eval --checkpoint runs/fm/final --noise-var 0.01 0.05
  wae profile --backbone resnet50
  wae COMMAND --help                        # each command's options, defaults and examples
"""


class CommandHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default and keeps examples as written.

    Defaults: appended as "(default: X)" unless the help already says one, or the default is
    None/False/empty (a flag or "not set", which would only add noise). Description and epilog:
    a paragraph with an indented line (an example block, a list) is kept verbatim; any other
    paragraph is prose and is re-wrapped to the terminal width, as argparse does by default.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or d is None
            or d is False
            or d is argparse.SUPPRESS
            or (isinstance(d, (list, tuple)) and not d)
        ):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r"\n[ \t]*\n", text.strip("\n"))
        out = []
        for para in paragraphs:
            lines = para.splitlines()
            if any(ln[:1].isspace() for ln in lines):
                out.append("\n".join(indent + ln for ln in lines))
            else:
                prose = " ".join(ln.strip() for ln in lines)
                out.append(
                    textwrap.fill(prose, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(out)


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    description: str,
    examples: Sequence[str] = (),
    epilog: str = "",
) -> argparse.ArgumentParser:
    """Add subcommand `name` with the shared help layout: `description`, the options (with
    their defaults), an "examples:" block (one command line per item; a trailing "# ..."
    comment is kept) and then `epilog` (notes, prose). Returns the subparser to fill."""
    parts = []
    if examples:
        parts.append("examples:\n" + "\n".join(f"  {e}" for e in examples))
    if epilog:
        parts.append(epilog.strip("\n"))
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="\n\n".join(parts) or None,
        formatter_class=CommandHelpFormatter,
    )


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


def add_allow_code_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--allow-code NAME [NAME ...]`` into ``args.allow_code``: the user's own backbone
    factories a checkpoint may be rebuilt with (a checkpoint never imports code by itself)."""
    p.add_argument(
        "--allow-code",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="let the checkpoint build its network with your own function 'pkg.module:function' "
        "(exactly this name; a checkpoint never imports code by itself)",
    )


def add_encoder_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--encoder NAME`` into ``args.encoder``: the WAE's encoder by name, checked by the
    library (wae.encoders) before any work, so an unknown name is a one-paragraph error."""
    from ..encoders import DEFAULT_ENCODER, ENCODERS

    p.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        metavar="NAME",
        help="the WAE's encoder by name; "
        + "; ".join(f"{name}: {cls.summary}" for name, cls in ENCODERS.items()),
    )


def add_backends_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--backends NAME [NAME ...]`` into ``args.backends`` (None: the library's default):
    what `wae demo`, `wae accelerate` and `wae reproduce` time besides eager PyTorch for their
    fastest-backend columns; the names are checked again by wae.cost.resolve_backends."""
    from ..cost import ALL_BACKENDS, DEPLOY_BACKENDS, QUICK_DEPLOY_BACKENDS

    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=list(ALL_BACKENDS),
        metavar="NAME",
        help="backends timed besides eager PyTorch for the fastest-backend columns, from "
        f"{', '.join(ALL_BACKENDS)}; `--backends eager` times eager only (default: "
        f"{' '.join(DEPLOY_BACKENDS)}; with --quick: {' '.join(QUICK_DEPLOY_BACKENDS)})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wae",
        description="Wavelet-like Auto-Encoder: make CNN classifiers cheaper at inference.",
        epilog=_EXAMPLES,
        formatter_class=CommandHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


class _DropNoCudaRuntime(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." warning only.

    torch.utils.cpp_extension logs it when imported on a machine with a CUDA toolkit but no
    GPU; torch.utils.benchmark (the timers of `wae profile`, `wae bench`, ...) imports it. wae
    builds no C++ extension, so the line only alarms; every other record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


def _quiet_torch() -> None:
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _DropNoCudaRuntime) for f in logger.filters):
        logger.addFilter(_DropNoCudaRuntime())


def main(argv: list[str] | None = None) -> int:
    from ..errors import WAEError

    _quiet_torch()
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
