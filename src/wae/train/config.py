"""Training configuration: TOML file -> validated dataclasses -> constructors, in one direction.

A recipe is a TOML file (read with the standard library's ``tomllib``) with the tables below;
every key is optional except ``[[stages]]``. Unknown keys are errors, never ignored::

    name = "fashion_mnist"      # a label (not part of the fingerprint)
    seed = 0

    [model]
    name = "wae_small_vgg_28"   # any wae.create_model name (WAE nets and plain baselines),
                                # or a backbone: "resnet18", "timm:resnet18", "small_vgg"
    # arch = "wae"              # for a backbone: "wae" (default), "full" or "half" (I_R)
    kwargs = { width = 32 }     # extra builder arguments
    # init = "runs/x/final"     # start from this checkpoint: the same architecture, or a
                                # trained full-resolution network (WAE.from_trained's copy)

    [teacher]                   # for stages with a distillation loss
    # checkpoint = "runs/full/final"   # the trained network, run unchanged at full resolution
    # temperature = 4.0
    # heads = "both"            # which WAE scores learn from it: both | low | fused | average

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
    precision = "auto"          # fp32 (default) | bf16 | fp16 | auto: autocast, float32
                                # master weights; auto: bf16 where the device runs it fast

    [[stages]]                  # one table per stage, in order
    name = "wae"
    epochs = 3
    batch_size = 128
    optimizer = "adam"          # sgd | adam | adamw
    lr = 1e-3
    losses = { transform = 1.0 }            # transform, classification, distillation: weights
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
``config.json`` beside the results and inside every checkpoint's ``model.json``. A run's
``config.json`` loads back as a config, so resuming a run needs none of its ``--set`` values.

This module reads and validates; the schema is in :mod:`.schema`, overrides in
:mod:`.overrides`, fingerprints and differences in :mod:`.fingerprint` (all re-exported here).
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import DataError, check_input_size
from ..errors import first_line
from ..models import BackboneError, is_model, list_models, named_kind
from ..models._backbone import check_backbone_name
from ..models.spec import MAX_SIZE, SpecError, validate_spec
from ..runtime import DeviceError, check_device
from .fingerprint import config_diff, fingerprint, stage_fingerprint
from .overrides import apply_overrides, parse_override
from .schema import (
    LOSS_NAMES,
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RuntimeConfig,
    ScheduleConfig,
    StageConfig,
    TeacherConfig,
    TrainConfig,
    config_to_dict,
    from_plain,
)

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
    "apply_overrides",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "fingerprint",
    "load_config",
    "parse_override",
    "stage_fingerprint",
    "validate",
]

# --------------------------------------------------------------------------------------------
# Semantic validation (after typing): ranges, combinations, "auto" decisions
# --------------------------------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check ranges and combinations and decide the ``auto`` values, in place; returns cfg.

    Every value is checked here, before any data is read or model built: an unknown model,
    builder arguments a checkpoint could not hold, a device that cannot exist, a size, count
    or rate out of range. What needs the model or the data (does a freeze prefix name a
    module? does the model have a decoder for the transform loss?) is checked when they are
    built, still before the first epoch.
    """
    _check(len(cfg.stages) > 0, "The config has no [[stages]]: add at least one stage.")
    _check(0 <= cfg.seed < 2**32, f"seed must be an integer from 0 to 2**32 - 1, got {cfg.seed}.")
    _validate_model(cfg.model, cfg.data)
    _validate_data(cfg.data)
    _validate_teacher(cfg)
    e = cfg.eval
    _check(e.split in _EVAL_SPLITS, f"eval.split must be one of {_EVAL_SPLITS}, got {e.split!r}.")
    _check(e.subset is None or e.subset > 0, f"eval.subset must be positive, got {e.subset}.")
    _check(e.batch_size >= 1, f"eval.batch_size must be >= 1, got {e.batch_size}.")
    _check(
        all(v >= 0 for v in e.noise_vars),
        f"eval.noise_vars must be variances >= 0, got {e.noise_vars}.",
    )
    _validate_runtime(cfg.runtime)
    names = [s.name for s in cfg.stages if s.name]
    _check(
        len(names) == len(set(names)),
        f"Stage names must be unique, got {names}.",
    )
    for i, s in enumerate(cfg.stages, 1):
        _validate_stage(s, f"stages.{i}")
    return cfg


_SPLITS = ("train", "val", "test")
_EVAL_SPLITS = ("", *_SPLITS)  # "" skips the final evaluation


def _validate_model(m: ModelConfig, d: DataConfig) -> None:
    """A registered name or a backbone name, and builder arguments its checkpoints can hold
    (the checkpoint spec's schema: a run whose model.json would be refused on loading never
    starts)."""
    _check(bool(m.name), "model.name is empty: name a model (`wae models` lists them).")
    try:
        kind = named_kind(m.name, m.arch)
    except SpecError as e:
        raise ConfigError(f"model.arch: {e}") from None
    if is_model(m.name):
        spec = {"builder": "registry", "name": m.name, "kwargs": m.kwargs}
    else:
        _check_backbone(m.name)
        _check(
            d.input_size is not None and d.in_chans is not None,
            f"model.name {m.name!r} is a backbone, not a registered model, so the image size "
            f"is not known: set data.input_size and data.in_chans (e.g. 224 and 3).",
        )
        builder = "wae_net" if kind == "wae" else "plain"
        spec = {"builder": builder, "backbone": m.name, "kwargs": m.kwargs}
    for key in ("num_classes", "in_chans", "input_size", "half"):
        _check(
            key not in m.kwargs,
            f"model.kwargs.{key} is not allowed: {key} comes from "
            + {"num_classes": "the dataset", "half": "model.arch"}.get(key, f"data.{key}")
            + ".",
        )
    try:
        validate_spec(spec, "model")
    except SpecError as e:
        raise ConfigError(f"{e} Fix model.kwargs.") from None


def _check_backbone(name: str) -> None:
    try:
        check_backbone_name(name)
    except (BackboneError, SpecError) as e:
        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f" Registered models close to it: {', '.join(close)}." if close else ""
        raise ConfigError(
            f"model.name {name!r} is neither a registered model (`wae models` lists them) nor "
            f"a backbone: {e}{hint}"
        ) from None


def _validate_teacher(cfg: TrainConfig) -> None:
    """A distillation loss needs a teacher checkpoint, and a teacher needs such a loss."""
    t = cfg.teacher
    uses = [i for i, s in enumerate(cfg.stages, 1) if s.distill]
    _check(t.temperature > 0, f"teacher.temperature must be > 0, got {t.temperature}.")
    _check(
        not uses or bool(t.checkpoint),
        f"stages.{uses[0] if uses else ''}.losses has a distillation loss but no teacher: set "
        f"teacher.checkpoint to the trained network's checkpoint directory (e.g. "
        f"runs/full/final).",
    )
    _check(
        not (t.cache and cfg.data.augment),
        "teacher.cache = true keeps one set of teacher logits per training image, so the "
        "images must be the same every epoch: set data.augment = false, or teacher.cache = "
        "false.",
    )
    feats = [i for i, s in enumerate(cfg.stages, 1) if s.losses.get("feature_distillation")]
    _check(
        not (t.cache and feats),
        f"teacher.cache = true keeps the teacher's logits only, and stages.{feats[:1]} distils "
        f"its feature map too: drop the feature_distillation loss, or set teacher.cache = false.",
    )
    _check(
        not t.checkpoint or bool(uses),
        f"teacher.checkpoint is set ({t.checkpoint}) but no stage has a distillation loss: "
        f"add e.g. losses = {{ classification = 0.5, distillation = 0.5 }} to a stage, or "
        f"unset teacher.checkpoint.",
    )


def _validate_data(d: DataConfig) -> None:
    _check(bool(d.dataset.strip()), "data.dataset is empty: name a dataset or a folder.")
    _check(
        0.0 <= d.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {d.val_fraction}."
    )
    for k in ("subset", "val_subset"):
        v = getattr(d, k)
        _check(v is None or v > 0, f"data.{k} must be positive, got {v}.")
    if d.input_size is not None:  # a checkpoint holds sizes up to the spec's MAX_SIZE
        try:
            check_input_size(d.input_size, "data.input_size", hi=MAX_SIZE)
        except DataError as e:
            raise ConfigError(str(e)) from None
    _check(d.in_chans in (None, 1, 3), f"data.in_chans must be 1 or 3, got {d.in_chans}.")
    _check(d.val_split in _SPLITS, f"data.val_split must be one of {_SPLITS}, got {d.val_split!r}.")


def _validate_runtime(r: RuntimeConfig) -> None:
    try:  # the spelling only: a GPU run's config must still load on a laptop
        check_device(r.device, "runtime.device (--device)", available=False)
    except DeviceError as e:
        raise ConfigError(str(e)) from None
    _amp_to_precision(r)
    _check(
        r.threads is None or r.threads >= 1,
        f"runtime.threads must be >= 1 (or unset for torch's default), got {r.threads}.",
    )
    _check(r.num_workers >= 0, f"runtime.num_workers must be >= 0, got {r.num_workers}.")
    _check(r.keep_checkpoints >= 1, "runtime.keep_checkpoints must be >= 1.")
    _check(
        r.max_epochs_this_run is None or r.max_epochs_this_run >= 1,
        "runtime.max_epochs_this_run must be >= 1 (or unset).",
    )


def _amp_to_precision(r: RuntimeConfig) -> None:
    """Read the older ``amp = true`` (+ ``amp_dtype``) as ``precision = amp_dtype``, in place,
    so that the saved config has one spelling; refuse it beside a different precision."""
    if not r.amp:
        return
    _check(
        r.precision in ("fp32", r.amp_dtype),
        f'runtime.amp = true (the older spelling of runtime.precision = "{r.amp_dtype}") '
        f'contradicts runtime.precision = "{r.precision}". Keep runtime.precision, the current '
        f"spelling: drop runtime.amp and runtime.amp_dtype and set the precision you want "
        f"there (auto, fp32, bf16 or fp16; e.g. --set runtime.precision={r.amp_dtype}).",
    )
    r.precision, r.amp, r.amp_dtype = r.amp_dtype, False, "bf16"


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
    _check(sc.threshold >= 0, f"{p}.schedule.threshold must be >= 0, got {sc.threshold}.")
    _check(sc.min_lr >= 0, f"{p}.schedule.min_lr must be >= 0.")
    _check(
        0 <= sc.warmup_epochs < s.epochs or sc.warmup_epochs == 0,
        f"{p}.schedule.warmup_epochs must be < {p}.epochs ({s.epochs}), got {sc.warmup_epochs}.",
    )
    _check(0 < sc.warmup_start <= 1, f"{p}.schedule.warmup_start must be in (0, 1].")


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def config_from_dict(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), origin: str = ""
) -> TrainConfig:
    """Plain data (a parsed TOML/JSON document) + overrides -> validated TrainConfig."""
    try:  # a deep copy: overrides must not touch the caller's dict
        raw = json.loads(json.dumps(raw, allow_nan=True))
    except (TypeError, ValueError, RecursionError) as e:
        raise ConfigError(
            f"The recipe{origin} holds a value a config cannot: {first_line(e)}. Recipe values "
            f"are strings, numbers, booleans, lists and tables; TOML dates and times are not "
            f"allowed anywhere (quote them to make them strings)."
        ) from None
    apply_overrides(raw, overrides)
    return validate(from_plain(TrainConfig, raw, "", origin))


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | TrainConfig,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """A TOML recipe (path or packaged name), a run's config.json, a dict, or a TrainConfig
    (+ overrides) -> validated TrainConfig."""
    if isinstance(source, TrainConfig):
        return config_from_dict(config_to_dict(source), overrides)
    if isinstance(source, Mapping):
        return config_from_dict(source, overrides)
    from .recipes import resolve_recipe  # recipes import this module's ConfigError

    text, name = resolve_recipe(source)
    if str(source).endswith(".json"):
        raw = _run_config(text, source)
    else:
        try:
            raw = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as e:
            raise ConfigError(f"{source} is not valid TOML: {e}. Fix the file.") from e
    if not raw.get("name"):
        raw["name"] = name
    return config_from_dict(raw, overrides, origin=f" (in {source})")


def _run_config(text: str, source: str | os.PathLike[str]) -> dict[str, Any]:
    """The resolved config inside a run's config.json (``{"config": {...}, ...}``)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting too deep to parse
        raise ConfigError(f"{source} is not valid JSON: {e}. Fix the file.") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ConfigError(
            f"{source} is not the config.json of a run (it has no 'config' object). Pass a "
            f"TOML recipe, a packaged recipe name, or OUT/config.json of a `wae train` run."
        )
    return doc["config"]
