"""What a user touches first: `wae --version`, `wae models`, `wae recipes`, recipes by name,
the shape of every `--help`, output file permissions, and no spurious CUDA warning."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import wae
from wae.checkpoint import atomic_write_json, save_checkpoint
from wae.cli import CommandHelpFormatter, add_command, build_parser, main
from wae.train.recipes import list_recipes

ROOT = Path(__file__).resolve().parents[1]
# The subcommands whose --help this test holds to the shared layout (defaults + examples).
HELP_CHECKED = [
    "demo",
    "accelerate",
    "train",
    "eval",
    "export",
    "models",
    "recipes",
    "bench",
    "profile",
    "reproduce",
]


def test_version_is_defined_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"wae {wae.__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "wae._version.__version__"
    }


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == wae.list_models()
    row = next(ln for ln in lines if ln.startswith("wae_small_vgg_28 "))
    assert "1x28x28" in row and row.split()[-1] == "10"
    assert main(["models", "wae_*", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == wae.list_models("wae_*") and doc["wae_vgg16"]["input_size"] == 224


def test_recipes_lists_and_prints_the_packaged_recipes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name, description in list_recipes().items():
        assert any(ln.split()[0] == name and description in ln for ln in out.splitlines())
    assert main(["recipes", "fashion_mnist"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["name"] == "fashion_mnist"
    assert main(["recipes", "no_such_recipe"]) == 2
    assert "No recipe named 'no_such_recipe'" in capsys.readouterr().err


def test_train_takes_a_recipe_name_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here
    argv = ["train", "-c", "fashion_mnist", "--print-config", "--set", "data.subset=600"]
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["name"] == "fashion_mnist" and cfg["data"]["subset"] == 600
    assert main(["train", "-c", "nope/missing.toml", "--print-config"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


# One option of every HELP_CHECKED command and the default its help must state: appended by
# CommandHelpFormatter from the parser's default, or written in the help where it is a rule.
STATED_DEFAULTS = {
    "demo": ("--latency-batch", "(default: 256)"),
    "accelerate": ("--encoder", "(default: paper)"),
    "train": ("--output", "(default: runs/<recipe name>)"),
    "eval": ("--split", "(default: test)"),
    "export": ("--opset", "(default: 17)"),
    "models": ("pattern", "(default: *)"),
    "recipes": ("name", "(default: list them all)"),
    "bench": ("--output-dir", "(default: runs/bench)"),
    "profile": ("--backbone", "(default: vgg16)"),
    "reproduce": ("--budget-minutes", "(default: 50)"),
}


def _option_help(parser: argparse.ArgumentParser, option: str) -> str:
    """The formatted help entry of one option (or positional), whitespace collapsed."""
    action = next(a for a in parser._actions if option in a.option_strings or a.dest == option)
    return " ".join(parser._get_formatter()._format_action(action).split())


def test_stated_defaults_cover_every_checked_command() -> None:
    assert sorted(STATED_DEFAULTS) == sorted(HELP_CHECKED)


@pytest.mark.parametrize("name", HELP_CHECKED)
def test_help_shows_defaults_and_examples(name: str) -> None:
    parser = _subparser(name)
    text = parser.format_help()
    assert "examples:\n  wae " in text or "examples:\n  torchrun " in text
    option, stated = STATED_DEFAULTS[name]
    assert stated in _option_help(parser, option)


def test_help_states_the_parsers_real_defaults() -> None:
    """Defaults written by hand in the help agree with the parser's; the appended ones name
    the value the parser really uses."""
    repro = _subparser("reproduce")
    assert repro.get_default("budget_minutes") == 50 and repro.get_default("threads") == 1
    assert "(default: 1;" in _option_help(repro, "--threads")
    ev = _subparser("eval")
    assert _option_help(ev, "--batch-size").endswith(f"(default: {ev.get_default('batch_size')})")
    # A flag and an unset option state no default (no "(default: False/None)" noise).
    assert "default" not in _option_help(_subparser("train"), "--resume")
    assert "(default: None)" not in _subparser("eval").format_help()


def test_help_formatter() -> None:
    parser = argparse.ArgumentParser(prog="wae")
    sub = parser.add_subparsers()
    p = add_command(
        sub,
        "x",
        help="h",
        description="one long line of prose " * 8,
        examples=["wae x --n 3   # three"],
        epilog="notes:\n  - kept as written",
    )
    p.add_argument("--n", type=int, default=2, help="how many")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--opt", default=None, help="unset by default")
    p.add_argument("--said", default=5, help="(default: five)")
    assert isinstance(p.formatter_class(prog="x"), CommandHelpFormatter)
    text = p.format_help()
    assert "how many (default: 2)" in text and "(default: five)" in text
    assert "a flag\n" in text and "unset by default\n" in text  # no "(default: None/False)"
    assert "examples:\n  wae x --n 3   # three\n" in text and "notes:\n  - kept as written" in text
    assert max(len(ln) for ln in text.split("options:")[0].splitlines()) <= 100  # re-wrapped


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_output_files_get_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        ck = save_checkpoint(tmp_path / "ck", wae.create_model("small_vgg_28_full", width=4))
        ordinary = tmp_path / "ordinary"
        ordinary.write_text("x")  # what open() gives under this umask
    finally:
        os.umask(old)
    want = stat.S_IMODE(ordinary.stat().st_mode)
    assert want == 0o666 & ~umask
    for f in (tmp_path / "r.json", ck / "model.json", ck / "model.safetensors"):
        assert stat.S_IMODE(f.stat().st_mode) == want, f
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left behind


def test_no_cuda_runtime_warning_is_dropped(tmp_path: Path) -> None:
    """torch.utils.cpp_extension warns "No CUDA runtime is found" on import where a CUDA
    toolkit exists but no GPU; the `wae` command drops that one line, nothing else."""
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    probe = "import torch.utils.cpp_extension, logging; " + (
        "logging.getLogger('torch.utils.cpp_extension').warning('another warning')"
    )

    def stderr(code: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        return run.stderr

    if "No CUDA runtime" not in stderr(probe):
        pytest.skip("this torch does not print the warning here")
    err = stderr(f"from wae.cli import main; main(['models']); {probe}")
    assert "No CUDA runtime" not in err and "another warning" in err
