"""How long a run takes on this machine, before it trains: each stage's optimiser steps and a
validation batch, timed on random images of the run's shape, scaled to the run's numbers of
training and validation images; the final test evaluation likewise.

On the CPU the steps are timed on at most :data:`CPU_BATCH` images and scaled to the batch
(a convolution's time per image hardly changes above a few dozen images there); on a GPU on
the whole batch.

An estimate, and the job's progress (:mod:`wae.progress`) says so: the data loading, the
augmentation, the per-epoch checkpoints and the machine's other load are not in it; the model
starts from random weights (``model.init`` is not read) and a stage's teacher may be an
untrained network of the teacher's shape. Nothing is written, and the random number
generators are left as they were (a run's results do not depend on whether it was estimated).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_model
from ..models import build_named
from ..runtime import autocast, resolve_precision
from .config import ConfigError, StageConfig, TrainConfig, load_config
from .datasets import build_datasets, resolve_image
from .distributed import device_from_spec
from .objective import StageModule, make_optimizer, set_modes, trainable

__all__ = ["CPU_BATCH", "RunEstimate", "estimate_run"]

CPU_BATCH = 32  # images per timed batch on the CPU (the time is scaled to the real batch)


@dataclass(frozen=True)
class RunEstimate:
    """Estimated seconds per epoch of each stage, and of the test evaluation at the end."""

    epoch_s: tuple[float, ...]
    end_s: float

    def seconds(self, epochs: tuple[int, ...]) -> float:
        """The run's estimate for these epochs per stage (its whole run: its config's)."""
        return sum(n * s for n, s in zip(epochs, self.epoch_s, strict=True)) + self.end_s


@dataclass
class _Shape:
    num_classes: int
    in_chans: int
    size: int
    device: torch.device
    amp: str | None
    channels_last: bool

    def timed_batch(self, n: int) -> int:
        """The batch to time `n` images with (see :data:`CPU_BATCH`)."""
        return max(1, n if self.device.type != "cpu" else min(n, CPU_BATCH))

    def images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(n, self.in_chans, self.size, self.size, device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, self.num_classes, (n,), device=self.device)


def estimate_run(
    config: TrainConfig | Mapping[str, Any] | str,
    *,
    teacher: nn.Module | TrainConfig | Mapping[str, Any] | str | None = None,
    steps: int = 2,
) -> RunEstimate:
    """Time `steps` optimiser steps (after one to warm up) of each stage of `config`, and one
    validation and one test batch; returns the seconds per epoch and of the test evaluation.

    `teacher` (for stages with a distillation loss): the trained network, or the config of
    one (built untrained, e.g. before the teacher is trained); default ``teacher.checkpoint``.
    Raises what building the data, the model or the teacher raises.
    """
    cfg = load_config(config)
    data = build_datasets(cfg, ("train", "val", "test"))
    size, chans = resolve_image(cfg)
    device = device_from_spec(cfg.runtime.device, what="runtime.device")
    used, _ = resolve_precision(cfg.runtime.precision, device)
    shape = _Shape(
        data["train"].num_classes,
        chans,
        size,
        device,
        None if used == "fp32" else used,
        cfg.runtime.channels_last,
    )
    devices = [device] if device.type == "cuda" else []
    # The run warns itself (e.g. a WAE that does not pay off) when it builds its model.
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model(cfg, shape)
        t_model = _teacher(cfg, teacher, shape) if any(s.distill for s in cfg.stages) else None
        per_epoch = tuple(
            _stage_seconds(
                model, s, t_model, cfg, shape, len(data["train"]), len(data["val"]), steps
            )
            for s in cfg.stages
        )
        end = _test_seconds(model, cfg, shape, len(data["test"]) if "test" in data else 0)
        if t_model is not None and cfg.teacher.cache:  # its one pass over the training images
            end += _forward_seconds(t_model, cfg, shape, len(data["train"]))
    return RunEstimate(per_epoch, end)


def _model(cfg: TrainConfig, shape: _Shape) -> nn.Module:
    """The run's network, untrained, on its device and in its memory format."""
    m = cfg.model
    model = build_named(
        m.name,
        m.arch,
        num_classes=shape.num_classes,
        in_chans=shape.in_chans,
        input_size=shape.size,
        **m.kwargs,
    ).to(shape.device)
    return model.to(memory_format=torch.channels_last) if shape.channels_last else model


def _teacher(cfg: TrainConfig, teacher: Any, shape: _Shape) -> nn.Module:
    """The teacher to time with: a copy of `teacher` (a network is not moved or changed), a
    network built from a teacher config, else the run's teacher.checkpoint."""
    if isinstance(teacher, nn.Module):
        t = deepcopy(teacher).to(shape.device)
    elif teacher is not None:
        t = _model(load_config(teacher), shape)
    elif cfg.teacher.checkpoint:
        t = load_model(cfg.teacher.checkpoint, num_classes=shape.num_classes)[0].to(shape.device)
    else:
        raise ConfigError("a stage distils, but there is no teacher to time it with")
    t.requires_grad_(False)
    t = t.eval()
    return t.to(memory_format=torch.channels_last) if shape.channels_last else t


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Seconds per call of `fn`, after one call to warm up."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stage_seconds(
    model: nn.Module,
    s: StageConfig,
    t_model: nn.Module | None,
    cfg: TrainConfig,
    shape: _Shape,
    n_train: int,
    n_val: int,
    steps: int,
) -> float:
    """Seconds of one epoch of stage `s`: its steps, then the validation."""
    named = trainable(model, s)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in named:
        p.requires_grad_(True)
    b = shape.timed_batch(s.batch_size)
    x, y = shape.images(b)
    cached = s.distill and cfg.teacher.cache  # the step looks the teacher's logits up
    soft = torch.zeros(b, shape.num_classes, device=shape.device) if cached else None
    idx = torch.arange(b, device=shape.device) if cached else None
    stage_mod = StageModule(model, s, t_model if s.distill else None, cfg.teacher, soft)
    opt = make_optimizer(s, [p for _, p in named]) if named else None

    def step() -> None:
        with autocast(shape.device, shape.amp):
            total, _, _ = stage_mod(x, y, idx)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()

    set_modes(model, s)
    image_s = _timed(step, shape.device, max(1, steps)) / b
    vb = shape.timed_batch(min(cfg.eval.batch_size, n_val))
    xv, yv = shape.images(vb)

    @torch.no_grad()
    def validate() -> None:
        with autocast(shape.device, shape.amp):
            stage_mod(xv, yv)

    model.eval()
    val_image_s = _timed(validate, shape.device, 1) / vb
    model.train()
    return (n_train // s.batch_size) * s.batch_size * image_s + n_val * val_image_s


def _test_seconds(model: nn.Module, cfg: TrainConfig, shape: _Shape, n_test: int) -> float:
    """Seconds of the final test evaluation: float32 forwards, clean and with each noise."""
    return _forward_seconds(model, cfg, shape, n_test) * (1 + len(cfg.eval.noise_vars))


def _forward_seconds(model: nn.Module, cfg: TrainConfig, shape: _Shape, n: int) -> float:
    """Seconds of `model`'s forwards over `n` images in evaluation batches."""
    if n == 0:
        return 0.0
    b = shape.timed_batch(min(cfg.eval.batch_size, n))
    x, _ = shape.images(b)
    model.eval()
    with torch.no_grad():
        image_s = _timed(lambda: model(x), shape.device, 1) / b
    return n * image_s
