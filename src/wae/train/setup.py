"""What a run sets up before its first stage: torch's runtime switches, the data, the model
(checked against every stage), gathered in a :class:`RunContext` the other parts share."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..autoencoder import WaveletAutoEncoder
from ..checkpoint import CheckpointError, CheckpointMeta, load_model, model_spec
from ..data import LabeledDataset
from ..errors import WAEError
from ..models import WAENet, build_named
from ..models.spec import SpecError, is_factory_name, validate_spec
from ..models.trained import is_full_resolution
from ..runtime import autocast, is_out_of_memory, resolve_precision
from .config import ConfigError, StageConfig, TrainConfig, config_to_dict, fingerprint
from .datasets import build_datasets, resolve_image
from .distributed import DistEnv
from .hooks import TrainHooks

__all__ = [
    "RunContext",
    "build_data",
    "build_model",
    "build_teacher",
    "configure_runtime",
    "new_context",
    "recipe_code",
]


@dataclass
class RunContext:
    """One run's settings and built pieces: what the stages, the epoch loop and checkpointing
    share. ``model``, the datasets and ``data_meta`` are set by :func:`build_data` and
    :func:`build_model`; ``tb`` (a TensorBoard writer) when the run starts writing."""

    cfg: TrainConfig
    out: Path
    env: DistEnv
    hooks: TrainHooks
    cfg_dict: dict[str, Any]
    fp: str  # the config's fingerprint
    amp: str | None  # the autocast dtype ("bf16" / "fp16") runtime.precision resolved to
    precision_note: str | None  # why that precision (e.g. fp32: bf16 is slow on this CPU)
    progress: bool  # tqdm bars on this process
    model: nn.Module = None  # type: ignore[assignment]
    train_ds: LabeledDataset = None  # type: ignore[assignment]
    val_ds: LabeledDataset = None  # type: ignore[assignment]
    data_meta: dict[str, Any] = field(default_factory=dict)
    teacher: nn.Module | None = None  # frozen, for the stages' distillation loss
    soft_targets: torch.Tensor | None = None  # its logits of the training images (cache)
    tb: Any = None

    @property
    def n_stages(self) -> int:
        return len(self.cfg.stages)

    @property
    def is_wae(self) -> bool:
        return isinstance(self.model, WAENet)

    @property
    def num_classes(self) -> int:
        return self.data_meta["num_classes"]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.runtime.channels_last else torch.contiguous_format

    def log(self, msg: str) -> None:
        """Print `msg` on rank 0 when runtime.verbose."""
        if self.env.is_main and self.cfg.runtime.verbose:
            print(msg, flush=True)

    @property
    def precision(self) -> str:
        """The training precision used: "fp32", "bf16" or "fp16"."""
        return self.amp or "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Training's (and per-epoch validation's) autocast; a no-op in fp32."""
        return autocast(self.env.device, self.amp)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) on the run's device, in its memory format."""
        x = x.to(self.env.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format)


def _progress_enabled(mode: str) -> bool:
    if mode != "auto":
        return mode == "on"
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return sys.stderr.isatty() and not ci


def new_context(cfg: TrainConfig, out: Path, env: DistEnv, hooks: TrainHooks | None) -> RunContext:
    """The run's context before anything is built (decides the training precision: a device
    that cannot run runtime.precision is refused here, before anything is written)."""
    cfg_dict = config_to_dict(cfg)
    rt = cfg.runtime
    used, note = resolve_precision(rt.precision, env.device)
    ctx = RunContext(
        cfg=cfg,
        out=out,
        env=env,
        hooks=hooks or TrainHooks(),
        cfg_dict=cfg_dict,
        fp=fingerprint(cfg_dict),
        amp=None if used == "fp32" else used,
        precision_note=note,
        progress=_progress_enabled(rt.progress) and env.is_main,
    )
    if note:
        ctx.log(f'Note: runtime.precision = "{rt.precision}": {note}.')
    if ctx.amp:
        ctx.log(
            f"Precision: {used} autocast (float32 master weights); the final test evaluation "
            f"runs in float32."
        )
    return ctx


def configure_runtime(cfg: TrainConfig, env: DistEnv) -> None:
    """torch's thread count and determinism switches from ``[runtime]``."""
    rt = cfg.runtime
    if rt.threads:
        torch.set_num_threads(rt.threads)
    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def build_data(ctx: RunContext) -> None:
    """The training and validation sets, and the data facts every checkpoint records."""
    cfg, env = ctx.cfg, ctx.env
    download = cfg.data.download
    if download and env.distributed and not env.is_main:
        env.barrier()  # rank 0 downloads first; the others then find the files
    try:
        data = build_datasets(cfg, ("train", "val"), download=download and env.is_main)
    finally:  # also on an error: the waiting ranks then fail on their own, not hang
        if download and env.distributed and env.is_main:
            env.barrier()
    train = data["train"]
    ctx.train_ds, ctx.val_ds = train, data["val"]
    input_size, in_chans = resolve_image(cfg)
    ctx.data_meta = {
        "dataset": cfg.data.dataset,
        "classes": list(train.classes),
        "num_classes": train.num_classes,
        "in_chans": in_chans,
        "input_size": input_size,
        "mean": list(train.mean),
        "std": list(train.std),
    }


def build_model(ctx: RunContext) -> None:
    """The model, seeded so that every run with this seed starts from the same weights,
    on the run's device; every stage is checked to fit it."""
    c, meta = ctx.cfg, ctx.data_meta
    torch.manual_seed(c.seed)
    try:
        model = build_named(
            c.model.name,
            c.model.arch,
            num_classes=meta["num_classes"],
            in_chans=meta["in_chans"],
            input_size=meta["input_size"],
            **c.model.kwargs,
        )
    except WAEError:
        raise
    except (TypeError, ValueError) as e:  # the builder's own refusal of an argument
        raise ConfigError(
            f"model.kwargs {c.model.kwargs} do not fit {c.model.name!r} (with in_chans="
            f"{meta['in_chans']}, input_size={meta['input_size']}): {e}. Fix model.kwargs "
            f"(`wae models` lists each model's input)."
        ) from e
    except RuntimeError as e:  # e.g. a shape probe that fails for these arguments
        if is_out_of_memory(e):
            raise
        raise ConfigError(
            f"{c.model.name!r} cannot be built with model.kwargs {c.model.kwargs}, in_chans="
            f"{meta['in_chans']}, input_size={meta['input_size']}: {e}. Fix model.kwargs or "
            f"data.input_size."
        ) from e
    try:  # arguments no checkpoint could hold fail now, not at the first save
        validate_spec(model_spec(model), "model.name / model.kwargs")
    except SpecError as e:
        raise ConfigError(str(e)) from None
    ctx.model = model.to(ctx.env.device)
    if c.runtime.channels_last:
        ctx.model.to(memory_format=torch.channels_last)
    for k, s in enumerate(c.stages, 1):
        _check_stage_fits(ctx.model, c.model.name, k, s)


def _check_stage_fits(model: nn.Module, name: str, k: int, s: StageConfig) -> None:
    """Refuse a stage that needs what `model` lacks (a decoder, FixedNorms, a frozen module)."""
    p = f"stages.{k}"
    if not isinstance(model, WAENet):
        if s.decode or not s.classify:
            raise ConfigError(
                f"{p} uses the transform loss, but {name!r} is a plain network with no "
                f"auto-encoder. Baselines train with one stage of losses = "
                f"{{ classification = 1.0 }}."
            )
        if s.calibrate_norms:
            raise ConfigError(f"{p}.calibrate_norms: {name!r} has no FixedNorm to calibrate.")
    elif s.decode or not s.classify:
        wae = model.wae
        if not (isinstance(wae, WaveletAutoEncoder) and wae.has_decoder):
            raise ConfigError(
                f"{p} uses the transform loss, but the decomposer of {name!r} "
                f"({type(wae).__name__}) has no decoder. Use losses = "
                f"{{ classification = 1.0 }} for the Decomposition+CNN and Wavelet+CNN "
                f"baselines."
            )
    modules = dict(model.named_modules())
    for prefix in s.freeze:
        if prefix not in modules:
            tops = [n for n, _ in model.named_children()]
            raise ConfigError(
                f"{p}.freeze names {prefix!r}, which is not a module of {name!r}. Its "
                f"top-level modules are: {', '.join(tops)} (deeper names are dotted, e.g. "
                f"'wae.encoder')."
            )


def recipe_code(cfg: TrainConfig) -> tuple[str, ...]:
    """The user's own backbone factory ("pkg.module:function") the recipe names as
    model.name, if any: the user chose it, so the run's checkpoints may be rebuilt with it."""
    return (cfg.model.name,) if is_factory_name(cfg.model.name) else ()


def build_teacher(ctx: RunContext) -> None:
    """Load ``teacher.checkpoint`` (when a stage distils) frozen on the run's device, after
    checking that it takes this data's images and predicts its classes."""
    path = ctx.cfg.teacher.checkpoint
    if not path or not any(s.distill for s in ctx.cfg.stages):
        return
    meta = ctx.data_meta
    try:
        teacher, doc = load_model(
            path, num_classes=meta["num_classes"], allow_code=recipe_code(ctx.cfg)
        )
    except CheckpointError as e:
        raise ConfigError(f"teacher.checkpoint: {e}") from None
    if not is_full_resolution(teacher):
        raise ConfigError(
            f"teacher.checkpoint {path} holds a {type(teacher).__name__}"
            f"{' on the half-size image' if getattr(teacher, 'half', False) else ''}; the "
            f"teacher is the trained full-resolution network (e.g. the final checkpoint of a "
            f"fashion_mnist_baseline run)."
        )
    typed = CheckpointMeta.from_doc(doc, path)
    size, chans = typed.input_size, typed.in_chans
    if (size, chans) != (meta["input_size"], meta["in_chans"]):
        raise ConfigError(
            f"teacher.checkpoint {path} was trained on {chans}-channel {size}x{size} images, "
            f"but this run's data are {meta['in_chans']}-channel {meta['input_size']}x"
            f"{meta['input_size']}: use a teacher trained on this data."
        )
    teacher.requires_grad_(False)
    ctx.teacher = teacher.eval().to(ctx.env.device)
    if ctx.cfg.runtime.channels_last:
        ctx.teacher.to(memory_format=torch.channels_last)
