"""``KEY=VALUE`` overrides of a config (``--set`` on the command line, ``overrides=`` in Python).

KEY is a dotted path; stages are addressed by number (1-based) or name: ``stages.2.lr=0.01``,
``stages.classifier.epochs=5``. VALUE is read as a TOML value; a bare word that is not TOML is
taken as a string; ``none`` / ``null`` resets an optional key (see :mod:`wae.train.config`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from .schema import ConfigError, StageConfig, TrainConfig, field_types, unknown_key

__all__ = ["apply_overrides", "format_override", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"stages.2.lr=0.01"`` -> ``(["stages", "2", "lr"], 0.01)`` (see the module docstring)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"Cannot read the override {text!r}: write KEY=VALUE with a dotted KEY, e.g. "
            f"--set stages.2.lr=0.01 data.subset=20000."
        )
    if raw.lower() in ("none", "null"):
        return key.split("."), None
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string (optimizer=adam, dataset=/data/imagenet)
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                pass
    return key.split("."), value


def format_override(key: str, value: Any) -> str:
    """``KEY=VALUE`` that :func:`parse_override` reads back as exactly `value`: the one way a
    command-line flag (``--data-dir``, ``--device``, ...) becomes a config override. A string
    is written as a quoted TOML string, so ``--data-dir 2024`` stays the folder "2024" (not the
    integer 2024) and ``--data-dir none`` the folder "none"; None is ``none`` (unset)."""
    return f"{key}={'none' if value is None else _toml_value(value)}"


def _toml_value(value: Any) -> str:
    """A TOML literal of a string, bool, int, float or list of these."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if not isinstance(value, str):
        raise TypeError(f"Cannot write {type(value).__name__} {value!r} as a config override.")
    # A TOML basic string: quote and backslash escaped, every control character as \uXXXX.
    body = "".join(
        "\\" + ch if ch in '"\\' else f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch
        for ch in value
    )
    return f'"{body}"'


def _stage_index(stages: list[Any], token: str, text: str) -> int:
    """A 1-based stage number or a stage name -> list index."""
    if token.isdigit():
        i = int(token)
        if 1 <= i <= len(stages):
            return i - 1
    else:
        for i, s in enumerate(stages):
            if isinstance(s, Mapping) and s.get("name") == token:
                return i
    names = [s.get("name", "") for s in stages if isinstance(s, Mapping)]
    raise ConfigError(
        f"The override {text!r} names stage {token!r}, but the config has stages "
        f"1..{len(stages)}"
        + (f" (named {', '.join(n for n in names if n)})" if any(names) else "")
        + ". Stages are addressed by number or name: stages.2.lr=0.01."
    )


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to the raw (pre-validation) config dict, in place.

    Keys are checked against the schema as they are walked, so a typo fails here, naming the
    key, the override and the valid keys. Values are type-checked later, with the rest.
    """
    for text in overrides:
        path, value = parse_override(text)
        _set_path(raw, path, value, text)
    return raw


def _set_path(raw: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    origin = f" (from the override {text!r})"
    node: dict[str, Any] = raw
    cls: type | None = TrainConfig  # None inside a free-form table (model.kwargs, losses)
    walked: list[str] = []
    i = 0
    while i < len(path):
        part = path[i]
        if cls is not None and part not in field_types(cls):
            raise unknown_key(".".join(walked), part, cls, origin)
        tp = field_types(cls)[part] if cls is not None else None
        walked.append(part)
        if i == len(path) - 1:
            node[part] = value
            return
        if cls is TrainConfig and part == "stages":
            stages = node.get("stages")
            stages = stages if isinstance(stages, list) else []
            idx = _stage_index(stages, path[i + 1], text)
            if i + 2 >= len(path):
                raise ConfigError(
                    f"The override {text!r} must name a key of the stage, e.g. "
                    f"stages.{path[i + 1]}.lr=0.01."
                )
            node, cls = stages[idx], StageConfig
            walked.append(path[i + 1])
            i += 2
            continue
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(walked)}{origin} is not a table.")
        node = nxt
        cls = tp if dataclasses.is_dataclass(tp) else None
        i += 1
