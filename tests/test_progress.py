"""The whole job's progress (wae.progress): the plan, the remaining time re-estimated from the
measured epochs, plain lines in a log, reused runs counted as done, and the lines in a job."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.progress import JobProgress, PlannedRun, format_duration, timed_runs
from wae.train import TrainHooks, config_to_dict, load_config, run_training
from wae.train.rundir import epochs_done

needs_fashion_mnist = pytest.mark.skipif(
    not Path(DEFAULT_FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed"
)
TINY_BASELINE = [
    "data.subset=600",
    "data.val_subset=200",
    "eval.subset=500",
    "eval.noise_vars=[]",
    "model.kwargs.width=8",
    "runtime.progress=off",
    "stages.1.epochs=2",
    "stages.1.schedule.warmup_epochs=0",
]

LINE = re.compile(
    r"^\[job\] (\d+)/(\d+) epochs \((.+): stage (\d+) epoch (\d+)/(\d+)\)  "
    r"elapsed (\S+)  remaining ~(\S+)$"
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _job(runs: list[PlannedRun], clock: FakeClock, **kw) -> tuple[JobProgress, list[str]]:
    lines: list[str] = []
    return JobProgress(runs, log=lines.append, bar=False, clock=clock, **kw), lines


TWO = [
    PlannedRun("a", (("s1", 2), ("s2", 2)), epoch_s=(10.0, 20.0), end_s=5.0),
    PlannedRun("b", (("only", 4),), epoch_s=(5.0,)),
]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 44.6, 60, 192, 3599, 3600, 7500)] == [
        "0s",
        "45s",
        "1m00s",
        "3m12s",
        "59m59s",
        "1h00m",
        "2h05m",
    ]


def test_remaining_is_the_plan_scaled_by_measured_over_estimated() -> None:
    clock = FakeClock()
    job, _ = _job(TWO, clock)
    job.start()
    assert job.total == 8 and job.done == 0
    # The plan: a 2x10 + 2x20 + 5 = 65, b 4x5 = 20.
    assert job.estimate_s == job.remaining_s() == pytest.approx(85.0)
    clock.t += 20.0  # twice as slow as estimated (10 s)
    job.epoch_done("a", 1, 1)
    assert job.done == 1 and job.elapsed_s() == pytest.approx(20.0)
    assert job.remaining_s() == pytest.approx(2.0 * 75.0)
    clock.t += 10.0  # as estimated: 30 s measured for 20 s estimated
    job.epoch_done("a", 1, 2)
    assert job.remaining_s() == pytest.approx(1.5 * 65.0)
    clock.t += 40.0
    job.epoch_done("a", 2, 1)
    clock.t += 40.0
    job.epoch_done("a", 2, 2)  # 110 s for 60 s estimated
    assert job.remaining_s() == pytest.approx(110.0 / 60.0 * (5.0 + 20.0))
    clock.t += 5.0  # the test evaluation, as estimated
    job.run_done("a")
    assert job.done == 4
    assert job.remaining_s() == pytest.approx(115.0 / 65.0 * 20.0)


def test_a_stage_that_stops_early_counts_its_epochs_left_as_done() -> None:
    clock = FakeClock()
    job, _ = _job(TWO, clock)
    job.start()
    clock.t += 10.0
    job.epoch_done("a", 1, 1)
    clock.t += 20.0
    job.epoch_done("a", 2, 1)  # stage 1 stopped after one epoch
    assert job.done == 3
    # 30 s measured for 30 s estimated: the skipped epoch is neither measured nor estimated.
    assert job.remaining_s() == pytest.approx(20.0 + 5.0 + 20.0)


def test_without_an_estimate_the_remaining_time_follows_the_measured_epochs() -> None:
    clock = FakeClock()
    runs = [PlannedRun("a", (("s1", 3),)), PlannedRun("b", (("s1", 1),), epoch_s=(1.0,))]
    job, lines = _job(runs, clock)
    job.start()
    assert not job.estimated and job.remaining_s() is None
    assert "no time estimate" in lines[0]
    clock.t += 7.0
    job.epoch_done("a", 1, 1)
    assert job.remaining_s() == pytest.approx(3 * 7.0)


def test_plain_lines_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a terminal (pytest captures both streams): the plan, then one line per epoch."""
    clock = FakeClock()
    job = JobProgress(TWO, clock=clock, basis="an estimate from a test")
    with job:
        clock.t += 192.0
        with job.run("a") as hooks:
            assert isinstance(hooks, TrainHooks)
            hooks.on_epoch_end(1, 1, {}, None)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == ("[job] plan: 2 runs, 8 epochs; estimated ~1m25s (an estimate from a test)")
    assert lines[1].split() == ["[job]", "a", "s1", "2", "+", "s2", "2", "~1m05s"]
    assert lines[2].split() == ["[job]", "b", "only", "4", "~20s"]
    m = LINE.match(lines[3])
    assert m, lines[3]
    assert m.groups() == ("1", "8", "a", "1", "1", "2", "3m12s", m.group(8))
    assert format_duration(19.2 * 75.0) == m.group(8)  # 192 s for 10 s estimated
    assert lines[4].startswith("[job] 4/8 epochs done in 3m12s (estimated ~1m25s)")
    assert err == ""  # no bar


def test_reused_runs_count_as_done_from_the_start() -> None:
    clock = FakeClock()
    runs = [
        PlannedRun("a", (("s1", 2), ("s2", 2)), done=4),  # finished: no estimate needed
        PlannedRun("b", (("only", 4),), epoch_s=(5.0,), done=1),  # resumed after epoch 1
    ]
    job, lines = _job(runs, clock)
    job.start()
    assert job.estimated and job.done == 5 and job.total == 8
    assert job.estimate_s == pytest.approx(15.0)
    assert "(1 finished already, reused)" in lines[0]
    assert lines[1].endswith("done (reused)") and "1/4 epochs done, ~15s" in lines[2]
    with job.run("a"):  # the reused run: read back, no epochs
        pass
    assert job.done == 5
    clock.t += 5.0
    job.epoch_done("b", 1, 2)
    assert LINE.match(job.line("b: stage 1 epoch 2/4")).group(1) == "6"
    assert job.remaining_s() == pytest.approx(10.0)


def test_the_job_says_its_time_when_its_last_run_ends() -> None:
    clock = FakeClock()
    job, lines = _job(TWO[1:], clock, announce=False)
    with job:
        with job.run("b") as hooks:
            for e in range(1, 5):
                clock.t += 6.0
                hooks.on_epoch_end(1, e, {}, None)
        assert lines[-1] == "[job] 4/4 epochs done in 24s (estimated ~20s)"
        lines.append("what the job does after its training")
    assert lines[-1] == "what the job does after its training"  # said once


def test_a_job_with_everything_reused_says_so_and_nothing_else() -> None:
    job, lines = _job([PlannedRun("a", (("s1", 2),), done=2)], FakeClock())
    with job:
        with job.run("a"):
            pass
    assert lines[0] == "[job] plan: 1 runs, 2 epochs (1 finished already, reused)"
    assert len(lines) == 2  # the plan's two lines; no "done in"


def test_a_run_not_in_the_plan_is_ignored() -> None:
    job, lines = _job(TWO, FakeClock(), announce=False)
    with job, job.run("elsewhere") as hooks:
        hooks.on_epoch_end(1, 1, {}, None)
    assert job.done == 0 and lines == []


def test_the_bar_keeps_printed_lines_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    clock = FakeClock()
    job = JobProgress(TWO, bar=True, clock=clock, announce=False)
    with job:
        print("stage 1/2 epoch 1/2  loss 1.0")
        job.epoch_done("a", 1, 1)
        assert sys.stdout is not out  # redirected above the bar while it shows
    assert sys.stdout is out
    assert "stage 1/2 epoch 1/2  loss 1.0\n" in out.getvalue()
    assert "1/8 epochs" in err.getvalue() and "(a: stage 1 epoch 1/2)" in err.getvalue()


@needs_fashion_mnist
def test_epochs_done_reads_a_run_directory(tmp_path: Path, one_thread: None) -> None:
    cfg = load_config("fashion_mnist_baseline", TINY_BASELINE)
    doc = config_to_dict(cfg)
    assert epochs_done(tmp_path / "run", doc) == 0
    run_training(cfg, tmp_path / "run", overrides=["runtime.max_epochs_this_run=1"])
    assert epochs_done(tmp_path / "run", doc) == 1  # runtime settings are not fingerprinted
    assert epochs_done(tmp_path / "run", config_to_dict(load_config(cfg, ["seed=3"]))) == 0
    (run,) = timed_runs({"run": cfg}, tmp_path)
    assert run.done == 1 and run.epoch_s is not None and run.epoch_s[0] > 0 and run.end_s > 0
    (again,) = timed_runs({"run": cfg}, tmp_path, overwrite=True)
    assert again.done == 0


@pytest.mark.slow  # ~30 s: the quick demo, twice
@needs_fashion_mnist
def test_a_quick_demo_logs_the_plan_and_one_line_per_epoch_for_the_whole_job(
    tmp_path: Path, one_thread: None
) -> None:
    from wae.apps.demo import run_demo

    lines: list[str] = []
    run_demo(
        tmp_path / "demo",
        full=True,
        quick=True,
        latency_batch=8,
        min_run_time=0.2,
        log=lines.append,
    )
    job = [x for x in lines if x.startswith("[job]")]
    # baseline 1 epoch, WAE 1 + 1 + 1, I_R + KD 2: six, timed before the start
    assert job[0].startswith("[job] plan: 3 runs, 6 epochs; estimated ~")
    assert "timed on this machine" in job[0]
    assert [x.split()[1] for x in job[1:4]] == ["baseline", "wae", "half"]
    epochs = [LINE.match(x) for x in job[4:-1]]
    assert all(epochs), job
    assert [int(m.group(1)) for m in epochs] == [1, 2, 3, 4, 5, 6]
    assert [m.group(3) for m in epochs] == ["baseline", "wae", "wae", "wae", "half", "half"]
    assert job[-1].startswith("[job] 6/6 epochs done in ")  # when the training ends:
    assert lines.index(job[-1]) < next(i for i, x in enumerate(lines) if "timing" in x)
    # The plan comes before the training.
    assert lines.index(job[0]) < next(i for i, x in enumerate(lines) if x.startswith("[demo]"))
    lines.clear()
    run_demo(
        tmp_path / "demo",
        full=True,
        quick=True,
        latency_batch=8,
        min_run_time=0.2,
        log=lines.append,
    )
    job = [x for x in lines if x.startswith("[job]")]
    assert job[0] == "[job] plan: 3 runs, 6 epochs (3 finished already, reused)"
    assert len(job) == 4  # the plan only: nothing trained


@needs_fashion_mnist
def test_reproduce_spreads_each_methods_estimate_over_its_epochs(tmp_path: Path) -> None:
    from wae.apps.reproduce.options import ReproduceOptions
    from wae.apps.reproduce.plan import prepare
    from wae.apps.reproduce.training import TRAIN_ORDER, planned_runs

    opts = ReproduceOptions(output=str(tmp_path / "r"), quick=True, seeds=[0, 1], verbose=False)
    setup = prepare(opts, lambda _: None)
    plan = setup.plan
    runs = planned_runs(setup, 1)
    keys = [k for k in TRAIN_ORDER if k in plan.methods and plan.stages.get(k)]
    assert [r.name for r in runs] == [f"{k} seed 1" for k in keys]
    for r, k in zip(runs, keys, strict=True):
        assert r.stages == tuple((s["name"], s["epochs"]) for s in plan.stages[k])
        assert r.done == 0 and r.end_s == 0
        per_seed = sum(n * s for (_, n), s in zip(r.stages, r.epoch_s, strict=True))
        assert per_seed == pytest.approx(plan.estimate_s[k] / 2)
