"""The layers point one way: core <- services <- apps <- the package root <- cli.

Read with `ast`, so nothing is imported: every import of a `wae` module in src/wae counts,
relative or absolute, at module level or inside a function (a lazy import is still a
dependency). Units are the top-level names under `wae` (`wae.models.wae_net` is `models`);
docs/architecture.md draws the layers this checks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "wae"
ROOT = "__init__"  # the unit of the package root, wae/__init__.py (the public facade)

# Lowest first; a unit may import its own layer and those below it, never one above.
LAYERS: dict[str, frozenset[str]] = {
    # Models, data and the pieces they are built from: no training, measuring or apps.
    "core": frozenset(
        {
            "_version",
            "autoencoder",
            "checkpoint",
            "data",
            "distill",
            "encoders",
            "errors",
            "host",
            "macs",
            "models",
            "pretrained",
            "stats",
            "wavelet",
        }
    ),
    # One verb each over the core: train, measure, export, run, quantize.
    "services": frozenset(
        {
            "cost",
            "export",
            "figures",
            "openvino_rt",
            "optimize",
            "outputs",
            "precision",
            "progress",
            "quantize",
            "runlock",
            "runtime",
            "scorers",
            "train",
        }
    ),
    # The apps count in both places: wae/apps/ and where they lived before it (wae/demo.py...).
    "apps": frozenset(
        {
            "apps",
            "accelerate",
            "accelerate_report",
            "bench",
            "demo",
            "export_checkpoint",
            "reproduce",
        }
    ),
    # `import wae`: the Python API, re-exporting entry points of the core, the services and the
    # apps (wae.accelerate); only the CLI sits above it, so no library module imports from it.
    "facade": frozenset({ROOT}),
    "cli": frozenset({"cli", "__main__"}),
}

# (importing module, imported unit) -> why it may point up for now. Each entry must still be
# needed (test_the_allow_list_is_not_stale), so a fixed one is removed, not forgotten.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

# No import cycle may pass through these (they import each other's layers most).
ACYCLIC = ("models", "cost", "runtime", "export", ROOT)


# --- reading the imports ----------------------------------------------------------------------


def _module_names() -> dict[str, bool]:
    """Every module of the package: dotted name -> whether it is a package (__init__.py)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = is_pkg
    return out


def imports_of(source: str, module: str, is_pkg: bool, known: Mapping[str, bool]) -> set[str]:
    """The `wae` modules that `source` (the module `module`) imports, anywhere in it.

    ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            for a in node.names:
                out.add(f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in known else pkg)
    return {m for m in out if m == "wae" or m.startswith("wae.")}


def unit(module: str) -> str:
    """The top-level name a module belongs to: wae.models.wae_net -> models; wae -> ROOT."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _layer_of() -> dict[str, int]:
    return {u: i for i, members in enumerate(LAYERS.values()) for u in members}


def _edges() -> Iterator[tuple[str, str]]:
    """(importing module, imported module) for every import of the package."""
    known = _module_names()
    for module, is_pkg in known.items():
        rel = Path(*module.split(".")[1:])
        path = SRC / rel / "__init__.py" if is_pkg else SRC / rel.with_suffix(".py")
        for target in imports_of(path.read_text(encoding="utf-8"), module, is_pkg, known):
            yield module, target


# --- the rules ----------------------------------------------------------------------------------


def test_every_unit_has_a_layer() -> None:
    layer = _layer_of()
    missing = sorted({unit(m) for m in _module_names()} - set(layer))
    assert not missing, f"units in no layer of LAYERS (assign them): {missing}"


def test_no_layer_imports_a_higher_one() -> None:
    layer, names = _layer_of(), list(LAYERS)
    up = []
    for src, dst in _edges():
        s, d = unit(src), unit(dst)
        if layer[d] > layer[s] and (src, d) not in ALLOWED_UPWARD:
            up.append(f"{src} ({names[layer[s]]}) imports {dst} ({names[layer[d]]})")
    assert not up, "imports pointing up:\n" + "\n".join(sorted(up))


def test_the_allow_list_is_not_stale() -> None:
    edges = {(src, unit(dst)) for src, dst in _edges()}
    stale = [f"{src} -> {dst}" for src, dst in ALLOWED_UPWARD if (src, dst) not in edges]
    assert not stale, "ALLOWED_UPWARD entries no longer needed (remove them):\n" + "\n".join(stale)


def test_only_the_cli_imports_the_cli() -> None:
    bad = sorted(
        f"{src} imports {dst}"
        for src, dst in _edges()
        if unit(dst) == "cli" and unit(src) not in LAYERS["cli"]
    )
    assert not bad, "modules outside wae.cli and wae.__main__ import the CLI:\n" + "\n".join(bad)


def _cycle_through(start: str, graph: Mapping[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start in `graph` (unit -> the units it imports), or None."""
    parent: dict[str, str] = {}
    stack = [start]
    while stack:
        node = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if nxt not in parent:
                parent[nxt] = node
                stack.append(nxt)
    return None


def test_no_cycle_through_models_cost_runtime_export_or_the_root() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst in _edges():
        if unit(src) != unit(dst):
            graph.setdefault(unit(src), set()).add(unit(dst))
    cycles = {u: c for u in ACYCLIC if (c := _cycle_through(u, graph))}
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles.values())


# --- the reader itself --------------------------------------------------------------------------


def test_the_reader_sees_every_kind_of_import() -> None:
    known = {"wae": True, "wae.cost": True, "wae.cost.ops": False, "wae.models": True}
    source = (
        "import torch\n"
        "import wae.cost\n"
        "from .. import cost\n"  # a submodule, named by `from pkg import`
        "from .. import __version__\n"  # a name of the package root
        "from . import ops\n"
        "def f():\n"
        "    from ..models import WAENet\n"  # inside a function
    )
    got = imports_of(source, "wae.cost.baselines", False, known)
    assert got == {"wae.cost", "wae", "wae.cost.ops", "wae.models"}
    assert imports_of("from .ops import x\n", "wae.cost", True, known) == {"wae.cost.ops"}
    assert (unit("wae"), unit("wae.apps.bench.report"), unit("wae.models")) == (
        ROOT,
        "apps",
        "models",
    )


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle_through("a", graph) == ["a", "b", "c", "a"]
    assert _cycle_through("d", graph) is None
