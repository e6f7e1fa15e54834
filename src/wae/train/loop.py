"""One epoch of a stage: its optimiser steps over the shuffled training set, then validation.

Exact resume: the data order and augmentation of epoch e of stage k come from a loader seeded
with (seed, k, e), and torch/numpy/python are reseeded from (seed, k, e, rank) at the start of
every epoch, so an epoch's draws do not depend on what ran before it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import build_loader
from . import rundir
from .config import StageConfig
from .evaluate import shard_loader, topk_hits
from .hooks import TrainingError
from .objective import StageModule, set_modes
from .schedule import LRSchedule, Monitor
from .setup import RunContext
from .soft_targets import IndexedDataset

__all__ = ["StageRun", "derive", "log_epoch", "run_epoch", "val_loader"]


def derive(*parts: int) -> int:
    """A 31-bit seed from integers: independent streams per (seed, stage, epoch[, rank])."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class StageRun:
    """Stage `k` ready to run epochs: its config, optimiser, schedule and modules."""

    k: int  # 1-based
    s: StageConfig
    label: str  # "stage 2/3 (classifier)", for messages
    steps: int  # optimiser steps per epoch
    opt: torch.optim.Optimizer
    sched: LRSchedule
    early: Monitor  # the stage's monitored metric, for early stopping
    scaler: Any  # torch.amp.GradScaler for fp16, else None
    stage_mod: StageModule
    runner: nn.Module  # stage_mod, wrapped in DDP when distributed
    val_loader: DataLoader
    epochs_before: int  # epochs of the stages before this one (for global_epoch)


def val_loader(ctx: RunContext) -> DataLoader:
    """This rank's strided shard of the validation set, in order."""
    return shard_loader(
        ctx.val_ds,
        ctx.env,
        batch_size=ctx.cfg.eval.batch_size,
        num_workers=ctx.cfg.runtime.num_workers,
        pin_memory=ctx.env.device.type == "cuda",
    )


def run_epoch(ctx: RunContext, st: StageRun, epoch: int) -> dict[str, Any]:
    """Train epoch `epoch` (0-based) of the stage, validate, step the schedule and the early
    stopping monitor; returns the epoch's metrics row."""
    env, s = ctx.env, st.s
    t0 = time.perf_counter()
    _seed_all(derive(ctx.cfg.seed, st.k, epoch, env.rank))
    train_terms, lr = _train_epoch(ctx, st, epoch)
    env.broadcast_buffers(ctx.model)  # one model on every rank (see DistEnv)
    val = _validate(ctx, st.stage_mod, st.val_loader)
    metric = {
        "val_top1": val.get("val_top1"),
        "val_loss": val.get("val_loss"),
        "train_loss": train_terms.get("train_loss"),
    }[s.monitor]
    st.sched.end_epoch(metric)
    if metric is not None:
        st.early.update(metric)
    dt = time.perf_counter() - t0
    return {
        "stage": st.k,
        "stage_name": s.name,
        "epoch": epoch + 1,
        "global_epoch": st.epochs_before + epoch + 1,
        "lr": lr,
        **train_terms,
        **val,
        "epoch_time_s": dt,
        "images_per_s": st.steps * s.batch_size / dt,
    }


def _progress(ctx: RunContext, loader: DataLoader, desc: str) -> tuple[Iterable, Any]:
    """(what to iterate, the tqdm bar or None)."""
    if not ctx.progress:
        return loader, None
    from tqdm.auto import tqdm

    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    return bar, bar


def _train_epoch(ctx: RunContext, st: StageRun, epoch: int) -> tuple[dict[str, float], float]:
    """The epoch's steps; returns (mean train_* losses over steps and ranks, last lr)."""
    env, s = ctx.env, st.s
    cached = st.stage_mod.soft_targets is not None  # batches carry their rows in the cache
    loader = build_loader(
        IndexedDataset(ctx.train_ds) if cached else ctx.train_ds,
        s.batch_size // env.world_size,
        shuffle=True,
        seed=derive(ctx.cfg.seed, st.k, epoch),
        num_workers=ctx.cfg.runtime.num_workers,
        distributed=env.distributed,
        drop_last=True,
        pin_memory=env.device.type == "cuda",
    )
    if env.distributed:
        loader.sampler.set_epoch(epoch)
    set_modes(ctx.model, s)
    params = [p for g in st.opt.param_groups for p in g["params"]]
    sums: dict[str, float] = {}
    n, lr = 0, s.lr
    it, bar = _progress(ctx, loader, f"{st.label} epoch {epoch + 1}/{s.epochs}")
    try:
        for step, (x, y, *rows) in enumerate(it):
            lr = st.sched.lr(epoch, step)
            for g in st.opt.param_groups:
                g["lr"] = lr
            x, y = ctx.batch(x), y.to(env.device, non_blocking=True)
            idx = rows[0].to(env.device) if rows else None
            with ctx.autocast():
                total, terms, _ = st.runner(x, y, idx)
            if env.any(not bool(torch.isfinite(total.detach()))):
                raise _diverged(ctx, st, epoch, step, terms)
            _step(total, st.opt, st.scaler, params, s.grad_clip)
            loss_value = float(total.detach())
            sums["train_loss"] = sums.get("train_loss", 0.0) + loss_value
            for name, v in terms.items():
                sums[f"train_{name}"] = sums.get(f"train_{name}", 0.0) + float(v.detach())
            n += 1
            if bar is not None and step % 10 == 0:
                bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.3g}")
            ctx.hooks.on_step(st.k, epoch + 1, step, ctx.model, loss_value)
    finally:
        if bar is not None:
            bar.close()
    keys = sorted(sums)
    vec = torch.tensor([sums[key] for key in keys], dtype=torch.float64) / max(1, n)
    vec = env.all_reduce_sum(vec) / env.world_size
    return {key: float(v) for key, v in zip(keys, vec, strict=True)}, lr


def _step(
    total: torch.Tensor,
    opt: torch.optim.Optimizer,
    scaler: Any,
    params: list[nn.Parameter],
    grad_clip: float | None,
) -> None:
    """Backward and one optimiser step (through the fp16 GradScaler when there is one)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        if grad_clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(opt)
        scaler.update()
    else:
        total.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()


def _diverged(
    ctx: RunContext, st: StageRun, epoch: int, step: int, terms: Mapping[str, torch.Tensor]
) -> TrainingError:
    """The error for a non-finite loss: where, the values, the checkpoint kept, what to try."""
    k = st.k
    parts = ", ".join(f"{n} = {float(v.detach()):.4g}" for n, v in terms.items())
    latest = rundir.read_latest(ctx.out)
    amp_hint = {
        "fp16": 'set runtime.precision = "bf16" (if the GPU has it) or "fp32", ',
        "bf16": 'set runtime.precision = "fp32", ',
    }.get(ctx.precision, "")
    kept = (
        f"the last good checkpoint ({ctx.out / rundir.CKPTS / latest['dir']}, stage "
        f"{latest['stage']} epoch {latest['epoch']}) is untouched; --resume restarts from it"
        if latest
        else "no checkpoint of this run was written yet"
    )
    return TrainingError(
        f"Stage {k} epoch {epoch + 1} step {step}: the loss is not finite ({parts}). "
        f"Training stopped; {kept}. Lower stages.{k}.lr, set stages.{k}.grad_clip, "
        f"{amp_hint}or check the data for bad values."
    )


@torch.no_grad()
def _validate(ctx: RunContext, stage_mod: StageModule, loader: DataLoader) -> dict[str, float]:
    """The stage's mean losses and (if it classifies) top-1/top-5 % on the validation set,
    summed over the ranks' shards."""
    env = ctx.env
    # A fixed key list, so the ranks' vectors line up even if a shard is empty.
    keys = ["loss"] + ["classification"] * stage_mod.classify
    keys += ["distillation"] * stage_mod.distill
    keys += ["transform", "reconstruction", "energy"] if stage_mod.decode else []
    sums = torch.zeros(len(keys) + 3, dtype=torch.float64)  # + top-1, top-k, count
    ctx.model.eval()
    try:
        for x, y in loader:
            x, y = ctx.batch(x), y.to(env.device, non_blocking=True)
            with ctx.autocast():
                total, terms, logits = stage_mod(x, y)
            b = len(y)
            values = {"loss": total, **terms}
            for i, name in enumerate(keys):
                sums[i] += float(values[name]) * b
            if logits is not None:
                hit1, hitk = topk_hits(logits, y)
                sums[-3] += float(hit1.sum())
                sums[-2] += float(hitk.sum())
            sums[-1] += b
    finally:
        ctx.model.train()
    sums = env.all_reduce_sum(sums)
    n = max(1.0, float(sums[-1]))
    out = {f"val_{name}": float(sums[i]) / n for i, name in enumerate(keys)}
    if stage_mod.classify:
        out["val_top1"] = 100.0 * float(sums[-3]) / n
        out["val_top5"] = 100.0 * float(sums[-2]) / n
    return out


def log_epoch(ctx: RunContext, st: StageRun, row: dict[str, Any]) -> None:
    """The epoch's summary line (rank 0, runtime.verbose) and its TensorBoard scalars."""
    s = st.s
    parts = [f"{st.label} epoch {row['epoch']}/{s.epochs}", f"loss {row['train_loss']:.4g}"]
    for t in ("classification", "distillation", "transform"):
        if f"train_{t}" in row and len(s.losses) > 1:
            parts.append(f"{t[:5]} {row[f'train_{t}']:.4g}")
    if "val_top1" in row:
        parts.append(f"val top1 {row['val_top1']:.2f}% top5 {row['val_top5']:.2f}%")
    else:
        parts.append(f"val loss {row['val_loss']:.4g}")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['epoch_time_s']:.1f}s")
    ctx.log("  ".join(parts))
    if ctx.tb is not None:
        for key, v in row.items():
            if isinstance(v, float) and key != "epoch_time_s":
                ctx.tb.add_scalar(key, v, row["global_epoch"])
