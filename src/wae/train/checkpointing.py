"""What a run writes and reads back: per-epoch checkpoints (saved, pointed at, pruned), the
stage and final checkpoints, metrics.csv, config.json, results.json, and the weights and
history a run starts from. Rank 0 writes; every rank reads. The layout is :mod:`.rundir`'s.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..checkpoint import (
    META,
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    load_model,
    read_meta,
    save_checkpoint,
)
from ..errors import first_line
from ..models import PlainNet, WAENet
from ..models.trained import init_from_trained, spec_backbone
from . import rundir
from .config import stage_fingerprint
from .schedule import LRSchedule, Monitor
from .setup import RunContext, recipe_code
from .state import capture_rng, optimizer_to_flat, save_train_state

__all__ = [
    "CSV_COLUMNS",
    "existing_results",
    "load_init",
    "load_weights",
    "restore_history",
    "save_epoch",
    "save_final",
    "save_stage",
    "write_config",
    "write_metrics",
    "write_results",
]

CSV_COLUMNS = [
    "stage",
    "stage_name",
    "epoch",
    "global_epoch",
    "lr",
    "train_loss",
    "train_classification",
    "train_distillation",
    "train_transform",
    "train_reconstruction",
    "train_energy",
    "val_loss",
    "val_classification",
    "val_distillation",
    "val_transform",
    "val_reconstruction",
    "val_energy",
    "val_top1",
    "val_top5",
    "epoch_time_s",
    "images_per_s",
]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# -- writing (rank 0) ---------------------------------------------------------------------------


def _meta(ctx: RunContext, k: int, **extra: Any) -> dict[str, Any]:
    """The ``meta`` of a checkpoint at stage `k`: the data facts, the stage, the fingerprints."""
    return {
        **ctx.data_meta,
        "stage": k,
        "stage_name": ctx.cfg.stages[k - 1].name,
        "num_stages": ctx.n_stages,
        "fingerprint": ctx.fp,
        "stage_fingerprint": stage_fingerprint(ctx.cfg_dict, k),
        "wae_version": __version__,
        **extra,
    }


def write_config(ctx: RunContext) -> None:
    """OUT/config.json: the resolved config, its fingerprint and the versions that ran it."""
    atomic_write_json(
        ctx.out / rundir.CONFIG,
        {
            "config": ctx.cfg_dict,
            "fingerprint": ctx.fp,
            "wae_version": __version__,
            "torch_version": torch.__version__,
            "world_size": ctx.env.world_size,
        },
    )


def write_metrics(ctx: RunContext, history: list[dict[str, Any]]) -> None:
    """OUT/metrics.csv, rebuilt from the whole history (one row per epoch)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: _fmt(row.get(k)) for k in CSV_COLUMNS})
    atomic_write_bytes(ctx.out / rundir.METRICS, buf.getvalue().encode())


def save_epoch(
    ctx: RunContext,
    k: int,
    epoch: int,
    opt: torch.optim.Optimizer,
    sched: LRSchedule,
    early: Monitor,
    scaler: Any,
    history: list[dict[str, Any]],
) -> None:
    """The checkpoint after `epoch` (1-based) of stage `k`: a new directory, then the latest
    pointer, then metrics.csv, then pruning (a crash at any point leaves a usable run)."""
    ck = ctx.out / rundir.CKPTS
    name = rundir.epoch_checkpoint_name(k, epoch)
    tensors, odoc = optimizer_to_flat(opt)
    rng_t, rng_doc = capture_rng()
    doc = {
        "stage": k,
        "epoch": epoch,
        "fingerprint": ctx.fp,
        "stage_fingerprint": stage_fingerprint(ctx.cfg_dict, k),
        "optimizer": odoc,
        "schedule": sched.state_dict(),
        "early_stop": early.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_doc,
        "history": history,
        "world_size": ctx.env.world_size,
    }
    save_train_state(ck / name, {**tensors, **rng_t}, doc)
    save_checkpoint(ck / name, ctx.model, meta=_meta(ctx, k, epoch=epoch), config=ctx.cfg_dict)
    atomic_write_json(
        ck / rundir.LATEST,
        {
            "stage": k,
            "epoch": epoch,
            "dir": name,
            "fingerprint": ctx.fp,
            "stage_fingerprint": stage_fingerprint(ctx.cfg_dict, k),
        },
    )
    write_metrics(ctx, history)
    _prune(ck, name, ctx.cfg.runtime.keep_checkpoints)


def _prune(ck: Path, current: str, keep_n: int) -> None:
    """Delete older per-epoch checkpoints (ours, by name), keeping the newest `keep_n`."""
    olds = sorted(
        (p for p in ck.iterdir() if p.is_dir() and p.name.startswith("stage")),
        key=lambda p: p.stat().st_mtime_ns,
    )
    keep = {current} | {p.name for p in olds[-keep_n:]}
    for p in olds:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def save_stage(ctx: RunContext, k: int, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """OUT/stage<k>: the model at the end of stage `k`, with its result and metrics rows."""
    save_checkpoint(
        rundir.stage_dir(ctx.out, k),
        ctx.model,
        meta=_meta(ctx, k, result=result, history=rows),
        config=ctx.cfg_dict,
    )


def save_final(ctx: RunContext) -> Path:
    """OUT/final: the model at the end of the last stage; returns its path."""
    final = ctx.out / rundir.FINAL
    save_checkpoint(final, ctx.model, meta=_meta(ctx, ctx.n_stages), config=ctx.cfg_dict)
    return final


def write_results(ctx: RunContext, result: dict[str, Any]) -> None:
    """OUT/results.json."""
    atomic_write_json(ctx.out / rundir.RESULTS, result)


# -- reading (every rank) -----------------------------------------------------------------------


def load_weights(ctx: RunContext, directory: Path, what: str) -> dict[str, Any]:
    """Load the weights in `directory` (a checkpoint: `what`, for messages) into the model;
    returns its model.json document. Refuses another class count or architecture."""
    if not (directory / META).is_file():
        raise CheckpointError(
            f"The {what} {directory} is not a wae checkpoint (no {META} there). Point it "
            f"at a checkpoint directory written by `wae train`, e.g. runs/<name>/final."
        )
    doc, state = load_checkpoint(directory)
    spec = doc.get("spec", {})
    saved = spec.get("kwargs", {}).get("num_classes")
    if saved is not None and saved != ctx.num_classes:
        raise CheckpointError(
            f"The {what} {directory} has {saved} classes, but the data has "
            f"{ctx.num_classes}. Use a checkpoint trained on this dataset."
        )
    try:
        ctx.model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = first_line(e)
        raise CheckpointError(
            f"The {what} {directory} does not fit {ctx.cfg.model.name!r} with "
            f"{ctx.cfg.model.kwargs or 'default arguments'} ({first}). It holds a "
            f"{spec.get('name') or spec.get('backbone')!r} "
            f"model; use a checkpoint of the same architecture."
        ) from e
    return doc


def load_init(ctx: RunContext, directory: Path) -> None:
    """Start the model from ``model.init``: a checkpoint of the same architecture (loaded
    exactly), or a trained full-resolution network that a WAE or a half-size network starts
    from (:func:`wae.models.trained.init_from_trained`)."""
    m = ctx.model
    if not (isinstance(m, WAENet) or (isinstance(m, PlainNet) and m.half)):
        load_weights(ctx, directory, "model.init checkpoint")
        return
    if not (directory / META).is_file() or spec_backbone(read_meta(directory)["spec"])[0] is None:
        # Not a full-resolution network built by name: an exact load (or its clear error).
        load_weights(ctx, directory, "model.init checkpoint")
        return
    trained, _ = load_model(directory, num_classes=ctx.num_classes, allow_code=recipe_code(ctx.cfg))
    try:
        report = init_from_trained(m, trained.to(ctx.env.device))
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"The model.init checkpoint {directory} holds a trained network that "
            f"{ctx.cfg.model.name!r} cannot start from ({first_line(e)}). Build the "
            f"model from the same backbone and arguments as the trained network."
        ) from e
    what = "; ".join(f"{k}: {v}" for k, v in report.items())
    ctx.log(f"Started from the trained network in {directory} ({what}).")


def restore_history(
    ctx: RunContext, start_stage: int, resume_state: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(metrics rows, stage results) of the stages before `start_stage`, from their stage
    checkpoints; a per-epoch checkpoint being resumed holds the whole history to its epoch."""
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    done = rundir.inspect(ctx.out).stages
    for j in range(1, start_stage):
        if j in done:
            rows += done[j].get("history", [])
            results[str(j)] = done[j].get("result")
    history = list(resume_state[1]["history"]) if resume_state is not None else rows
    return history, results


def existing_results(ctx: RunContext) -> dict[str, Any]:
    """The results of a run with nothing left to train: results.json, or what the stage
    checkpoints say when only some of the stages were asked for."""
    doc = rundir.read_results(ctx.out)
    if doc is not None:
        return doc
    st = rundir.inspect(ctx.out)
    return {
        "output_dir": str(ctx.out),
        "complete": len(st.stages) == ctx.n_stages,
        "stages": {str(k): m.get("result") for k, m in st.stages.items()},
        "config": ctx.cfg_dict,
        "fingerprint": ctx.fp,
    }
