"""`wae recipes`: the recipes that ship with wae (``wae.train.recipes``), by name, or one
recipe's TOML text to copy and edit."""

from __future__ import annotations

import argparse

from . import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "recipes",
        help="list the packaged training recipes (or print one)",
        description="List the training recipes installed with wae. `wae train -c NAME` (and "
        "`wae reproduce`) take these names as well as the path of a TOML file; `wae recipes "
        "NAME` prints a recipe's text, a starting point for your own.",
        examples=[
            "wae recipes",
            "wae recipes fashion_mnist > my_recipe.toml   # copy one, edit it",
            "wae train -c my_recipe.toml -o runs/mine",
        ],
    )
    p.add_argument(
        "name",
        nargs="?",
        default=None,
        help="print this recipe's TOML text (default: list them all)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train.recipes import list_recipes, recipe_text

    if args.name is not None:
        print(recipe_text(args.name), end="")
        return 0
    recipes = list_recipes()
    width = max(map(len, recipes), default=0)
    for name, description in recipes.items():
        print(f"{name.ljust(width)}  {description}".rstrip())
    return 0
