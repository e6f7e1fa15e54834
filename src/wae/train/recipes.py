"""Recipes that ship inside the package, addressable by name (``wae train -c fashion_mnist``).

They are package data (``wae/recipes/*.toml``), read through ``importlib.resources`` so an
ordinary (non-editable) install has them too.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .config import ConfigError

__all__ = ["list_recipes", "recipe_text", "resolve_recipe"]


def _folder() -> resources.abc.Traversable:
    return resources.files("wae") / "recipes"


def list_recipes() -> dict[str, str]:
    """Packaged recipe name -> its first comment line (a one-line description)."""
    out = {}
    for f in sorted(_folder().iterdir(), key=lambda f: f.name):
        if f.name.endswith(".toml"):
            out[f.name[: -len(".toml")]] = _first_sentence(f.read_text())
    return out


def _first_sentence(text: str) -> str:
    """The first sentence of a recipe's leading comment paragraph."""
    words: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        words.append(line.lstrip("# ").strip())
    para = " ".join(words)
    end = para.find(". ")
    return para if end < 0 else para[: end + 1]


def recipe_text(name: str) -> str:
    """The TOML text of the packaged recipe `name` (with or without ``.toml``)."""
    stem = name[: -len(".toml")] if name.endswith(".toml") else name
    f = _folder() / f"{stem}.toml"
    if not f.is_file():
        raise ConfigError(
            f"No recipe named {name!r}: not a file, and not one of the packaged recipes "
            f"({', '.join(list_recipes())}). Pass a recipe name (`wae recipes` lists them) or "
            f"the path of a TOML file."
        )
    return f.read_text()


def resolve_recipe(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(TOML text, name) of a recipe given as a file path or a packaged recipe's name."""
    path = Path(source).expanduser()
    bare = os.sep not in str(source) and "/" not in str(source)
    if path.is_file():
        try:
            return path.read_text(), path.stem
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"Cannot read the recipe {path}: {e}.") from e
    if bare and path.stem in list_recipes():  # a packaged name, even beside a same-named dir
        return recipe_text(str(source)), path.stem
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory, not a recipe. Pass a TOML file or a packaged recipe name "
            f"(`wae recipes` lists them)."
        )
    if not bare:
        raise ConfigError(
            f"Config file {path} does not exist. Pass the path of a TOML recipe, or a packaged "
            f"recipe's name (`wae recipes` lists them, e.g. fashion_mnist)."
        )
    return recipe_text(str(source)), path.stem
