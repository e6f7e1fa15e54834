"""Training configuration: TOML file -> validated dataclasses -> constructors, in one direction.

A recipe is a TOML file (read with the standard library's ``tomllib``) with the tables below;
every key is optional except ``[[stages]]``. Unknown keys are errors, never ignored::

    name = "fashion_mnist"      # a label (not part of the fingerprint)
    seed = 0

    [model]
    name = "wae_small_vgg_28"   # any wae.create_model name (WAE nets and plain baselines)
    kwargs = { width = 32 }     # extra builder arguments
    # init = "runs/x/stage1"    # start from this checkpoint's weights (same architecture)

    [data]
    dataset = "fashion-mnist"   # or "cifar10", "cifar100", or an ImageFolder path
    # data_dir = "..."          # where it lives (default: the data layer's locations)
    # subset = 20000            # class-balanced training subset
    val_fraction = 0.1          # hold out 10 % of train for validation (0: use the val split)

    [eval]                      # the evaluation after the last stage
    split = "test"              # "" skips it
    noise_vars = [0.01, 0.02, 0.05, 0.1]

    [runtime]                   # how and where it runs; not part of the fingerprint
    device = "auto"
    amp = false

    [[stages]]                  # one table per stage, in order
    name = "wae"
    epochs = 3
    batch_size = 128
    optimizer = "adam"          # sgd | adam | adamw
    lr = 1e-3
    losses = { transform = 1.0 }            # transform and/or classification, with weights
    reduction = "sum"                        # of the transform loss ("sum": the paper's norms)
    schedule = { name = "cosine", warmup_epochs = 0 }

    [[stages]]
    name = "classifier"
    freeze = ["wae"]            # module-name prefixes that do not train
    calibrate_norms = true      # re-estimate FixedNorm statistics at the start of the stage
    losses = { classification = 1.0 }
    ...

Overrides (``--set`` on the command line, ``overrides=`` in Python) are ``KEY=VALUE`` strings.
KEY is a dotted path; stages are addressed by number (1-based) or name:
``stages.2.lr=0.01``, ``stages.classifier.epochs=5``, ``data.subset=20000``,
``model.kwargs.width=8``, ``stages.1.schedule.name=step``. VALUE is read as a TOML value
(``0.01``, ``true``, ``[0.01, 0.02]``, ``{transform = 1.0}``, ``"text"``); a bare word that is
not TOML is taken as a string (``optimizer=adam``, ``data.dataset=/data/imagenet``);
``none`` or ``null`` resets an optional key to its default of "unset".

The resolved config (defaults filled in, ``auto`` values decided) is what gets saved: as
``config.json`` beside the results and inside every checkpoint's ``model.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from ..errors import WAEError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LOSS_NAMES",
    "ModelConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "fingerprint",
    "load_config",
    "parse_override",
    "stage_fingerprint",
]

LOSS_NAMES = ("classification", "transform")
# Keys that do not change what a run computes (or are allowed to move): left out of the
# fingerprint that --resume and stage hand-over compare.
_NOT_FINGERPRINTED = ("name", "runtime", "data.data_dir")


class ConfigError(WAEError, ValueError):
    """A config that cannot be used: unknown key, wrong type, impossible value."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which network: a registered name (``wae.list_models()``) and extra builder arguments.

    ``num_classes``, ``in_chans`` and ``input_size`` are not set here: they come from the data.
    """

    name: str = "wae_small_vgg_28"
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # checkpoint dir whose weights initialise the first stage run


@dataclass
class DataConfig:
    """The training/validation data (see ``wae.data.build_dataset``)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    input_size: int | None = None  # default: the model's registered input size
    in_chans: int | None = None  # default: the model's registered channel count
    subset: int | None = None  # class-balanced training subset of this many images
    val_fraction: float = 0.0  # > 0: hold out this fraction of train as the validation set
    val_split: str = "val"  # used when val_fraction == 0 ("val" is the test set for FMNIST)
    val_subset: int | None = None  # validate on a class-balanced subset
    augment: bool = True
    skip_bad: bool = False
    download: bool = False


@dataclass
class EvalConfig:
    """The evaluation run after the last stage (written to results.json)."""

    split: str = "test"  # "" skips it
    subset: int | None = None
    noise_vars: list[float] = field(default_factory=list)
    batch_size: int = 256  # also used for the per-epoch validation


@dataclass
class RuntimeConfig:
    """How and where the run executes. Not part of the fingerprint, so it may change between a
    run and its resume; note that num_workers, amp and the number of processes change the
    random draws or the arithmetic, so exact reproduction needs the same values."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = False  # mixed precision on CUDA (ignored elsewhere, with a note)
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    deterministic: bool = False  # torch.use_deterministic_algorithms + no cudnn autotuning
    threads: int | None = None  # torch intra-op threads (default: torch's)
    # NHWC weights and batches: oneDNN's fast path on CPU (1.2-1.3x faster training of the
    # demo's nets on this machine) and tensor cores' on CUDA. Changes the arithmetic slightly.
    channels_last: bool = True
    num_workers: int = 0  # data-loading processes per training process
    progress: Literal["auto", "on", "off"] = "auto"  # tqdm bars (auto: TTY and not CI)
    verbose: bool = True  # one summary line per epoch (rank 0)
    tensorboard: bool = False  # also log to OUT/tb when tensorboard is installed
    keep_checkpoints: int = 1  # per-epoch checkpoints kept (the newest ones)
    max_epochs_this_run: int | None = None  # stop (resumably) after this many epochs


@dataclass
class ScheduleConfig:
    """Learning-rate schedule of a stage.

    constant; step (x ``gamma`` every ``step_size`` epochs, or at each of ``milestones``);
    cosine (to ``min_lr`` at the end of the stage, per step); plateau (x ``gamma`` when the
    stage's monitor has not improved by ``threshold`` (relative) for ``patience`` epochs).
    An optional linear warm-up from ``warmup_start`` x lr over ``warmup_epochs`` comes first.
    """

    name: Literal["constant", "step", "cosine", "plateau"] = "constant"
    step_size: int = 10
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    patience: int = 2
    threshold: float = 1e-4
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_start: float = 0.1


@dataclass
class StageConfig:
    """One training stage: what trains, on which losses, with which optimiser and schedule."""

    name: str = ""
    epochs: int = 1
    batch_size: int = 64  # global: split evenly over the processes
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam/adamw
    weight_decay: float = 5e-4
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    freeze: list[str] = field(default_factory=list)  # module-name prefixes kept fixed
    losses: dict[str, float] = field(default_factory=lambda: {"classification": 1.0})
    lam: float = 1.0  # weight of ||I_H||^2 inside the transform loss
    reduction: Literal["mean", "sum"] = "mean"  # of the transform loss
    label_smoothing: float = 0.0
    calibrate_norms: bool = False  # re-estimate FixedNorm statistics before the first epoch
    calibrate_batches: int | None = None  # limit the calibration pass (None: whole train set)
    grad_clip: float | None = None  # max global gradient norm
    monitor: Literal["auto", "val_top1", "val_loss", "train_loss"] = "auto"
    early_stop_patience: int = 0  # > 0: end the stage after this many epochs w/o improvement

    @property
    def classify(self) -> bool:
        """Whether the classifier runs (a transform-only stage trains the WAE alone)."""
        return self.losses.get("classification", 0.0) > 0

    @property
    def decode(self) -> bool:
        """Whether the decoder runs (only the transform loss needs the reconstruction)."""
        return self.losses.get("transform", 0.0) > 0


@dataclass
class TrainConfig:
    """A whole run: model, data, stages, final evaluation, runtime."""

    name: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    stages: list[StageConfig] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Generic typed conversion of plain data into the dataclasses
# --------------------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_key(path: str, key: str, cls: type, origin: str) -> ConfigError:
    valid = _fields(cls)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"{path}.{key}" if path else key
    level = f"in [{path}]" if path else "at the top level"
    return ConfigError(
        f"Unknown config key {where!r}{origin}.{hint} Valid keys {level}: "
        f"{', '.join(valid)}. See the recipes in recipes/ or `wae train --print-config`."
    )


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, origin: str) -> Any:
    """Check/convert `value` (from TOML or JSON) to the annotated type `tp`."""
    o, args = typing.get_origin(tp), typing.get_args(tp)
    if o in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], path, origin)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}.")
        return _build(tp, value, path, origin)
    if o is Literal:
        if value not in args:
            opts = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{path} must be one of {opts}, got {value!r}.")
        return value
    if o is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}.")
        return [_convert(v, args[0], f"{path}.{i + 1}", origin) for i, v in enumerate(value)]
    if o is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}.")
        return {str(k): _convert(v, args[1], f"{path}.{k}", origin) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}.")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{path} must be finite, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}.")
        return value
    raise TypeError(f"unsupported config type {_type_name(tp)} at {path}")  # a schema bug


def _build(cls: type, raw: Mapping[str, Any], path: str = "", origin: str = "") -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            raise _unknown_key(path, key, cls, origin)
        sub = f"{path}.{key}" if path else key
        kwargs[key] = _convert(value, hints[key], sub, origin)
    return cls(**kwargs)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------------
# Semantic validation (after typing): ranges, combinations, "auto" decisions
# --------------------------------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check ranges and combinations and decide the ``auto`` values, in place; returns cfg.

    What needs the model or the data (does a freeze prefix name a module? does the model have
    a decoder for the transform loss?) is checked when they are built.
    """
    _check(len(cfg.stages) > 0, "The config has no [[stages]]: add at least one stage.")
    _check(bool(cfg.model.name), "model.name is empty: name a model (see wae.list_models()).")
    for key in ("num_classes", "in_chans", "input_size"):
        _check(
            key not in cfg.model.kwargs,
            f"model.kwargs.{key} is not allowed: {key} comes from the data "
            f"({'the dataset' if key == 'num_classes' else 'data.' + key}).",
        )
    d = cfg.data
    _check(
        0.0 <= d.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {d.val_fraction}."
    )
    for k in ("subset", "val_subset", "input_size"):
        v = getattr(d, k)
        _check(v is None or v > 0, f"data.{k} must be positive, got {v}.")
    _check(d.in_chans in (None, 1, 3), f"data.in_chans must be 1 or 3, got {d.in_chans}.")
    _check(cfg.eval.batch_size >= 1, f"eval.batch_size must be >= 1, got {cfg.eval.batch_size}.")
    _check(
        all(v >= 0 for v in cfg.eval.noise_vars),
        f"eval.noise_vars must be variances >= 0, got {cfg.eval.noise_vars}.",
    )
    r = cfg.runtime
    _check(r.num_workers >= 0, f"runtime.num_workers must be >= 0, got {r.num_workers}.")
    _check(r.keep_checkpoints >= 1, "runtime.keep_checkpoints must be >= 1.")
    _check(
        r.max_epochs_this_run is None or r.max_epochs_this_run >= 1,
        "runtime.max_epochs_this_run must be >= 1 (or unset).",
    )
    names = [s.name for s in cfg.stages if s.name]
    _check(
        len(names) == len(set(names)),
        f"Stage names must be unique, got {names}.",
    )
    for i, s in enumerate(cfg.stages, 1):
        _validate_stage(s, f"stages.{i}")
    return cfg


def _validate_stage(s: StageConfig, p: str) -> None:
    _check(not s.name or not s.name.isdigit(), f"{p}.name must not be a number (got {s.name!r}).")
    _check(s.epochs >= 1, f"{p}.epochs must be >= 1, got {s.epochs}.")
    _check(s.batch_size >= 1, f"{p}.batch_size must be >= 1, got {s.batch_size}.")
    _check(s.lr > 0, f"{p}.lr must be > 0, got {s.lr}.")
    _check(s.weight_decay >= 0, f"{p}.weight_decay must be >= 0, got {s.weight_decay}.")
    _check(0 <= s.momentum < 1, f"{p}.momentum must be in [0, 1), got {s.momentum}.")
    _check(
        len(s.betas) == 2 and all(0 <= b < 1 for b in s.betas),
        f"{p}.betas must be two numbers in [0, 1), got {s.betas}.",
    )
    _check(
        not s.nesterov or (s.optimizer == "sgd" and s.momentum > 0),
        f"{p}.nesterov needs optimizer = 'sgd' and momentum > 0.",
    )
    bad = sorted(set(s.losses) - set(LOSS_NAMES))
    _check(
        not bad,
        f"{p}.losses has unknown loss(es) {bad}: the losses are {', '.join(LOSS_NAMES)} "
        f"(e.g. losses = {{ classification = 1.0, transform = 0.001 }}).",
    )
    _check(
        all(w >= 0 for w in s.losses.values()) and any(w > 0 for w in s.losses.values()),
        f"{p}.losses needs at least one positive weight and none negative, got {s.losses}.",
    )
    _check(s.lam >= 0, f"{p}.lam must be >= 0, got {s.lam}.")
    _check(0 <= s.label_smoothing < 1, f"{p}.label_smoothing must be in [0, 1).")
    _check(
        s.calibrate_batches is None or s.calibrate_batches >= 1,
        f"{p}.calibrate_batches must be >= 1 (or unset).",
    )
    _check(s.grad_clip is None or s.grad_clip > 0, f"{p}.grad_clip must be > 0 (or unset).")
    _check(s.early_stop_patience >= 0, f"{p}.early_stop_patience must be >= 0.")
    if s.monitor == "auto":
        s.monitor = "val_top1" if s.classify else "val_loss"
    _check(
        s.classify or s.monitor != "val_top1",
        f"{p}.monitor = 'val_top1' needs the classification loss: a transform-only stage does "
        f"not run the classifier. Use 'val_loss' or 'train_loss'.",
    )
    sc = s.schedule
    _check(sc.gamma > 0, f"{p}.schedule.gamma must be > 0.")
    _check(sc.step_size >= 1, f"{p}.schedule.step_size must be >= 1.")
    _check(all(m >= 1 for m in sc.milestones), f"{p}.schedule.milestones must be epochs >= 1.")
    _check(sc.patience >= 0, f"{p}.schedule.patience must be >= 0.")
    _check(sc.min_lr >= 0, f"{p}.schedule.min_lr must be >= 0.")
    _check(
        0 <= sc.warmup_epochs < s.epochs or sc.warmup_epochs == 0,
        f"{p}.schedule.warmup_epochs must be < {p}.epochs ({s.epochs}), got {sc.warmup_epochs}.",
    )
    _check(0 < sc.warmup_start <= 1, f"{p}.schedule.warmup_start must be in (0, 1].")


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


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
        if cls is not None and part not in _hints(cls):
            raise _unknown_key(".".join(walked), part, cls, origin)
        tp = _hints(cls)[part] if cls is not None else None
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


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def config_from_dict(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), origin: str = ""
) -> TrainConfig:
    """Plain data (a parsed TOML/JSON document) + overrides -> validated TrainConfig."""
    raw = json.loads(json.dumps(raw))  # a deep copy: overrides must not touch the caller's dict
    apply_overrides(raw, overrides)
    return validate(_build(TrainConfig, raw, "", origin))


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | TrainConfig,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """A TOML file path, a dict, or a TrainConfig (+ overrides) -> validated TrainConfig."""
    if isinstance(source, TrainConfig):
        return config_from_dict(config_to_dict(source), overrides)
    if isinstance(source, Mapping):
        return config_from_dict(source, overrides)
    path = Path(source)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} does not exist. Recipes ship in the repository's recipes/ "
            f"folder (e.g. recipes/fashion_mnist.toml)."
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}. Fix the file.") from e
    if not raw.get("name"):
        raw["name"] = path.stem
    return config_from_dict(raw, overrides, origin=f" (in {path})")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as JSON-ready plain data (None for unset optional keys)."""
    return _to_plain(cfg)


def _strip(doc: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for key in keys:
        *parents, leaf = key.split(".")
        node = doc
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return doc


def _hash(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint(cfg: TrainConfig | Mapping[str, Any]) -> str:
    """Hash of everything that decides what a run computes (all but name, runtime, data_dir)."""
    doc = config_to_dict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
    return _hash(_strip(doc, _NOT_FINGERPRINTED))


def stage_fingerprint(cfg: TrainConfig | Mapping[str, Any], stage: int) -> str:
    """Hash of what decides the weights at the end of stage `stage` (1-based): seed, model,
    data and stages 1..stage. Stage N+1 may start from a stage-N checkpoint whose value
    matches, even if later stages or the final evaluation changed."""
    doc = config_to_dict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
    doc = _strip(doc, _NOT_FINGERPRINTED)
    return _hash(
        {k: doc.get(k) for k in ("seed", "model", "data")} | {"stages": doc["stages"][:stage]}
    )


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, Mapping):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(doc, list) and doc and all(isinstance(v, Mapping) for v in doc):
        out = {}
        for i, v in enumerate(doc, 1):
            out |= _flatten(v, f"{prefix}.{i}")
        return out
    return {prefix: doc}


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = _NOT_FINGERPRINTED
) -> list[str]:
    """Human-readable differences ``"stages.2.lr: 0.01 -> 0.02"`` between two config dicts."""
    a, b = _flatten(_strip(dict(old), ignore)), _flatten(_strip(dict(new), ignore))
    return [
        f"{k}: {json.dumps(a.get(k, '<absent>'))} -> {json.dumps(b.get(k, '<absent>'))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
