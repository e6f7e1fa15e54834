"""The training engine: stages described by configuration, run by one loop, resumable exactly.

Plain PyTorch, with DistributedDataParallel when launched by torchrun. The project chose this
over Lightning (or Accelerate) for exact control of what a checkpoint holds and how a resume
continues: weights and optimiser state go to safetensors, everything else to JSON, nothing is
pickled, and a resumed run reproduces the uninterrupted one step for step.

A stage is a :class:`~wae.train.config.StageConfig`; the engine has no ``if stage == 2``:

* the losses say what runs: without the classification loss only the WAE runs (stage 1 of the
  paper; the classifier is neither run nor changed); the decoder runs only for the transform
  loss (stage 2 passes ``decode=False``);
* the optimiser holds the parameters that run and are not frozen (``freeze`` prefixes, e.g.
  ``["wae"]`` in stage 2); frozen modules are also kept in eval mode, so batch-norm
  statistics inside them do not move either;
* ``calibrate_norms`` re-estimates the FixedNorm statistics of I_L / I_H from the training
  images (no augmentation) before the stage's first epoch;
* each stage starts from the previous stage's end (``OUT/stage<k-1>``) with a fresh optimiser.

Exact resume: the data order and augmentation of epoch e of stage k come from a loader seeded
with (seed, k, e), and torch/numpy/python are reseeded from (seed, k, e, rank) at the start of
every epoch, so an epoch's draws do not depend on what ran before it. A checkpoint after each
epoch holds the weights, optimiser, schedule, early-stopping and AMP scaler state. The RNG
states are saved too (and restored for a single process) for code that draws between epochs.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..autoencoder import WaveletAutoEncoder, energy_loss, reconstruction_loss
from ..checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    save_checkpoint,
)
from ..data import balanced_subset, build_dataset, build_loader, train_val_split
from ..errors import WAEError
from ..models import WAENet, classification_loss, create_model, model_cfg
from . import rundir
from .config import (
    ConfigError,
    StageConfig,
    TrainConfig,
    config_to_dict,
    fingerprint,
    load_config,
    stage_fingerprint,
)
from .distributed import DistEnv, setup, teardown
from .evaluate import evaluate
from .schedule import LRSchedule, Monitor
from .state import (
    capture_rng,
    load_train_state,
    optimizer_from_flat,
    optimizer_to_flat,
    restore_rng,
    save_train_state,
)

__all__ = ["StageModule", "TrainHooks", "TrainingError", "run_training"]

CSV_COLUMNS = [
    "stage",
    "stage_name",
    "epoch",
    "global_epoch",
    "lr",
    "train_loss",
    "train_classification",
    "train_transform",
    "train_reconstruction",
    "train_energy",
    "val_loss",
    "val_classification",
    "val_transform",
    "val_reconstruction",
    "val_energy",
    "val_top1",
    "val_top5",
    "epoch_time_s",
    "images_per_s",
]


class TrainingError(WAEError, RuntimeError):
    """Training cannot go on (a non-finite loss, a model that does not fit the stage...)."""


class TrainHooks:
    """Callbacks for embedding code and tests; override what you need (all are no-ops).

    ``stage`` and ``epoch`` are 1-based, ``step`` 0-based within the epoch.
    """

    def on_step(self, stage: int, epoch: int, step: int, model: nn.Module, loss: float) -> None:  # noqa: D401
        """After each optimiser step."""

    def on_epoch_end(self, stage: int, epoch: int, row: dict[str, Any], model: nn.Module) -> None:
        """After each epoch's checkpoint is written."""


# --------------------------------------------------------------------------------------------
# The per-stage forward: model + losses, as one module so DDP sees the whole computation
# --------------------------------------------------------------------------------------------


class StageModule(nn.Module):
    """Runs what a stage needs and returns its losses.

    forward(x (N, C, H, W), y (N,)) -> (total loss (), {term: loss ()}, logits (N, K) or None).
    Terms: ``classification`` (L_c = CE(s_L) + CE(s_c) for WAENet, CE for a plain net),
    ``transform`` (L_t = reconstruction + lam * energy), and its two parts. Losses are
    computed in float32 even under autocast.
    """

    def __init__(self, model: nn.Module, stage: StageConfig) -> None:
        super().__init__()
        self.model = model
        self.is_wae = isinstance(model, WAENet)
        self.classify, self.decode = stage.classify, stage.decode
        self.weights = {k: float(w) for k, w in stage.losses.items() if w > 0}
        self.lam, self.reduction = stage.lam, stage.reduction
        self.label_smoothing = stage.label_smoothing

    def forward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        m = self.model
        terms: dict[str, torch.Tensor] = {}
        logits = None
        parts = None
        if not self.classify:
            parts = m.decompose(x, decode=True)  # the WAE alone: the classifier does not run
        elif self.is_wae:
            out = m.forward_train(x, decode=self.decode)
            parts = out.parts
            s_low = out.s_low.float()
            s_fused = out.s_fused.float() if out.s_fused is not None else None
            terms["classification"] = classification_loss(
                out._replace(s_low=s_low, s_fused=s_fused), y, self.label_smoothing
            )
            logits = s_low if s_fused is None else (s_low + s_fused) / 2
        else:
            logits = m(x).float()
            terms["classification"] = F.cross_entropy(
                logits, y, label_smoothing=self.label_smoothing
            )
        if self.decode:
            xf = x.float()
            rec = reconstruction_loss(xf, parts.recon.float(), self.reduction)
            en = energy_loss(parts.high.float(), self.reduction)
            terms["reconstruction"], terms["energy"] = rec, en
            terms["transform"] = rec + self.lam * en
        total = sum(w * terms[k] for k, w in self.weights.items())
        return total, terms, logits


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _derive(*parts: int) -> int:
    """A 31-bit seed from integers: independent streams per (seed, stage, epoch[, rank])."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _matches_prefix(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _progress_enabled(mode: str) -> bool:
    if mode != "auto":
        return mode == "on"
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return sys.stderr.isatty() and not ci


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


class _Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, env: DistEnv, hooks: TrainHooks | None) -> None:
        self.cfg, self.out, self.env = cfg, out, env
        self.hooks = hooks or TrainHooks()
        self.cfg_dict = config_to_dict(cfg)
        self.fp = fingerprint(self.cfg_dict)
        self.n_stages = len(cfg.stages)
        self.history: list[dict[str, Any]] = []
        self.stage_results: dict[str, Any] = {}
        self.epochs_this_run = 0
        self.stopped = False
        self.tb = None
        rt = cfg.runtime
        self.progress = _progress_enabled(rt.progress) and env.is_main
        self.amp: str | None = None
        if rt.amp:
            if env.device.type == "cuda":
                self.amp = rt.amp_dtype
            else:
                self.log(f"Note: runtime.amp applies on CUDA only; running {env.device} in fp32.")

    # -- output ---------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        if self.env.is_main and self.cfg.runtime.verbose:
            print(msg, flush=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
            return torch.autocast(self.env.device.type, dtype=dtype)
        return contextlib.nullcontext()

    # -- setup ----------------------------------------------------------------------------------

    def _runtime_setup(self) -> None:
        rt = self.cfg.runtime
        if rt.threads:
            torch.set_num_threads(rt.threads)
        if rt.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _build_data(self) -> None:
        c = self.cfg
        mc = model_cfg(c.model.name)
        d = c.data
        self.input_size = d.input_size or mc["input_size"]
        self.in_chans = d.in_chans or mc["in_chans"]
        common = dict(
            data_dir=d.data_dir,
            input_size=self.input_size,
            in_chans=self.in_chans,
            seed=c.seed,
            skip_bad=d.skip_bad,
            download=d.download and self.env.is_main,  # the others wait, then find the files
        )
        if d.download and self.env.distributed and not self.env.is_main:
            self.env.barrier()  # rank 0 downloads first
        train = build_dataset(
            d.dataset, "train", train_transforms=d.augment, subset=d.subset, **common
        )
        if d.val_fraction > 0:
            train, val = train_val_split(train, d.val_fraction, c.seed)
            if not d.augment:
                train = train.with_indices(torch.arange(len(train)), False, "train")
            if d.val_subset is not None and d.val_subset < len(val):
                keep = balanced_subset(val.targets, d.val_subset, c.seed)
                val = val.with_indices(keep, False, "val")
        else:
            val = build_dataset(d.dataset, d.val_split, subset=d.val_subset, **common)
        if d.download and self.env.distributed and self.env.is_main:
            self.env.barrier()
        if val.num_classes != train.num_classes:
            raise ConfigError(
                f"The validation split has {val.num_classes} classes but train has "
                f"{train.num_classes}: check data.val_split."
            )
        self.train_ds, self.val_ds = train, val
        self.num_classes = train.num_classes
        self.data_meta = {
            "dataset": d.dataset,
            "classes": list(train.classes),
            "num_classes": train.num_classes,
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "mean": list(train.mean),
            "std": list(train.std),
        }

    @property
    def _memory_format(self) -> torch.memory_format:
        cl = self.cfg.runtime.channels_last
        return torch.channels_last if cl else torch.contiguous_format

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) on the run's device, in its memory format."""
        x = x.to(self.env.device, non_blocking=True)
        return x.contiguous(memory_format=self._memory_format)

    def _build_model(self) -> None:
        c = self.cfg
        torch.manual_seed(c.seed)  # the same initial weights in every run with this seed
        try:
            model = create_model(
                c.model.name,
                num_classes=self.num_classes,
                in_chans=self.in_chans,
                input_size=self.input_size,
                **c.model.kwargs,
            )
        except ValueError as e:
            if isinstance(e, WAEError):
                raise
            raise ConfigError(f"model.name / model.kwargs: {e}") from e
        except TypeError as e:
            raise ConfigError(
                f"model.kwargs {c.model.kwargs} do not fit {c.model.name!r}: {e}."
            ) from e
        self.model = model.to(self.env.device)
        if self.cfg.runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.is_wae = isinstance(model, WAENet)
        for i, s in enumerate(c.stages, 1):
            self._check_stage_fits(i, s)

    def _check_stage_fits(self, k: int, s: StageConfig) -> None:
        name = self.cfg.model.name
        p = f"stages.{k}"
        if not self.is_wae:
            if s.decode or not s.classify:
                raise ConfigError(
                    f"{p} uses the transform loss, but {name!r} is a plain network with no "
                    f"auto-encoder. Baselines train with one stage of losses = "
                    f"{{ classification = 1.0 }}."
                )
            if s.calibrate_norms:
                raise ConfigError(f"{p}.calibrate_norms: {name!r} has no FixedNorm to calibrate.")
        elif s.decode or not s.classify:
            wae = self.model.wae
            if not (isinstance(wae, WaveletAutoEncoder) and wae.has_decoder):
                raise ConfigError(
                    f"{p} uses the transform loss, but the decomposer of {name!r} "
                    f"({type(wae).__name__}) has no decoder. Use losses = "
                    f"{{ classification = 1.0 }} for the Decomposition+CNN and Wavelet+CNN "
                    f"baselines."
                )
        modules = dict(self.model.named_modules())
        for prefix in s.freeze:
            if prefix not in modules:
                tops = [n for n, _ in self.model.named_children()]
                raise ConfigError(
                    f"{p}.freeze names {prefix!r}, which is not a module of {name!r}. Its "
                    f"top-level modules are: {', '.join(tops)} (deeper names are dotted, e.g. "
                    f"'wae.encoder')."
                )

    def _load_weights(self, directory: Path, what: str) -> dict[str, Any]:
        doc, state = load_checkpoint(directory)
        saved = doc.get("spec", {}).get("kwargs", {}).get("num_classes")
        if saved is not None and saved != self.num_classes:
            raise CheckpointError(
                f"The {what} {directory} has {saved} classes, but the data has "
                f"{self.num_classes}. Use a checkpoint trained on this dataset."
            )
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(
                f"The {what} {directory} does not fit {self.cfg.model.name!r} with "
                f"{self.cfg.model.kwargs or 'default arguments'} ({first}). It holds a "
                f"{doc.get('spec', {}).get('name') or doc.get('spec', {}).get('backbone')!r} "
                f"model; use a checkpoint of the same architecture."
            ) from e
        return doc

    # -- files ----------------------------------------------------------------------------------

    def _meta(self, k: int, **extra: Any) -> dict[str, Any]:
        return {
            **self.data_meta,
            "stage": k,
            "stage_name": self.cfg.stages[k - 1].name,
            "num_stages": self.n_stages,
            "fingerprint": self.fp,
            "stage_fingerprint": stage_fingerprint(self.cfg_dict, k),
            "wae_version": __version__,
            **extra,
        }

    def _write_metrics(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow({k: _fmt(row.get(k)) for k in CSV_COLUMNS})
        atomic_write_bytes(self.out / rundir.METRICS, buf.getvalue().encode())

    def _write_config(self) -> None:
        atomic_write_json(
            self.out / rundir.CONFIG,
            {
                "config": self.cfg_dict,
                "fingerprint": self.fp,
                "wae_version": __version__,
                "torch_version": torch.__version__,
                "world_size": self.env.world_size,
            },
        )

    def _save_epoch(
        self,
        k: int,
        epoch: int,
        opt: torch.optim.Optimizer,
        sched: LRSchedule,
        early: Monitor,
        scaler: Any,
    ) -> None:
        """Rank 0: a new per-epoch checkpoint dir, then the latest pointer, then pruning."""
        ck = self.out / rundir.CKPTS
        name = f"stage{k}-epoch{epoch:04d}"
        d = ck / name
        tensors, odoc = optimizer_to_flat(opt)
        rng_t, rng_doc = capture_rng()
        doc = {
            "stage": k,
            "epoch": epoch,
            "fingerprint": self.fp,
            "stage_fingerprint": stage_fingerprint(self.cfg_dict, k),
            "optimizer": odoc,
            "schedule": sched.state_dict(),
            "early_stop": early.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_doc,
            "history": self.history,
            "world_size": self.env.world_size,
        }
        save_train_state(d, {**tensors, **rng_t}, doc)
        save_checkpoint(d, self.model, meta=self._meta(k, epoch=epoch), config=self.cfg_dict)
        atomic_write_json(
            ck / rundir.LATEST,
            {
                "stage": k,
                "epoch": epoch,
                "dir": name,
                "fingerprint": self.fp,
                "stage_fingerprint": stage_fingerprint(self.cfg_dict, k),
            },
        )
        self._write_metrics()
        # Prune older per-epoch checkpoints (ours, by name), newest keep_checkpoints kept.
        olds = sorted(
            (p for p in ck.iterdir() if p.is_dir() and p.name.startswith("stage")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        keep = {name} | {p.name for p in olds[-self.cfg.runtime.keep_checkpoints :]}
        for p in olds:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    # -- the run --------------------------------------------------------------------------------

    def run(self, stages: Sequence[int] | None, resume: bool, overwrite: bool) -> dict[str, Any]:
        env = self.env
        first, last = (min(stages), max(stages)) if stages else (1, self.n_stages)
        if first < 1 or last > self.n_stages:
            raise ConfigError(
                f"--stage {first if first < 1 else last} does not exist: the config has stages "
                f"1..{self.n_stages}."
            )
        plan = rundir.plan_run(
            self.out,
            self.cfg_dict,
            first=first,
            last=last,
            resume=resume,
            overwrite=overwrite,
            has_init=bool(self.cfg.model.init),
        )
        self._runtime_setup()
        self._build_data()
        self._build_model()
        if plan.start_stage > last:  # nothing left to train
            for note in plan.notes:
                self.log(note)
            if last == self.n_stages and not (self.out / rundir.RESULTS).exists():
                # Killed after the last stage ended but before final/ and results.json.
                self._load_weights(self.out / f"stage{last}", "last stage's checkpoint")
                self._restore_history(rundir.RunPlan(first, last, last + 1), None)
                return self._finish(last)
            return self._existing_results()

        # Starting point (read before anything is written: a bad checkpoint changes nothing).
        resume_state = None
        if plan.resume_dir is not None:
            self._load_weights(plan.resume_dir, "checkpoint")
            resume_state = load_train_state(plan.resume_dir)
        elif plan.init_from is not None:
            self._load_weights(plan.init_from, "previous stage's checkpoint")
        elif self.cfg.model.init:
            self._load_weights(Path(self.cfg.model.init), "model.init checkpoint")
        self._restore_history(plan, resume_state)

        if env.is_main:
            for note in plan.notes:
                self.log(note)
            self.out.mkdir(parents=True, exist_ok=True)
            moved = rundir.move_aside(self.out, plan.move)
            if moved is not None:
                self.log(f"Moved the replaced files of the previous run to {moved}.")
            self._write_config()
            if self.cfg.runtime.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(self.out / rundir.TB))
                except ImportError:
                    self.log("Note: runtime.tensorboard needs the tensorboard package; skipped.")
        env.barrier()
        try:
            for k in range(plan.start_stage, last + 1):
                state = resume_state if k == plan.start_stage else None
                self._run_stage(k, state)
                if self.stopped:
                    break
        finally:
            if self.tb is not None:
                self.tb.close()
        return self._finish(last)

    def _restore_history(self, plan: rundir.RunPlan, resume_state: Any) -> None:
        """Metrics rows and stage results of the stages before the one that starts now."""
        rows = []
        done = rundir.inspect(self.out).stages
        for j in range(1, plan.start_stage):
            if j in done:
                rows += done[j].get("history", [])
                self.stage_results[str(j)] = done[j].get("result")
        # A per-epoch checkpoint holds the whole history up to its epoch.
        self.history = list(resume_state[1]["history"]) if resume_state is not None else rows

    def _existing_results(self) -> dict[str, Any]:
        doc = rundir._read_json(self.out / rundir.RESULTS)
        if doc is not None:
            return doc
        st = rundir.inspect(self.out)
        return {
            "output_dir": str(self.out),
            "complete": len(st.stages) == self.n_stages,
            "stages": {str(k): m.get("result") for k, m in st.stages.items()},
            "config": self.cfg_dict,
            "fingerprint": self.fp,
        }

    # -- one stage ------------------------------------------------------------------------------

    def _trainable(self, s: StageConfig) -> list[tuple[str, nn.Parameter]]:
        """Parameters the stage's forward uses and does not freeze."""

        def used(n: str) -> bool:
            if not self.is_wae:
                return True
            if not s.classify:
                return n.startswith("wae.")
            if not s.decode and n.startswith(("wae.decoder_low.", "wae.decoder_high.")):
                return False
            return True

        return [
            (n, p)
            for n, p in self.model.named_parameters()
            if used(n) and not _matches_prefix(n, s.freeze)
        ]

    def _make_optimizer(self, s: StageConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if s.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=s.lr,
                momentum=s.momentum,
                weight_decay=s.weight_decay,
                nesterov=s.nesterov,
            )
        cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay)

    def _set_modes(self, s: StageConfig) -> None:
        self.model.train()
        for name, m in self.model.named_modules():
            if name and _matches_prefix(name, s.freeze):
                m.eval()

    def _calibrate(self, k: int, s: StageConfig) -> None:
        # Every rank computes the same statistics from the same images: no communication,
        # and the same numbers as a single process.
        ds = self.train_ds.with_indices(torch.arange(len(self.train_ds)), False, "train")
        loader = build_loader(
            ds,
            self.cfg.eval.batch_size,
            shuffle=False,
            seed=self.cfg.seed,
            num_workers=self.cfg.runtime.num_workers,
        )
        self.log(f"stage {k}: calibrating the I_L/I_H normalisation on the training images")
        with self.autocast():
            self.model.calibrate_norms(loader, max_batches=s.calibrate_batches)

    def _run_stage(self, k: int, resume_state: Any) -> None:
        cfg, env, s = self.cfg, self.env, self.cfg.stages[k - 1]
        label = f"stage {k}/{self.n_stages}" + (f" ({s.name})" if s.name else "")
        if s.batch_size % env.world_size:
            raise ConfigError(
                f"stages.{k}.batch_size = {s.batch_size} is the global batch; it must divide "
                f"evenly over {env.world_size} processes."
            )
        per_rank = s.batch_size // env.world_size
        n_train = len(self.train_ds) // env.world_size
        steps = n_train // per_rank
        if steps < 1:
            raise ConfigError(
                f"stages.{k}.batch_size = {s.batch_size} exceeds the training set "
                f"({len(self.train_ds)} images over {env.world_size} process(es)). Lower the "
                f"batch size or use more data."
            )
        named = self._trainable(s)
        if not named:
            raise ConfigError(f"stages.{k} trains nothing: every parameter it uses is frozen.")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for _, p in named:
            p.requires_grad_(True)
        opt = self._make_optimizer(s, [p for _, p in named])
        mode = "max" if s.monitor == "val_top1" else "min"
        sched = LRSchedule(s.schedule, s.lr, s.epochs, steps, mode)
        early = Monitor(mode, s.schedule.threshold)
        scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        start_epoch = 0
        if resume_state is not None:
            tensors, doc = resume_state
            opt.load_state_dict(optimizer_from_flat(tensors, doc["optimizer"]))
            sched.load_state_dict(doc["schedule"])
            early.load_state_dict(doc["early_stop"])
            if scaler is not None and doc.get("scaler"):
                scaler.load_state_dict(doc["scaler"])
            if env.world_size == 1:
                restore_rng(tensors, doc["rng"])
            if doc.get("world_size", 1) != env.world_size:
                self.log(
                    f"Note: the checkpoint was written by {doc.get('world_size')} process(es), "
                    f"this run has {env.world_size}; the result will not be bit-identical."
                )
            start_epoch = int(doc["epoch"])
            self.log(f"{label}: resuming after epoch {start_epoch}/{s.epochs}")
        else:
            self.log(
                f"{label}: {s.epochs} epoch(s), {steps} steps of {s.batch_size}, "
                f"{s.optimizer} lr {s.lr:g}, losses {s.losses}, trains "
                f"{sum(p.numel() for _, p in named):,} parameters"
                + (f", frozen {s.freeze}" if s.freeze else "")
            )
            if s.calibrate_norms:
                self._calibrate(k, s)

        stage_mod = StageModule(self.model, s)
        runner: nn.Module = stage_mod
        if env.distributed:
            dev = env.device
            runner = DistributedDataParallel(
                stage_mod, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        val_loader = self._val_loader()
        epochs_before = sum(c.epochs for c in cfg.stages[: k - 1])
        last_row: dict[str, Any] | None = None
        for epoch in range(start_epoch, s.epochs):
            if s.early_stop_patience and early.bad_epochs >= s.early_stop_patience:
                self.log(
                    f"{label}: no improvement of {s.monitor} for "
                    f"{early.bad_epochs} epochs; stage ends early."
                )
                break
            t0 = time.perf_counter()
            _seed_all(_derive(cfg.seed, k, epoch, env.rank))
            train_terms, lr = self._train_epoch(k, s, epoch, runner, opt, sched, scaler, label)
            env.broadcast_buffers(self.model)  # one model on every rank (see DistEnv)
            val = self._validate(stage_mod, val_loader)
            metric = {
                "val_top1": val.get("val_top1"),
                "val_loss": val.get("val_loss"),
                "train_loss": train_terms.get("train_loss"),
            }[s.monitor]
            sched.end_epoch(metric)
            if metric is not None:
                early.update(metric)
            dt = time.perf_counter() - t0
            row = {
                "stage": k,
                "stage_name": s.name,
                "epoch": epoch + 1,
                "global_epoch": epochs_before + epoch + 1,
                "lr": lr,
                **train_terms,
                **val,
                "epoch_time_s": dt,
                "images_per_s": steps * s.batch_size / dt,
            }
            self.history.append(row)
            last_row = row
            if env.is_main:
                self._save_epoch(k, epoch + 1, opt, sched, early, scaler)
                self._log_epoch(label, s, row)
            env.barrier()
            self.hooks.on_epoch_end(k, epoch + 1, row, self.model)
            self.epochs_this_run += 1
            limit = cfg.runtime.max_epochs_this_run
            if limit is not None and self.epochs_this_run >= limit and epoch + 1 < s.epochs:
                self.log(
                    f"Stopping after {limit} epoch(s) this run (runtime.max_epochs_this_run);"
                    f" continue with --resume."
                )
                self.stopped = True
                return
        self._complete_stage(k, s, last_row)
        limit = cfg.runtime.max_epochs_this_run
        if limit is not None and self.epochs_this_run >= limit and k < self.n_stages:
            self.stopped = True

    def _complete_stage(self, k: int, s: StageConfig, last_row: dict[str, Any] | None) -> None:
        rows = [r for r in self.history if r["stage"] == k]
        last_row = last_row or (rows[-1] if rows else {})
        result = {
            "name": s.name,
            "epochs_run": len(rows),
            **{k2: v for k2, v in last_row.items() if k2.startswith("val_")},
        }
        self.stage_results[str(k)] = result
        if self.env.is_main:
            save_checkpoint(
                self.out / f"stage{k}",
                self.model,
                meta=self._meta(k, result=result, history=rows),
                config=self.cfg_dict,
            )
        self.env.barrier()

    def _train_epoch(
        self,
        k: int,
        s: StageConfig,
        epoch: int,
        runner: nn.Module,
        opt: torch.optim.Optimizer,
        sched: LRSchedule,
        scaler: Any,
        label: str,
    ) -> tuple[dict[str, float], float]:
        env, cfg = self.env, self.cfg
        per_rank = s.batch_size // env.world_size
        loader = build_loader(
            self.train_ds,
            per_rank,
            shuffle=True,
            seed=_derive(cfg.seed, k, epoch),
            num_workers=cfg.runtime.num_workers,
            distributed=env.distributed,
            drop_last=True,
            pin_memory=env.device.type == "cuda",
        )
        if env.distributed:
            loader.sampler.set_epoch(epoch)
        self._set_modes(s)
        params = [p for g in opt.param_groups for p in g["params"]]
        sums: dict[str, float] = {}
        n = 0
        lr = s.lr
        it: Any = loader
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                loader,
                desc=f"{label} epoch {epoch + 1}/{s.epochs}",
                leave=False,
                dynamic_ncols=True,
            )
            it = bar
        try:
            for step, (x, y) in enumerate(it):
                lr = sched.lr(epoch, step)
                for g in opt.param_groups:
                    g["lr"] = lr
                x = self._batch(x)
                y = y.to(env.device, non_blocking=True)
                with self.autocast():
                    total, terms, _ = runner(x, y)
                bad = not bool(torch.isfinite(total.detach()))
                if env.any(bad):
                    self._diverged(k, s, epoch, step, terms)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    if s.grad_clip:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(params, s.grad_clip)
                    scaler.step(opt)
                    scaler.update()
                else:
                    total.backward()
                    if s.grad_clip:
                        nn.utils.clip_grad_norm_(params, s.grad_clip)
                    opt.step()
                loss_value = float(total.detach())
                sums["train_loss"] = sums.get("train_loss", 0.0) + loss_value
                for name, v in terms.items():
                    key = f"train_{name}"
                    sums[key] = sums.get(key, 0.0) + float(v.detach())
                n += 1
                if bar is not None and step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.3g}")
                self.hooks.on_step(k, epoch + 1, step, self.model, loss_value)
        finally:
            if bar is not None:
                bar.close()
        keys = sorted(sums)
        vec = torch.tensor([sums[key] for key in keys], dtype=torch.float64) / max(1, n)
        vec = env.all_reduce_sum(vec) / env.world_size
        return {key: float(v) for key, v in zip(keys, vec, strict=True)}, lr

    def _diverged(
        self, k: int, s: StageConfig, epoch: int, step: int, terms: Mapping[str, torch.Tensor]
    ) -> None:
        parts = ", ".join(f"{n} = {float(v.detach()):.4g}" for n, v in terms.items())
        latest = rundir._read_json(self.out / rundir.CKPTS / rundir.LATEST)
        amp_hint = 'use runtime.amp_dtype = "bf16", ' if self.amp == "fp16" else ""
        kept = (
            f"the last good checkpoint ({self.out / rundir.CKPTS / latest['dir']}, stage "
            f"{latest['stage']} epoch {latest['epoch']}) is untouched; --resume restarts from it"
            if latest
            else "no checkpoint of this run was written yet"
        )
        raise TrainingError(
            f"Stage {k} epoch {epoch + 1} step {step}: the loss is not finite ({parts}). "
            f"Training stopped; {kept}. Lower stages.{k}.lr, set stages.{k}.grad_clip, "
            f"{amp_hint}or check the data for bad values."
        )

    def _val_loader(self) -> torch.utils.data.DataLoader:
        env = self.env
        shard = torch.utils.data.Subset(
            self.val_ds, list(range(env.rank, len(self.val_ds), env.world_size))
        )
        return torch.utils.data.DataLoader(
            shard,
            batch_size=self.cfg.eval.batch_size,
            shuffle=False,
            num_workers=self.cfg.runtime.num_workers,
            pin_memory=env.device.type == "cuda",
        )

    @torch.no_grad()
    def _validate(self, stage_mod: StageModule, loader: Any) -> dict[str, float]:
        """The stage's losses and (if it classifies) top-1/top-5 % on the validation set."""
        env = self.env
        # A fixed key list, so the ranks' vectors line up even if a shard is empty.
        keys = ["loss"] + ["classification"] * stage_mod.classify
        keys += ["transform", "reconstruction", "energy"] if stage_mod.decode else []
        sums = torch.zeros(len(keys) + 3, dtype=torch.float64)  # + top-1, top-k, count
        self.model.eval()
        try:
            for x, y in loader:
                x = self._batch(x)
                y = y.to(env.device, non_blocking=True)
                with self.autocast():
                    total, terms, logits = stage_mod(x, y)
                b = len(y)
                values = {"loss": total, **terms}
                for i, name in enumerate(keys):
                    sums[i] += float(values[name]) * b
                if logits is not None:
                    topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
                    sums[-3] += float((topk[:, 0] == y).sum())
                    sums[-2] += float((topk == y[:, None]).any(1).sum())
                sums[-1] += b
        finally:
            self.model.train()
        sums = env.all_reduce_sum(sums)
        n = max(1.0, float(sums[-1]))
        out = {f"val_{name}": float(sums[i]) / n for i, name in enumerate(keys)}
        if stage_mod.classify:
            out["val_top1"] = 100.0 * float(sums[-3]) / n
            out["val_top5"] = 100.0 * float(sums[-2]) / n
        return out

    def _log_epoch(self, label: str, s: StageConfig, row: dict[str, Any]) -> None:
        parts = [f"{label} epoch {row['epoch']}/{s.epochs}", f"loss {row['train_loss']:.4g}"]
        for t in ("classification", "transform"):
            if f"train_{t}" in row and len(s.losses) > 1:
                parts.append(f"{t[:5]} {row[f'train_{t}']:.4g}")
        if "val_top1" in row:
            parts.append(f"val top1 {row['val_top1']:.2f}% top5 {row['val_top5']:.2f}%")
        else:
            parts.append(f"val loss {row['val_loss']:.4g}")
        parts.append(f"lr {row['lr']:.3g}")
        parts.append(f"{row['epoch_time_s']:.1f}s")
        self.log("  ".join(parts))
        if self.tb is not None:
            step = row["global_epoch"]
            for key, v in row.items():
                if isinstance(v, float) and key not in ("epoch_time_s",):
                    self.tb.add_scalar(f"{key}", v, step)

    # -- the end --------------------------------------------------------------------------------

    def _finish(self, last: int) -> dict[str, Any]:
        env, cfg = self.env, self.cfg
        complete = not self.stopped and last == self.n_stages
        result: dict[str, Any] = {
            "output_dir": str(self.out),
            "complete": complete,
            "stopped": self.stopped,
            "stages": dict(self.stage_results),
            "final_checkpoint": None,
            "test": None,
            "config": self.cfg_dict,
            "fingerprint": self.fp,
        }
        if not complete:
            return result
        final = self.out / rundir.FINAL
        if env.is_main:
            save_checkpoint(final, self.model, meta=self._meta(self.n_stages), config=self.cfg_dict)
        result["final_checkpoint"] = str(final)
        if cfg.eval.split:
            d = cfg.data
            test = build_dataset(
                d.dataset,
                cfg.eval.split,
                data_dir=d.data_dir,
                input_size=self.input_size,
                in_chans=self.in_chans,
                subset=cfg.eval.subset,
                seed=cfg.seed,
                skip_bad=d.skip_bad,
            )
            result["test"] = evaluate(
                self.model,
                test,
                cfg.eval.noise_vars,
                batch_size=cfg.eval.batch_size,
                device=env.device,
                seed=cfg.seed,
                num_workers=cfg.runtime.num_workers,
                amp=self.amp,
                env=env,
                memory_format=self._memory_format,
            )
            result["test"]["split"] = cfg.eval.split
            t = result["test"]
            self.log(
                f"final: {final}  {cfg.eval.split} top1 {t['top1']:.2f}%  top5 {t['top5']:.2f}%"
                + "".join(f"  noise {r['var']:g}: {r['top1']:.2f}%" for r in t["noise"])
            )
        if env.is_main:
            atomic_write_json(self.out / rundir.RESULTS, result)
        env.barrier()
        return result


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


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
        config: a TrainConfig, a dict shaped like the TOML, or the path of a TOML recipe.
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

    Launched by torchrun, every process calls this; rank 0 writes the files.
    """
    cfg = load_config(config, overrides)
    if isinstance(stages, int):
        stages = [stages]
    if stages is not None:
        stages = sorted(stages)
        if stages != list(range(stages[0], stages[-1] + 1)):
            raise ConfigError(f"stages must be consecutive, got {stages}.")
    env = setup(cfg.runtime.device)
    try:
        trainer = _Trainer(cfg, Path(output_dir).expanduser().absolute(), env, hooks)
        return trainer.run(stages, resume, overwrite)
    finally:
        teardown(env)
