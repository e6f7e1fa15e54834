"""Progress of a whole job of several training runs: before training, the plan and an estimate
of its time; while training, one progress line per epoch for the whole job::

    [job] 14/41 epochs (wae: stage 2 epoch 3/12)  elapsed 3m12s  remaining ~6m40s

On a terminal (stdout and stderr both) a tqdm bar for the whole job takes the lines' place,
and whatever is printed meanwhile (the engine's per-epoch lines) goes above it; in a log,
plain lines.

The remaining time is the estimate of the epochs left, scaled by how the job's measured time
so far compares with the estimate of the epochs it trained: a slower machine, or one with
other work, shows after the first epoch. Runs found finished (reused) count as done from the
start. Use::

    runs = timed_runs({"wae": wae_cfg, "half": half_cfg}, out)
    with JobProgress(runs) as job:
        for name, cfg in configs.items():
            with job.run(name) as hooks:
                run_training(cfg, out / name, resume=True, hooks=hooks)
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .train.hooks import TrainHooks

__all__ = [
    "TIMED_BASIS",
    "JobProgress",
    "PlannedRun",
    "format_duration",
    "job_progress",
    "timed_runs",
]

TIMED_BASIS = "an estimate from training steps of each stage timed on this machine"


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a job, as planned: its stages (name, epochs), the estimated
    seconds per epoch of each stage (None: no estimate) and of its end (the test
    evaluation), and the epochs it has trained already (all of them: a run to reuse)."""

    name: str
    stages: tuple[tuple[str, int], ...]
    epoch_s: tuple[float, ...] | None = None
    end_s: float = 0.0
    done: int = 0

    @property
    def epochs(self) -> int:
        return sum(n for _, n in self.stages)

    @property
    def finished(self) -> bool:
        return self.done >= self.epochs

    def first_epoch(self, stage: int) -> int:
        """Epochs before stage `stage` (1-based)."""
        return sum(n for _, n in self.stages[: stage - 1])

    def describe(self) -> str:
        return " + ".join(f"{name} {n}" for name, n in self.stages)


def format_duration(seconds: float) -> str:
    """45s, 3m12s, 2h05m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class _EpochHook(TrainHooks):
    def __init__(self, job: JobProgress, name: str) -> None:
        self._job, self._name = job, name

    def on_epoch_end(self, stage: int, epoch: int, row: dict[str, Any], model: Any) -> None:
        self._job.epoch_done(self._name, stage, epoch)


class JobProgress:
    """The job's plan and progress (see the module docstring). A context manager: entering
    prints the plan (``announce``) and starts the clock, leaving closes the bar and prints
    the job's time. `log` prints plain lines; `bar` (None: where stdout and stderr are
    terminals) shows the tqdm bar instead of per-epoch lines; `basis` says what the
    estimate is ("an estimate from ..."); `clock` gives seconds (tests pass a fake one)."""

    def __init__(
        self,
        runs: Sequence[PlannedRun],
        *,
        log: Callable[[str], Any] = print,
        bar: bool | None = None,
        basis: str = "",
        announce: bool = True,
        clock: Callable[[], float] = time.monotonic,
        label: str = "job",
    ) -> None:
        self.runs = {r.name: r for r in runs}
        if len(self.runs) != len(runs):
            raise ValueError(f"run names must differ, got {[r.name for r in runs]}")
        self._log, self._want_bar, self.basis = log, bar, basis
        self._announce, self._now, self.label = announce, clock, label
        # Estimated when every run with work left has an estimate; else each epoch weighs 1
        # and the remaining time follows the measured seconds per epoch.
        self.estimated = all(r.epoch_s is not None for r in runs if not r.finished)
        self._weights = {r.name: self._epoch_weights(r) for r in runs}
        self._done = {r.name: min(r.done, r.epochs) for r in runs}
        self._ended = {r.name for r in runs if r.finished}  # reused: done, end included
        self._trained: set[str] = set()  # runs with an epoch trained here
        self._spent = 0.0  # wall seconds of the work done here ...
        self._spent_est = 0.0  # ... and their estimate
        self._t0 = self._last = 0.0
        self._bar: Any = None
        self._stdout: Any = None
        self._said_done = False

    def _epoch_weights(self, r: PlannedRun) -> list[float]:
        if not self.estimated:
            return [1.0] * r.epochs
        if r.epoch_s is None:  # a finished run: nothing left to weigh
            return [0.0] * r.epochs
        return [s for (_, n), s in zip(r.stages, r.epoch_s, strict=True) for _ in range(n)]

    def _end_s(self, name: str) -> float:
        return self.runs[name].end_s if self.estimated else 0.0

    # -- numbers ---------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Epochs of the job."""
        return sum(r.epochs for r in self.runs.values())

    @property
    def done(self) -> int:
        """Epochs done (reused runs' included)."""
        return sum(self._done.values())

    @property
    def estimate_s(self) -> float | None:
        """The plan's estimate of the work left at the start (None: no estimate)."""
        if not self.estimated:
            return None
        return sum(
            sum(self._weights[r.name][min(r.done, r.epochs) :]) + (0 if r.finished else r.end_s)
            for r in self.runs.values()
        )

    def elapsed_s(self) -> float:
        return self._now() - self._t0

    def remaining_s(self) -> float | None:
        """The estimate of the work left, scaled by measured / estimated of the work done
        here; None while there is nothing to scale by and no estimate."""
        left = sum(
            sum(self._weights[n][self._done[n] :]) + (0.0 if n in self._ended else self._end_s(n))
            for n in self.runs
        )
        if self._spent_est > 0:
            return left * self._spent / self._spent_est
        return left if self.estimated else None

    # -- events ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the clock; print the plan (``announce``); open the bar on a terminal."""
        self._t0 = self._last = self._now()
        if self._announce:
            for line in self.plan_lines():
                self._log(line)
        if self.done < self.total and self._use_bar():
            self._open_bar()

    def epoch_done(self, name: str, stage: int, epoch: int) -> None:
        """Run `name` finished `epoch` of `stage` (both 1-based)."""
        r = self.runs[name]
        g = r.first_epoch(stage) + epoch
        self._account(self._weights[name][g - 1])
        self._done[name] = max(self._done[name], min(g, r.epochs))
        self._trained.add(name)
        self._show(f"{name}: stage {stage} epoch {epoch}/{r.stages[stage - 1][1]}")

    def run_done(self, name: str) -> None:
        """Run `name` is over: its epochs left count as done (a reused run, or a stage that
        stopped early), its end (the test evaluation) as measured."""
        if name in self._ended or name not in self.runs:
            return
        if name in self._trained:
            self._account(self._end_s(name))
        self._done[name] = self.runs[name].epochs
        self._ended.add(name)
        if self._bar is not None:
            self._bar.n = self.done
            self._bar.refresh()
        if len(self._ended) == len(self.runs):
            self._finish()  # the job's training is over: say so now, not after what follows

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[TrainHooks]:
        """The hooks to train run `name` with; the run counts as done when the block ends."""
        yield self.hooks(name)
        self.run_done(name)

    def hooks(self, name: str) -> TrainHooks:
        """TrainHooks that report run `name`'s epochs to this job (no-ops for a run not in
        the plan: progress never stops a job)."""
        return _EpochHook(self, name) if name in self.runs else TrainHooks()

    def close(self, ok: bool = True) -> None:
        """Close the bar; unless said already, and if epochs were trained here, print the
        job's time (not after an error: `ok` False)."""
        self._close_bar()
        if ok:
            self._finish()

    def _finish(self) -> None:
        self._close_bar()
        if self._trained and not self._said_done:
            self._said_done = True
            est = self.estimate_s
            planned = f" (estimated ~{format_duration(est)})" if est is not None else ""
            self._log(
                f"[{self.label}] {self.done}/{self.total} epochs done in "
                f"{format_duration(self.elapsed_s())}{planned}"
            )

    def __enter__(self) -> JobProgress:
        self.start()
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.close(ok=exc_type is None)

    def _account(self, estimate: float) -> None:
        """The time since the last event was spent on work of this estimate."""
        now = self._now()
        self._spent += now - self._last
        self._spent_est += estimate
        self._last = now

    # -- output ----------------------------------------------------------------------------

    def plan_lines(self) -> list[str]:
        """The plan: the runs, their epochs and estimates, and the total."""
        n_left = sum(1 for r in self.runs.values() if not r.finished)
        head = f"[{self.label}] plan: {len(self.runs)} runs, {self.total} epochs"
        if n_left < len(self.runs):
            head += f" ({len(self.runs) - n_left} finished already, reused)"
        est = self.estimate_s
        if n_left and est is None:
            head += "; no time estimate (the remaining time follows the measured epochs)"
        elif n_left:
            head += f"; estimated ~{format_duration(est)} ({self.basis or 'an estimate'})"
        lines = [head]
        w = max(len(n) for n in self.runs) if self.runs else 0
        d = max(len(r.describe()) for r in self.runs.values()) if self.runs else 0
        for r in self.runs.values():
            lines.append(f"[{self.label}]   {r.name:<{w}}  {r.describe():<{d}}  {self._status(r)}")
        return lines

    def _status(self, r: PlannedRun) -> str:
        if r.finished:
            return "done (reused)"
        left = sum(self._weights[r.name][r.done :]) + r.end_s
        part = f"{r.done}/{r.epochs} epochs done, " if r.done else ""
        return part + (f"~{format_duration(left)}" if self.estimated else "epochs")

    def line(self, where: str) -> str:
        """The job's progress line; `where`: the run, stage and epoch just finished."""
        rem = self.remaining_s()
        rem_text = f"~{format_duration(rem)}" if rem is not None else "?"
        return (
            f"[{self.label}] {self.done}/{self.total} epochs ({where})  elapsed "
            f"{format_duration(self.elapsed_s())}  remaining {rem_text}"
        )

    def _show(self, where: str) -> None:
        if self._bar is None:
            self._log(self.line(where))
            return
        rem = self.remaining_s()
        rem_text = f"~{format_duration(rem)}" if rem is not None else "?"
        self._bar.n = self.done
        self._bar.set_postfix_str(
            f"elapsed {format_duration(self.elapsed_s())}  remaining {rem_text}  ({where})"
        )

    def _use_bar(self) -> bool:
        if self._want_bar is not None:
            return self._want_bar
        return _isatty(sys.stdout) and _isatty(sys.stderr)

    def _open_bar(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total,
            initial=self.done,
            desc=f"[{self.label}]",
            bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} epochs{postfix}",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self._stdout, sys.stdout = sys.stdout, _AboveBar(sys.stdout)

    def _close_bar(self) -> None:
        if self._bar is None:
            return
        if isinstance(sys.stdout, _AboveBar):
            sys.stdout.flush_partial()
        sys.stdout = self._stdout
        self._bar.close()
        self._bar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed
        return False


class _AboveBar(io.TextIOBase):
    """stdout while the job's bar shows: each whole line is written above the bars."""

    def __init__(self, real: Any) -> None:
        super().__init__()
        self._real, self._partial = real, ""

    def write(self, s: str) -> int:
        from tqdm.auto import tqdm

        *lines, self._partial = (self._partial + s).split("\n")
        if lines:
            # The bars (on stderr) are cleared, the lines written, the bars drawn again.
            with tqdm.external_write_mode(file=sys.stderr):
                self._real.write("".join(line + "\n" for line in lines))
                self._real.flush()
        return len(s)

    def flush_partial(self) -> None:
        if self._partial:
            self._real.write(self._partial)
            self._partial = ""
        self._real.flush()

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return _isatty(self._real)

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")


@contextlib.contextmanager
def job_progress(
    progress: JobProgress | None,
    configs: Mapping[str, Any],
    out: str | Path,
    *,
    teacher: Any = None,
    overwrite: bool = False,
    log: Callable[[str], Any] = print,
) -> Iterator[JobProgress]:
    """`progress`, when these runs are part of a larger job that tracks them; else their own
    job (:func:`timed_runs`, then :class:`JobProgress` around the block)."""
    if progress is not None:
        yield progress
        return
    runs = timed_runs(configs, out, teacher=teacher, overwrite=overwrite)
    with JobProgress(runs, log=log, basis=TIMED_BASIS) as job:
        yield job


def timed_runs(
    configs: Mapping[str, Any],
    out: str | Path,
    *,
    teacher: Any = None,
    overwrite: bool = False,
    steps: int = 1,
) -> list[PlannedRun]:
    """The planned runs of `configs` ({name: config}, each trained into OUT/<name>): the
    epochs OUT/<name> holds already (none with `overwrite`), and for a run with epochs left
    an estimate from timing its steps (:func:`wae.train.estimate.estimate_run`, with
    `teacher` for the distilling stages); a run that cannot be timed gets no estimate (its
    training will say what is wrong)."""
    from .train import config_to_dict, load_config
    from .train.estimate import estimate_run
    from .train.rundir import epochs_done

    runs = []
    for name, c in configs.items():
        cfg = load_config(c)
        stages = tuple((s.name, s.epochs) for s in cfg.stages)
        done = 0 if overwrite else epochs_done(Path(out) / name, config_to_dict(cfg))
        epoch_s, end_s = None, 0.0
        if done < sum(n for _, n in stages):
            try:
                est = estimate_run(cfg, teacher=teacher, steps=steps)
                epoch_s, end_s = est.epoch_s, est.end_s
            except Exception:  # noqa: BLE001 - an estimate never stops a job
                pass
        runs.append(PlannedRun(name, stages, epoch_s, end_s, done))
    return runs
