"""The stage orchestrator: which stages run and from where, each stage's set-up and epochs, and
the end of the run (final checkpoint, test evaluation, results.json).

Each stage starts from the previous stage's end (``OUT/stage<k-1>``) with a fresh optimiser;
``calibrate_norms`` re-estimates the FixedNorm statistics of I_L / I_H from the training images
(no augmentation) before the stage's first epoch. A resumed stage restores its optimiser,
schedule, early-stopping and fp16 gradient-scaler state (and, for one process, the RNG states)
from the newest per-epoch checkpoint. The final test evaluation runs in float32 whatever
runtime.precision trained in; results.json records the precision used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ..data import build_loader
from ..errors import WAEError
from ..runlock import RunLock
from . import checkpointing as ckpt
from . import rundir
from .config import ConfigError, StageConfig
from .datasets import build_datasets
from .evaluate import evaluate
from .loop import StageRun, log_epoch, run_epoch, val_loader
from .objective import StageModule, make_optimizer, trainable
from .schedule import LRSchedule, Monitor
from .setup import RunContext, build_data, build_model, build_teacher, configure_runtime
from .state import load_train_state, optimizer_from_flat, restore_rng

__all__ = ["Trainer"]


def _check_unchanged(out: Path, plan: rundir.RunPlan, lock: RunLock) -> None:
    """Refuse (releasing `lock`) when OUT changed between planning and taking its lock: another
    run wrote into it meanwhile, so the plan is stale."""
    now = rundir.inspect(out)
    if now.same_as(plan.seen):
        return
    lock.release()
    what = ", ".join(now.ours) or "nothing of a run"
    raise rundir.RunDirError(
        f"{out} changed while this run was being set up: another run wrote into it (it now "
        f"holds {what}). Nothing was written by this one. Run the command again to see what is "
        f"there (then --resume, --overwrite or another output directory)."
    )


class Trainer:
    """Runs stages ``first..last`` of a run (see :func:`wae.train.run_training`)."""

    def __init__(self, ctx: RunContext, lock: RunLock | None = None) -> None:
        self.ctx = ctx
        self.lock = lock if lock is not None else RunLock(ctx.out, "wae train")
        self.history: list[dict[str, Any]] = []  # metrics rows of the whole run so far
        self.stage_results: dict[str, Any] = {}  # "k" -> {name, epochs_run, val_*}
        self.epochs_this_run = 0
        self.stopped = False  # by runtime.max_epochs_this_run

    # -- the run ------------------------------------------------------------------------------

    def run(self, stages: Sequence[int] | None, resume: bool, overwrite: bool) -> dict[str, Any]:
        """Plan (before anything is written), build, then run each stage and finish; OUT's
        lock (taken at the first write) is released however this ends."""
        try:
            return self._run(stages, resume, overwrite)
        finally:
            self.lock.release()

    def _run(self, stages: Sequence[int] | None, resume: bool, overwrite: bool) -> dict[str, Any]:
        ctx = self.ctx
        self._own_dir(None)  # another run writing OUT: refused before any work
        first, last = (min(stages), max(stages)) if stages else (1, ctx.n_stages)
        if first < 1 or last > ctx.n_stages:
            raise ConfigError(
                f"--stage {first if first < 1 else last} does not exist: the config has stages "
                f"1..{ctx.n_stages}."
            )
        plan = rundir.plan_run(
            ctx.out,
            ctx.cfg_dict,
            first=first,
            last=last,
            resume=resume,
            overwrite=overwrite,
            has_init=bool(ctx.cfg.model.init),
        )
        configure_runtime(ctx.cfg, ctx.env)
        build_data(ctx)
        for k in range(first, last + 1):  # a batch that cannot fit fails now, not after stage 1
            self._steps_per_epoch(k, ctx.cfg.stages[k - 1])
        build_model(ctx)
        build_teacher(ctx)
        if plan.start_stage > last:
            return self._nothing_left(plan, last)
        resume_state = self._starting_point(plan)
        self._open_output(plan)
        try:
            for k in range(plan.start_stage, last + 1):
                self._run_stage(k, resume_state if k == plan.start_stage else None)
                if self.stopped:
                    break
        finally:
            if ctx.tb is not None:
                ctx.tb.close()
        return self._finish(last)

    def _nothing_left(self, plan: rundir.RunPlan, last: int) -> dict[str, Any]:
        """Stages first..last are done: finish a run killed before final/, else report."""
        ctx = self.ctx
        for note in plan.notes:
            ctx.log(note)
        if last == ctx.n_stages and rundir.read_results(ctx.out) is None:
            # Killed after the last stage ended but before final/ and results.json.
            self._own_dir(plan)
            ckpt.load_weights(ctx, rundir.stage_dir(ctx.out, last), "last stage's checkpoint")
            self.history, self.stage_results = ckpt.restore_history(ctx, last + 1, None)
            return self._finish(last)
        return ckpt.existing_results(ctx)

    def _starting_point(self, plan: rundir.RunPlan) -> Any:
        """Load the weights the first stage to run starts from, and the history before it;
        returns the per-epoch train state to resume (or None). Read before anything is
        written, so a bad checkpoint changes nothing."""
        ctx = self.ctx
        resume_state = None
        if plan.resume_dir is not None:
            ckpt.load_weights(ctx, plan.resume_dir, "checkpoint")
            resume_state = load_train_state(plan.resume_dir)
        elif plan.init_from is not None:
            ckpt.load_weights(ctx, plan.init_from, "previous stage's checkpoint")
        elif ctx.cfg.model.init:
            ckpt.load_init(ctx, Path(ctx.cfg.model.init))
        self.history, self.stage_results = ckpt.restore_history(ctx, plan.start_stage, resume_state)
        return resume_state

    def _open_output(self, plan: rundir.RunPlan) -> None:
        """Take OUT; rank 0: move replaced files aside, write config.json, open TensorBoard."""
        ctx = self.ctx
        self._own_dir(plan)
        if ctx.env.is_main:
            for note in plan.notes:
                ctx.log(note)
            moved = rundir.move_aside(ctx.out, plan.move)
            if moved is not None:
                ctx.log(f"Moved the replaced files of the previous run to {moved}.")
            ckpt.write_config(ctx)
            if ctx.cfg.runtime.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    ctx.tb = SummaryWriter(str(ctx.out / rundir.TB))
                except ImportError:
                    ctx.log("Note: runtime.tensorboard needs the tensorboard package; skipped.")
        ctx.env.barrier()

    def _own_dir(self, plan: rundir.RunPlan | None) -> None:
        """Rank 0 checks that no other run holds OUT (`plan` None), or takes OUT's lock and
        checks that OUT still holds what `plan` was made from; every rank raises if refused."""
        ctx = self.ctx
        err: WAEError | None = None
        if ctx.env.is_main:
            try:
                if plan is None:
                    self.lock.check()
                else:
                    self.lock.acquire()
                    _check_unchanged(ctx.out, plan, self.lock)
            except WAEError as e:
                err = e
        if ctx.env.any(err is not None):
            raise err or rundir.RunDirError(f"Rank 0 could not take {ctx.out}; see its message.")

    # -- one stage ----------------------------------------------------------------------------

    def _run_stage(self, k: int, resume_state: Any) -> None:
        """Stage `k`'s epochs (from a resumed epoch if given), then its stage checkpoint."""
        ctx = self.ctx
        st = self._prepare_stage(k, resume_state)
        limit = ctx.cfg.runtime.max_epochs_this_run
        last_row: dict[str, Any] | None = None
        start = int(resume_state[1]["epoch"]) if resume_state is not None else 0
        for epoch in range(start, st.s.epochs):
            if st.s.early_stop_patience and st.early.bad_epochs >= st.s.early_stop_patience:
                ctx.log(
                    f"{st.label}: no improvement of {st.s.monitor} for "
                    f"{st.early.bad_epochs} epochs; stage ends early."
                )
                break
            row = run_epoch(ctx, st, epoch)
            self.history.append(row)
            last_row = row
            if ctx.env.is_main:
                ckpt.save_epoch(
                    ctx, k, epoch + 1, st.opt, st.sched, st.early, st.scaler, self.history
                )
                log_epoch(ctx, st, row)
            ctx.env.barrier()
            ctx.hooks.on_epoch_end(k, epoch + 1, row, ctx.model)
            self.epochs_this_run += 1
            if limit is not None and self.epochs_this_run >= limit and epoch + 1 < st.s.epochs:
                ctx.log(
                    f"Stopping after {limit} epoch(s) this run (runtime.max_epochs_this_run);"
                    f" continue with --resume (the run's own config, no --set needed: wae "
                    f"train -c {ctx.out / rundir.CONFIG} -o {ctx.out} --resume)."
                )
                self.stopped = True
                return
        self._complete_stage(k, st.s, last_row)
        if limit is not None and self.epochs_this_run >= limit and k < ctx.n_stages:
            self.stopped = True

    def _prepare_stage(self, k: int, resume_state: Any) -> StageRun:
        """Stage `k`'s trainable parameters, optimiser, schedule and modules."""
        ctx, s = self.ctx, self.ctx.cfg.stages[k - 1]
        label = f"stage {k}/{ctx.n_stages}" + (f" ({s.name})" if s.name else "")
        steps = self._steps_per_epoch(k, s)
        named = self._train_only(k, s)
        mode = "max" if s.monitor == "val_top1" else "min"
        # fp16's narrow range needs loss scaling; bf16 has float32's range and needs none.
        scaler = torch.amp.GradScaler("cuda") if ctx.amp == "fp16" else None
        opt = make_optimizer(s, [p for _, p in named])
        sched = LRSchedule(s.schedule, s.lr, s.epochs, steps, mode)
        early = Monitor(mode, s.schedule.threshold)
        if resume_state is not None:
            self._restore_stage(label, s, resume_state, opt, sched, early, scaler)
        else:
            ctx.log(
                f"{label}: {s.epochs} epoch(s), {steps} steps of {s.batch_size}, "
                f"{s.optimizer} lr {s.lr:g}, losses {s.losses}, trains "
                f"{sum(p.numel() for _, p in named):,} parameters"
                + (f", frozen {s.freeze}" if s.freeze else "")
            )
            if s.calibrate_norms:
                self._calibrate(k, s)
        soft = self._soft_targets() if s.distill and ctx.cfg.teacher.cache else None
        stage_mod = StageModule(ctx.model, s, ctx.teacher, ctx.cfg.teacher, soft_targets=soft)
        return StageRun(
            k=k,
            s=s,
            label=label,
            steps=steps,
            opt=opt,
            sched=sched,
            early=early,
            scaler=scaler,
            stage_mod=stage_mod,
            runner=self._distribute(stage_mod),
            val_loader=val_loader(ctx),
            epochs_before=sum(c.epochs for c in ctx.cfg.stages[: k - 1]),
        )

    def _soft_targets(self) -> torch.Tensor:
        """The teacher's logits of every training image, computed on first use
        (``teacher.cache``, :mod:`.soft_targets`) and kept for the run's other stages."""
        ctx = self.ctx
        if ctx.soft_targets is None:
            from .soft_targets import teacher_logits

            t0 = time.perf_counter()
            ctx.soft_targets = teacher_logits(
                ctx.teacher,
                ctx.train_ds,
                batch=ctx.batch,
                autocast=ctx.autocast,
                batch_size=ctx.cfg.eval.batch_size,
            )
            ctx.log(
                f"teacher.cache: the teacher's logits of the {len(ctx.soft_targets):,} training "
                f"images computed once ({time.perf_counter() - t0:.1f}s), used by every "
                f"distilling stage"
            )
        return ctx.soft_targets

    def _train_only(self, k: int, s: StageConfig) -> list[tuple[str, torch.nn.Parameter]]:
        """Make exactly stage `k`'s trainable parameters require gradients; returns them."""
        named = trainable(self.ctx.model, s)
        if not named:
            raise ConfigError(f"stages.{k} trains nothing: every parameter it uses is frozen.")
        for p in self.ctx.model.parameters():
            p.requires_grad_(False)
        for _, p in named:
            p.requires_grad_(True)
        return named

    def _distribute(self, stage_mod: StageModule) -> torch.nn.Module:
        """`stage_mod` wrapped in DistributedDataParallel when there are several processes."""
        env = self.ctx.env
        if not env.distributed:
            return stage_mod
        dev = env.device
        return DistributedDataParallel(
            stage_mod, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    def _steps_per_epoch(self, k: int, s: StageConfig) -> int:
        """Optimiser steps per epoch; refuses a batch that does not split or does not fit."""
        env, n = self.ctx.env, len(self.ctx.train_ds)
        if s.batch_size % env.world_size:
            raise ConfigError(
                f"stages.{k}.batch_size = {s.batch_size} is the global batch; it must divide "
                f"evenly over {env.world_size} processes."
            )
        steps = (n // env.world_size) // (s.batch_size // env.world_size)
        if steps < 1:
            raise ConfigError(
                f"stages.{k}.batch_size = {s.batch_size} exceeds the training set "
                f"({n} images over {env.world_size} process(es)). Lower the "
                f"batch size or use more data."
            )
        return steps

    def _restore_stage(
        self,
        label: str,
        s: StageConfig,
        resume_state: Any,
        opt: torch.optim.Optimizer,
        sched: LRSchedule,
        early: Monitor,
        scaler: Any,
    ) -> None:
        """Continue a stage from a per-epoch checkpoint's train state."""
        ctx, env = self.ctx, self.ctx.env
        tensors, doc = resume_state
        opt.load_state_dict(optimizer_from_flat(tensors, doc["optimizer"]))
        sched.load_state_dict(doc["schedule"])
        early.load_state_dict(doc["early_stop"])
        if scaler is not None and doc.get("scaler"):
            scaler.load_state_dict(doc["scaler"])
        if env.world_size == 1:
            restore_rng(tensors, doc["rng"])
        if doc.get("world_size", 1) != env.world_size:
            ctx.log(
                f"Note: the checkpoint was written by {doc.get('world_size')} process(es), "
                f"this run has {env.world_size}; the result will not be bit-identical."
            )
        ctx.log(f"{label}: resuming after epoch {int(doc['epoch'])}/{s.epochs}")

    def _calibrate(self, k: int, s: StageConfig) -> None:
        """Re-estimate the FixedNorm statistics on the training images, unaugmented."""
        # Every rank computes the same statistics from the same images: no communication,
        # and the same numbers as a single process.
        ctx = self.ctx
        ds = ctx.train_ds.with_indices(torch.arange(len(ctx.train_ds)), False, "train")
        loader = build_loader(
            ds,
            ctx.cfg.eval.batch_size,
            shuffle=False,
            seed=ctx.cfg.seed,
            num_workers=ctx.cfg.runtime.num_workers,
        )
        ctx.log(f"stage {k}: calibrating the I_L/I_H normalisation on the training images")
        with ctx.autocast():
            ctx.model.calibrate_norms(loader, max_batches=s.calibrate_batches)

    def _complete_stage(self, k: int, s: StageConfig, last_row: dict[str, Any] | None) -> None:
        """Record stage `k`'s result and write OUT/stage<k>."""
        ctx = self.ctx
        rows = [r for r in self.history if r["stage"] == k]
        last_row = last_row or (rows[-1] if rows else {})
        result = {
            "name": s.name,
            "epochs_run": len(rows),
            **{key: v for key, v in last_row.items() if key.startswith("val_")},
        }
        self.stage_results[str(k)] = result
        if ctx.env.is_main:
            ckpt.save_stage(ctx, k, result, rows)
        ctx.env.barrier()

    # -- the end ------------------------------------------------------------------------------

    def _finish(self, last: int) -> dict[str, Any]:
        """The run's result; when the last stage completed, also OUT/final, the evaluation on
        eval.split and results.json."""
        ctx = self.ctx
        complete = not self.stopped and last == ctx.n_stages
        result: dict[str, Any] = {
            "output_dir": str(ctx.out),
            "complete": complete,
            "stopped": self.stopped,
            "stages": dict(self.stage_results),
            "final_checkpoint": None,
            "test": None,
            "config": ctx.cfg_dict,
            "fingerprint": ctx.fp,
            # What this process trained in (a resumed run may have started in another).
            "precision": ctx.precision,
            "precision_requested": ctx.cfg.runtime.precision,
            "precision_note": ctx.precision_note,
        }
        if not complete:
            return result
        final = ctx.out / rundir.FINAL
        if ctx.env.is_main:
            ckpt.save_final(ctx)
        result["final_checkpoint"] = str(final)
        if ctx.cfg.eval.split:
            result["test"] = self._test()
            t = result["test"]
            ctx.log(
                f"final: {final}  {t['split']} top1 {t['top1']:.2f}%  top5 {t['top5']:.2f}%"
                + "".join(f"  noise {r['var']:g}: {r['top1']:.2f}%" for r in t["noise"])
            )
        if ctx.env.is_main:
            ckpt.write_results(ctx, result)
        ctx.env.barrier()
        return result

    def _test(self) -> dict[str, Any]:
        """The final model on eval.split (+ eval.noise_vars); files fetched at the start. In
        float32 whatever the training precision, so that accuracies of runs compare."""
        ctx, cfg = self.ctx, self.ctx.cfg
        test = build_datasets(cfg, ("test",), download=False)["test"]
        res = evaluate(
            ctx.model,
            test,
            cfg.eval.noise_vars,
            batch_size=cfg.eval.batch_size,
            device=ctx.env.device,
            seed=cfg.seed,
            num_workers=cfg.runtime.num_workers,
            env=ctx.env,
            memory_format=ctx.memory_format,
        )
        res["split"] = cfg.eval.split
        return res
