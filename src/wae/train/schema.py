"""The config schema: the dataclasses of a run's config, and typed conversion of plain data
(parsed TOML or JSON) into them and back. Unknown keys and wrong types are errors that name the
key, what is valid and where the value came from.

:mod:`wae.train.config` documents the recipe format; ranges and combinations are checked by
its ``validate``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    "TeacherConfig",
    "TrainConfig",
    "config_to_dict",
    "field_types",
    "from_plain",
    "to_plain",
    "unknown_key",
]

LOSS_NAMES = ("classification", "transform", "distillation", "feature_distillation")
#: The losses that need the teacher's forward.
TEACHER_LOSSES = ("distillation", "feature_distillation")


class ConfigError(WAEError, ValueError):
    """A config that cannot be used: unknown key, wrong type, impossible value."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which network: a registered name (``wae.list_models()``), or a backbone named as the
    Python API names it (torchvision name, ``timm:<name>``, ``small_vgg``) built as ``arch``:
    ``wae`` (WAENet.from_backbone), ``full`` (the plain network) or ``half`` (on the
    half-size image, I_R). ``arch = "auto"`` is the registered model's own kind, and ``wae``
    for a backbone name. Extra builder arguments go in ``kwargs``.

    ``init`` is a checkpoint directory whose weights start the first stage run: one of the
    same architecture (loaded exactly), or a trained full-resolution classifier, from which a
    WAE's I_L network and s_L head (see ``WAENet.from_trained``), or a half-size network's
    whole net, are copied.

    ``num_classes``, ``in_chans`` and ``input_size`` are not set here: they come from the data.
    """

    name: str = "wae_small_vgg_28"
    arch: Literal["auto", "wae", "full", "half"] = "auto"
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None


@dataclass
class TeacherConfig:
    """The trained network a stage's ``distillation`` loss learns from: a checkpoint
    directory of a classifier of the same classes, run unchanged (eval mode, no gradient) on
    the full-resolution image. ``heads``: which WAE scores learn from it ("both" sums s_L's
    and s_c's loss, as L_c does; "low", "fused" or their "average"). ``cache``: its logits of
    every training image computed once per run instead of at every step
    (:mod:`wae.train.soft_targets`); needs ``data.augment = false``."""

    checkpoint: str | None = None
    temperature: float = 4.0
    heads: Literal["both", "low", "fused", "average"] = "both"  # wae.distill.DISTILL_HEADS
    cache: bool = False


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
    run and its resume; note that num_workers, precision and the number of processes change
    the random draws or the arithmetic, so exact reproduction needs the same values.

    ``precision`` is the training arithmetic: autocast with float32 master weights ("fp32":
    none). "auto" takes bf16 on a GPU that has it (else fp16) and on a CPU with AMX or
    AVX-512 BF16, fp32 elsewhere (bf16 is emulated there, slower than fp32); see
    :func:`wae.runtime.resolve_precision`. results.json records the precision used. The
    final test evaluation runs in float32 whatever this says. ``amp = true`` is the older
    spelling of ``precision = amp_dtype`` (still read, e.g. in a resumed run's config.json).
    """

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    amp: bool = False  # older spelling: true means precision = amp_dtype
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
        return any(self.losses.get(k, 0.0) > 0 for k in ("classification", *TEACHER_LOSSES))

    @property
    def distill(self) -> bool:
        """Whether the teacher runs (the distillation losses learn from its logits or its
        feature map)."""
        return any(self.losses.get(k, 0.0) > 0 for k in TEACHER_LOSSES)

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
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    stages: list[StageConfig] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Generic typed conversion of plain data into the dataclasses
# --------------------------------------------------------------------------------------------

_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> annotated type of the config dataclass `cls` (cached)."""
    if cls not in _TYPES:
        _TYPES[cls] = typing.get_type_hints(cls)
    return _TYPES[cls]


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def unknown_key(path: str, key: str, cls: type, origin: str) -> ConfigError:
    """The error for `key` under `path`, which `cls` lacks: the close match and valid keys."""
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
        return from_plain(tp, value, path, origin)
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


def from_plain(cls: type, raw: Mapping[str, Any], path: str = "", origin: str = "") -> Any:
    """Plain data -> the dataclass `cls`, each value checked/converted to its field's type."""
    hints = field_types(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            raise unknown_key(path, key, cls, origin)
        sub = f"{path}.{key}" if path else key
        kwargs[key] = _convert(value, hints[key], sub, origin)
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """Dataclasses, lists and mappings -> JSON-ready plain data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as JSON-ready plain data (None for unset optional keys)."""
    return to_plain(cfg)
