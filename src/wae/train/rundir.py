"""The output directory of a run: its layout, what is already there, and what may be replaced.

Layout (everything a run writes; nothing else in the directory is ever touched)::

    OUT/config.json                 resolved config + fingerprint of the run
    OUT/metrics.csv                 one row per epoch (rebuilt from the saved history)
    OUT/checkpoints/latest.json     points at the newest complete per-epoch checkpoint
    OUT/checkpoints/stage2-epoch0003/   weights + model.json + train_state.{safetensors,json}
    OUT/stage1/, OUT/stage2/, ...   the model at the end of each stage (the next stage's start)
    OUT/final/                      the model at the end of the last stage (for `wae eval`)
    OUT/results.json                per-stage validation + final evaluation + config
    OUT/tb/                         TensorBoard logs (optional)
    OUT/.wae.lock, OUT/.wae.lock.json   the lock of the run writing OUT, and who holds it
                                    (:mod:`wae.runlock`: one writer per directory)

Rules (checked identically on every rank, before anything is written):

* nothing of ours in OUT: start;
* ``resume``: OUT's config must have the same fingerprint (the differing keys are listed
  otherwise); the run continues from its newest checkpoint; a run already complete is left as
  it is;
* ``overwrite``: the files of ours that the new run would replace are *moved* into
  ``OUT/replaced-<timestamp>/`` (never deleted; other files stay where they are);
* neither: allowed only when nothing at or after the first stage to run exists yet and the
  previous stage's checkpoint matches the config (running stages one at a time with
  ``--stage``); otherwise refused with a message saying what is there.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError, read_meta
from .config import ConfigError, config_diff, fingerprint, stage_fingerprint

__all__ = [
    "RunDirError",
    "RunPlan",
    "epoch_checkpoint_name",
    "epochs_done",
    "inspect",
    "move_aside",
    "plan_run",
    "read_latest",
    "read_results",
    "stage_dir",
]

CONFIG = "config.json"
METRICS = "metrics.csv"
RESULTS = "results.json"
CKPTS = "checkpoints"
LATEST = "latest.json"
FINAL = "final"
TB = "tb"
_STAGE_RE = re.compile(r"^stage(\d+)$")


class RunDirError(ConfigError):
    """An output directory that cannot be used as asked (another run, nothing to resume...)."""


@dataclass
class RunDirState:
    """What a previous run left in OUT."""

    config: dict[str, Any] | None = None  # config.json's "config"
    latest: dict[str, Any] | None = None  # checkpoints/latest.json
    stages: dict[int, dict[str, Any]] = field(default_factory=dict)  # stage -> model.json meta
    ours: list[str] = field(default_factory=list)  # our top-level names present

    @property
    def empty(self) -> bool:
        return not self.ours

    def same_as(self, other: RunDirState) -> bool:
        """Whether `other` read the same files (compared as JSON text: a NaN metric read
        twice is two different floats, but the same text)."""
        return _as_text(self) == _as_text(other)


def _as_text(st: RunDirState) -> str:
    return json.dumps(asdict(st), sort_keys=True, default=str)


@dataclass
class RunPlan:
    """What to do: which stage to start at, from which checkpoint, what to move aside."""

    first: int  # first stage to run (1-based)
    last: int  # last stage to run
    start_stage: int  # the stage where work starts (> last: nothing left to do)
    resume_dir: Path | None = None  # per-epoch checkpoint to continue start_stage from
    init_from: Path | None = None  # stage dir whose weights start start_stage (None: fresh)
    move: list[str] = field(default_factory=list)  # our names to move into replaced-<ts>/
    notes: list[str] = field(default_factory=list)
    # What OUT held when the plan was made: the run checks it is unchanged once it holds the
    # directory's lock (wae.runlock), so a plan made while another run wrote is never used.
    seen: RunDirState = field(default_factory=RunDirState)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_latest(out: Path) -> dict[str, Any] | None:
    """``checkpoints/latest.json`` of the run in `out`: {stage, epoch, dir, fingerprint,
    stage_fingerprint} of the newest complete per-epoch checkpoint; None if there is none."""
    return _read_json(out / CKPTS / LATEST)


def read_results(out: Path) -> dict[str, Any] | None:
    """``results.json`` of the run in `out` (written when its last stage completes), or None."""
    return _read_json(out / RESULTS)


def stage_dir(out: Path, k: int) -> Path:
    """The checkpoint of the model at the end of stage `k` (1-based)."""
    return out / f"stage{k}"


def epoch_checkpoint_name(k: int, epoch: int) -> str:
    """The folder name, under ``checkpoints/``, of the checkpoint after `epoch` of stage `k`."""
    return f"stage{k}-epoch{epoch:04d}"


def inspect(out: Path) -> RunDirState:
    """Read what a previous run left in `out` (read-only)."""
    st = RunDirState()
    if not out.is_dir():
        return st
    for p in out.iterdir():
        if p.name in (CONFIG, METRICS, RESULTS, CKPTS, FINAL, TB) or _STAGE_RE.match(p.name):
            st.ours.append(p.name)
    st.ours.sort()
    doc = _read_json(out / CONFIG)
    st.config = doc.get("config") if doc else None
    st.latest = read_latest(out)
    for name in st.ours:
        m = _STAGE_RE.match(name)
        if m:
            try:  # model.json is written last: a readable one means the stage completed
                st.stages[int(m.group(1))] = read_meta(out / name)["meta"]
            except CheckpointError:
                pass
    return st


def _describe(st: RunDirState, n_stages: int) -> str:
    done = sorted(k for k in st.stages)
    parts = []
    if done:
        parts.append(f"finished stage(s) {', '.join(map(str, done))} of {n_stages}")
    if st.latest:
        parts.append(
            f"a checkpoint after stage {st.latest.get('stage')} epoch {st.latest.get('epoch')}"
        )
    if not parts:
        parts.append(f"files of a run ({', '.join(st.ours)})")
    return " and ".join(parts)


def _matches(st: RunDirState, cfg_dict: dict[str, Any], k: int) -> bool:
    meta = st.stages.get(k)
    return bool(meta) and meta.get("stage_fingerprint") == stage_fingerprint(cfg_dict, k)


@dataclass
class _Request:
    """What a run asks of `out` (stages first..last under cfg_dict) and what `out` holds."""

    out: Path
    cfg_dict: dict[str, Any]
    st: RunDirState
    first: int
    last: int
    has_init: bool  # model.init can start the first stage

    def predecessor(self, k: int) -> Path | None:
        """The weights stage k starts from (None: fresh init or model.init)."""
        st, out = self.st, self.out
        if k == 1:
            return None
        if _matches(st, self.cfg_dict, k - 1):
            return stage_dir(out, k - 1)
        if k == self.first and self.has_init and not st.stages.get(k - 1):
            return None  # model.init provides the start
        why = (
            "its checkpoint comes from a different config"
            if st.stages.get(k - 1)
            else "it is not in " + str(out)
        )
        raise RunDirError(
            f"Stage {k} starts from the end of stage {k - 1}, but {why}. Run stage {k - 1} "
            f"first (wae train ... --stage {k - 1}), run all stages, or set model.init to a "
            f"checkpoint to start from."
        )


def plan_run(
    out: Path,
    cfg_dict: dict[str, Any],
    *,
    first: int,
    last: int,
    resume: bool,
    overwrite: bool,
    has_init: bool,
) -> RunPlan:
    """Decide what to do in `out` (see the module docstring); raises RunDirError if refused."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: pass one of them.")
    req = _Request(out, cfg_dict, inspect(out), first, last, has_init)
    plan = RunPlan(first=first, last=last, start_stage=first, seen=req.st)
    if req.st.empty:
        if resume:
            plan.notes.append(f"Nothing to resume in {out}; starting a new run.")
        plan.init_from = req.predecessor(first)
        return plan
    if resume:
        return _plan_resume(req, plan)
    return _plan_again(req, plan, overwrite)


def epochs_done(out: Path, cfg_dict: dict[str, Any]) -> int:
    """Epochs of the run of `cfg_dict` that `out` holds already, as a resume finds them: the
    complete stages' (all of a stage's epochs, also one that stopped early) and the newest
    checkpoint's of the next stage; 0 when `out` holds a run of another config."""
    st = inspect(out)
    if st.empty or (st.config is not None and fingerprint(st.config) != fingerprint(cfg_dict)):
        return 0
    stages, k, done = cfg_dict["stages"], 1, 0
    while k <= len(stages) and _matches(st, cfg_dict, k):
        done += int(stages[k - 1]["epochs"])
        k += 1
    latest = st.latest or {}
    if k <= len(stages) and latest.get("stage") == k:
        if latest.get("stage_fingerprint") == stage_fingerprint(cfg_dict, k):
            done += int(latest["epoch"])
    return done


def _plan_resume(req: _Request, plan: RunPlan) -> RunPlan:
    """--resume: same config, continue at the first stage not complete (from its newest
    per-epoch checkpoint if it has one)."""
    st, out, cfg_dict = req.st, req.out, req.cfg_dict
    fp = fingerprint(cfg_dict)
    saved_fp = fingerprint(st.config) if st.config else None
    ckpt_fp = st.latest.get("fingerprint") if st.latest else None
    checks = (("config.json", saved_fp, st.config), ("checkpoint", ckpt_fp, None))
    for label, old_fp, old in checks:
        if old_fp is not None and old_fp != fp:
            diff = config_diff(old, cfg_dict) if old is not None else []
            detail = f": {'; '.join(diff[:8])}" if diff else ""
            raise RunDirError(
                f"Cannot resume: the run in {out} (its {label}) was made with a different "
                f"config{detail}. Resume with the original config (and --set values) or with "
                f"-c {out / CONFIG}, or start over with --overwrite (the old files are moved "
                f"to {out}/replaced-<time>/)."
            )
    k = req.first
    while k <= req.last and _matches(st, cfg_dict, k):
        k += 1
    plan.start_stage = k
    if k > req.last:
        plan.notes.append(f"Stage(s) {req.first}..{req.last} are already complete in {out}.")
        return plan
    latest_stage = int(st.latest["stage"]) if st.latest else None
    if latest_stage == k and st.latest.get("stage_fingerprint") == stage_fingerprint(cfg_dict, k):
        plan.resume_dir = out / CKPTS / str(st.latest["dir"])
    else:
        plan.init_from = req.predecessor(k)
    return plan


def _plan_again(req: _Request, plan: RunPlan, overwrite: bool) -> RunPlan:
    """Neither --resume nor a new directory: allowed when nothing the run would write is
    there yet (the next stage of a staged run); with --overwrite, what it replaces moves aside."""
    st, out, cfg_dict, first = req.st, req.out, req.cfg_dict, req.first
    latest_stage = int(st.latest["stage"]) if st.latest else None
    replaced = {k for k in st.stages if k >= first}
    replaced |= {latest_stage} if latest_stage and latest_stage >= first else set()
    final_there = any(x in st.ours for x in (FINAL, RESULTS))
    conflict = bool(replaced) or (final_there and req.last == len(cfg_dict["stages"]))
    conflict = conflict or first == 1
    if not conflict and st.config is not None and fingerprint(st.config) != fingerprint(cfg_dict):
        # Starting a later stage under a changed config: the old config.json is kept aside.
        plan.move.append(CONFIG)
        plan.notes.append(
            f"The config differs from the one in {out}/config.json (kept in replaced-<time>/): "
            + "; ".join(config_diff(st.config, cfg_dict)[:8])
        )
    if conflict and not overwrite:
        raise RunDirError(
            f"{out} already holds a run ({_describe(st, len(cfg_dict['stages']))}). Pass "
            f"--resume to continue it, --overwrite to start "
            f"{'over' if first == 1 else f'again from stage {first}'} (the files it "
            f"replaces are moved to {out}/replaced-<time>/, nothing is deleted), or choose "
            f"another output directory."
        )
    plan.init_from = req.predecessor(first)
    if conflict:  # overwrite
        if first == 1:
            plan.move = list(st.ours)
        else:
            plan.move = sorted(
                {f"stage{k}" for k in st.stages if k >= first}
                | {x for x in (CKPTS, FINAL, RESULTS, METRICS, TB, CONFIG) if x in st.ours}
            )
    return plan


def move_aside(out: Path, names: list[str]) -> Path | None:
    """Move our files `names` from `out` into a fresh ``out/replaced-<timestamp>/``."""
    names = [n for n in names if (out / n).exists()]
    if not names:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = out / f"replaced-{stamp}"
    i = 1
    while dest.exists():
        dest = out / f"replaced-{stamp}-{i}"
        i += 1
    dest.mkdir(parents=True)
    for name in names:
        shutil.move(str(out / name), str(dest / name))
    return dest
