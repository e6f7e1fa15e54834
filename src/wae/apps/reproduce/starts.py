"""The checkpoints that start I_L alone, the pruned network and the distillation rows, made
once and named by what made them (so a changed recipe gives a new path, hence a new
fingerprint of the run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import (
    META,
    CheckpointMeta,
    load_checkpoint,
    load_model,
    read_meta,
    save_checkpoint,
)
from ...data import build_loader
from ...models import create_model
from ...models.pruned import changed_shapes
from ...train import build_datasets, rundir
from ...train.config import fingerprint, stage_fingerprint
from .methods import ReproduceError, short_hash
from .pruning import taylor_prune
from .rundirs import run_dir

__all__ = [
    "grad_batches",
    "il_init_dir",
    "kd_teacher_dir",
    "make_il_init",
    "make_kd_teacher",
    "make_pruned",
    "pruned_dir",
    "read_pruned",
]

_SIZE_KEYS = ("num_classes", "in_chans", "input_size")  # given by the data, not the spec


def _sizes(m: CheckpointMeta) -> dict[str, Any]:
    """The builder arguments `_SIZE_KEYS` of a checkpoint's model, from its metadata."""
    return {"num_classes": m.num_classes, "in_chans": m.in_chans, "input_size": m.input_size}


# --------------------------------------------------------------------------------------------
# I_L alone
# --------------------------------------------------------------------------------------------


def il_init_dir(out: Path, wae_cfg: dict[str, Any], seed: int) -> Path:
    """Where I_L alone's start lives; named by what decides its content (the WAE's stage 1
    and the seed), so a changed recipe gives a new path and hence a new fingerprint."""
    key = {"wae_stage1": stage_fingerprint(wae_cfg, 1), "seed": seed}
    return run_dir(out, "il", seed) / f"init-{short_hash(key)}"


def make_il_init(wae_run: Path, il_cfg: dict[str, Any], dest: Path) -> Path:
    """I_L alone's starting weights: its own seeded initialisation (as the engine would draw
    it) with the WAE and I_L normalisation copied from the WAE run's stage-1 checkpoint."""
    if (dest / META).is_file():
        return dest
    doc, state = load_checkpoint(wae_run / "stage1")
    m = CheckpointMeta.from_doc(doc, wae_run / "stage1")
    torch.manual_seed(il_cfg["seed"])  # the engine seeds the same way before building
    model = create_model(il_cfg["model"]["name"], **_sizes(m), **il_cfg["model"]["kwargs"])
    own = model.state_dict()
    copied = [k for k in state if k.startswith(("wae.", "norm_low.")) and k in own]
    if not any(k.startswith("wae.") for k in copied):
        raise ReproduceError(f"{wae_run}/stage1 holds no WAE weights to start I_L alone from.")
    for k in copied:
        own[k] = state[k]
    model.load_state_dict(own)
    save_checkpoint(
        dest,
        model,
        meta={**m.meta, "source": str(wae_run / "stage1"), "copied": "wae.*, norm_low.*"},
    )
    return dest


# --------------------------------------------------------------------------------------------
# The distillation rows' start and teacher
# --------------------------------------------------------------------------------------------


def kd_teacher_dir(out: Path, full_cfg: dict[str, Any], seed: int) -> Path:
    """Where the distillation rows' start and teacher lives: a copy of the full run's final
    checkpoint named by the full network's config, so that retraining it with another config
    gives a new path, hence new fingerprints of the rows it taught."""
    key = {"full": fingerprint(full_cfg), "seed": seed}
    return run_dir(out, "full", seed) / f"teacher-{short_hash(key)}"


def make_kd_teacher(full_run: Path, dest: Path) -> Path:
    """Copy the full run's final checkpoint to `dest` (:func:`kd_teacher_dir`), once."""
    if (dest / META).is_file():
        return dest
    src = full_run / rundir.FINAL
    model, doc = load_model(src)
    save_checkpoint(dest, model, meta={**doc["meta"], "source": str(src)}, config=doc["config"])
    return dest


# --------------------------------------------------------------------------------------------
# The pruned network
# --------------------------------------------------------------------------------------------


def grad_batches(quick: bool) -> tuple[int, int]:
    """(batches, batch size) of the gradients that rank channels for Taylor pruning."""
    return (2, 64) if quick else (2, 128)


def pruned_dir(
    out: Path, full_cfg: dict[str, Any], seed: int, target_macs: float, grad: Sequence[int]
) -> Path:
    """Where the pruned network's start lives; named by what decides it (the full network's
    config, the MAC target, the gradient batches), so a change gives a new fingerprint."""
    key = {
        "full": fingerprint(full_cfg),
        "target_macs": round(float(target_macs)),
        "grad": list(grad),
        "seed": seed,
        "method": "taylor-v1",
    }
    return run_dir(out, "taylor", seed) / f"pruned-{short_hash(key)}"


def read_pruned(dest: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(model config, pruning log) of a pruning already on disk, else None."""
    if not (dest / META).is_file():
        return None
    doc = read_meta(dest)
    return _pruned_model_cfg(doc["spec"]["kwargs"], dest), doc["meta"]["pruning"]


def make_pruned(
    out: Path,
    full_cfg: dict[str, Any],
    seed: int,
    target_macs: float,
    *,
    grad_batches: int,
    grad_batch_size: int,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prune the trained full network (Taylor) to about `target_macs`; returns the pruned
    model's ``{"name", "kwargs", "init"}`` for the config and the pruning log. The pruned
    weights are saved once under OUT/runs/taylor/seed<s>/pruned-<hash> and reused."""
    full_dir = run_dir(out, "full", seed) / rundir.FINAL
    dest = pruned_dir(out, full_cfg, seed, target_macs, (grad_batches, grad_batch_size))
    done = read_pruned(dest)
    if done is not None:
        return done
    log(
        f"  pruning the full network (seed {seed}) with Taylor importance to about "
        f"{target_macs / 1e6:.2f} MMACs"
    )
    full, doc = load_model(full_dir)
    m = CheckpointMeta.from_doc(doc, full_dir)
    batches = _gradient_batches(full_cfg, grad_batches, grad_batch_size)
    example = torch.zeros(1, m.in_chans, *m.input_hw)
    pruned, plog = taylor_prune(full, batches, target_macs, example, num_classes=m.num_classes)
    kwargs = {
        "base": m.spec["name"],
        "shapes": changed_shapes(full, pruned),
        **{k: v for k, v in m.spec["kwargs"].items() if k not in _SIZE_KEYS},
    }
    rebuilt = create_model("pruned_net", **_sizes(m), **kwargs)
    rebuilt.load_state_dict(pruned.state_dict())  # proves the builder rebuilds it exactly
    log(
        f"  pruned to {plog['final_macs'] / 1e6:.2f} MMACs (full: {plog['base_macs'] / 1e6:.2f})"
        + (f"; {plog['note']}" if plog.get("note") else "")
    )
    plog["source"] = str(full_dir)
    plog["channels"] = {
        k: v[0]
        for k, v in kwargs["shapes"].items()
        if len(v) == 3  # conv out-channels
    }
    save_checkpoint(dest, rebuilt, meta={**m.meta, "pruning": plog})
    return _pruned_model_cfg(kwargs, dest), plog


def _gradient_batches(
    full_cfg: dict[str, Any], n: int, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `n` shuffled batches of the full network's training images (its subset and
    hold-out, without augmentation): the gradients that rank channels come from these."""
    ds = build_datasets(full_cfg, ["train"], augment=False)["train"]
    loader = build_loader(ds, batch_size, shuffle=True, seed=full_cfg["seed"])
    batches = []
    for i, b in enumerate(loader):
        if i >= n:
            break
        batches.append(b)
    return batches


def _pruned_model_cfg(kwargs: dict[str, Any], dest: Path) -> dict[str, Any]:
    kw = {k: v for k, v in kwargs.items() if k not in _SIZE_KEYS}
    return {"name": "pruned_net", "kwargs": kw, "init": str(dest)}
