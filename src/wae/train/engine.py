"""The training service: :func:`run_training` runs the stages of one config into one directory.

Plain PyTorch, with DistributedDataParallel when launched by torchrun. The project chose this
over Lightning (or Accelerate) for exact control of what a checkpoint holds and how a resume
continues: weights and optimiser state go to safetensors, everything else to JSON, nothing is
pickled, and a resumed run reproduces the uninterrupted one step for step.

A stage is a :class:`~wae.train.config.StageConfig`; nothing says ``if stage == 2``. The parts:

* :mod:`.objective` -- what a stage computes (:class:`StageModule`) and trains;
* :mod:`.setup` -- runtime switches, data and model, checked against every stage;
* :mod:`.stages` -- the orchestrator: plan, starting point, each stage, the end;
* :mod:`.loop` -- one epoch: steps, validation, exactly reseeded per (seed, stage, epoch);
* :mod:`.checkpointing` -- what is written and read back; :mod:`.rundir` -- the directory
  (and :mod:`wae.runlock`, its lock: one run writes a directory at a time).

Exact resume: the data order and augmentation of epoch e of stage k come from a loader seeded
with (seed, k, e), and torch/numpy/python are reseeded from (seed, k, e, rank) at the start of
every epoch. A checkpoint after each epoch holds the weights, optimiser, schedule,
early-stopping and AMP scaler state, and the RNG states (restored for a single process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..runlock import RunLock
from .config import ConfigError, TrainConfig, load_config
from .distributed import setup, teardown
from .hooks import TrainHooks, TrainingError
from .objective import StageModule
from .setup import new_context
from .stages import Trainer

__all__ = ["StageModule", "TrainHooks", "TrainingError", "run_training"]


def _stage_range(stages: int | Sequence[int] | None) -> list[int] | None:
    """`stages` as a sorted list of consecutive stage numbers (None: all)."""
    if stages is None:
        return None
    stages = sorted([stages] if isinstance(stages, int) else stages)
    if stages != list(range(stages[0], stages[-1] + 1)):
        raise ConfigError(f"stages must be consecutive, got {stages}.")
    return stages


def run_training(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    overwrite: bool = False,
    *,
    stages: int | Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    hooks: TrainHooks | None = None,
) -> dict[str, Any]:
    """Train a model through the stages of `config` into `output_dir`; returns the results.

    Args:
        config: a TrainConfig, a dict shaped like the TOML, the path of a TOML recipe, a
            packaged recipe's name, or a run's ``config.json``.
        output_dir: where checkpoints, metrics.csv, config.json and results.json go.
        resume: continue the run in `output_dir` from its newest checkpoint (same config).
        overwrite: replace a run in `output_dir` (its files are moved to replaced-<time>/).
        stages: run only this stage (1-based) or these consecutive stages; default all.
        overrides: ``KEY=VALUE`` strings applied to `config` (``"stages.2.lr=0.01"``).
        hooks: :class:`TrainHooks` callbacks.

    Returns (also written to results.json when the last stage completes): ``complete``,
    ``stopped`` (runtime.max_epochs_this_run), ``stages`` {"1": {name, epochs_run, val_*}},
    ``final_checkpoint`` (OUT/final), ``test`` (an :func:`~wae.train.evaluate` dict on
    eval.split, with ``noise`` for eval.noise_vars), ``config`` (resolved) and ``fingerprint``.

    Launched by torchrun, every process calls this; rank 0 writes the files. The run owns
    `output_dir` while it writes (an OS-level lock, :mod:`wae.runlock`): another run into it
    is refused with :class:`~wae.runlock.RunLockedError` naming the holder; an `output_dir`
    that cannot be written raises :class:`~wae.outputs.OutputError` before any work.
    """
    cfg = load_config(config, overrides)
    stage_list = _stage_range(stages)
    lock = RunLock(output_dir, "wae train")  # checks the path; locked at the first write
    env = setup(cfg.runtime.device)
    try:
        ctx = new_context(cfg, lock.dir, env, hooks)
        return Trainer(ctx, lock).run(stage_list, resume, overwrite)
    finally:
        lock.release()
        teardown(env)
