"""Hostile output directories: two runs into one directory, a locked, unwritable or file
output path, a holder killed with SIGKILL, an interrupted run, and the printed resume hint.

Every command that writes a run directory owns it through :class:`wae.runlock.RunLock`; a
refused command exits 2 with one paragraph and leaves what is there unchanged.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, assert_clean_error, tree_digest
from wae.checkpoint import read_meta
from wae.cli import main
from wae.data import DEFAULT_FASHION_MNIST_DIR
from wae.outputs import OutputError
from wae.runlock import HOLDER_FILE, LOCK_FILE, RunLock, RunLockedError
from wae.train import TrainHooks, run_training
from wae.train.config import stage_fingerprint
from wae.train.rundir import RunDirError

has_fmnist = any(Path(DEFAULT_FASHION_MNIST_DIR).glob("train-images-idx3-ubyte*"))
needs_fmnist = pytest.mark.skipif(not has_fmnist, reason="Fashion-MNIST is not installed")
PROC = "/proc/wae-test/run"  # never writable, even for root (chmod does not stop root)
QUIET = [*TINY, "runtime.verbose=false"]


def _refused_commands() -> list[tuple[str, list[str], str]]:
    """(id, argv with {file} / {locked} placeholders, expected fragment of the message)."""
    train = ["train", "-c", "fashion_mnist", "--set", *TINY, "-o"]
    demo = ["demo", "--quick", "-o"]
    repro = ["reproduce", "--quick", "-o"]
    cases = []
    for name, argv in (("train", train), ("demo", demo), ("reproduce", repro)):
        cases += [
            (f"{name}-o-file", [*argv, "{file}"], "is a file, not a directory"),
            (f"{name}-o-under-file", [*argv, "{file}/run"], "is a file, not a directory"),
            (f"{name}-o-unwritable", [*argv, PROC], "not writable"),
            (f"{name}-locked", [*argv, "{locked}"], f"process {os.getpid()} on"),
        ]
    return cases


@pytest.mark.parametrize(
    "argv,expect", [c[1:] for c in _refused_commands()], ids=[c[0] for c in _refused_commands()]
)
def test_output_dir_refused_before_any_work(tmp_path, run_cli, argv, expect):
    (tmp_path / "file.txt").write_text("not a directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "notes.txt").write_text("mine")
    paths = {"{file}": str(tmp_path / "file.txt"), "{locked}": str(locked)}
    argv = [paths.get(a, a).replace("{file}", paths["{file}"]) for a in argv]
    with RunLock(locked, "test"):
        before = tree_digest(tmp_path)
        code, err = run_cli(*argv)
        assert tree_digest(tmp_path) == before
    assert_clean_error(code, err, expect)
    assert not Path(PROC).exists()


@pytest.mark.parametrize(
    "make,error,expect",
    [
        (lambda d: RunLock(d / "file.txt"), OutputError, "is a file"),
        (lambda d: RunLock(PROC), OutputError, "not writable"),
        (lambda d: RunLock(d / "locked").acquire(), RunLockedError, "is in use"),
        (lambda d: RunLock(d / "locked").check(), RunLockedError, f"process {os.getpid()}"),
        (
            lambda d: run_training("fashion_mnist", d / "locked", overrides=TINY),
            RunLockedError,
            "is in use",
        ),
    ],
    ids=["file", "unwritable", "acquire-locked", "check-locked", "run_training-locked"],
)
def test_lock_api_refusals(tmp_path, make, error, expect):
    (tmp_path / "file.txt").write_text("x")
    with RunLock(tmp_path / "locked", "test"):
        before = tree_digest(tmp_path)
        with pytest.raises(error) as e:
            make(tmp_path)
        assert tree_digest(tmp_path) == before
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and "Traceback" not in msg


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError, SystemExit])
def test_lock_released_on_any_exit(tmp_path, exc):
    with pytest.raises(exc):
        with RunLock(tmp_path / "o", "test"):
            assert (tmp_path / "o" / HOLDER_FILE).is_file()
            raise exc()
    assert not (tmp_path / "o" / HOLDER_FILE).exists()
    with RunLock(tmp_path / "o") as again:  # free again
        assert again.holder()["pid"] == os.getpid()


class _Interrupt(TrainHooks):
    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def on_step(self, stage, epoch, step, model, loss) -> None:
        raise self.exc("stop")


@needs_fmnist
@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_releases_its_dir(tmp_path, one_thread, exc):
    out = tmp_path / "o"
    with pytest.raises(exc):
        run_training("fashion_mnist", out, overrides=QUIET, hooks=_Interrupt(exc))
    assert (out / "config.json").is_file() and not (out / HOLDER_FILE).exists()
    RunLock(out).check()
    with RunLock(out):
        pass


_HOLD = (
    "import sys, time\n"
    "from wae.runlock import RunLock\n"
    "lock = RunLock(sys.argv[1], 'holder')\n"
    "lock.acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def test_lock_of_a_killed_holder_does_not_block(tmp_path):
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(RunLockedError, match=f"process {holder.pid} on"):
            RunLock(out).check()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / HOLDER_FILE).is_file()  # the record is stale: the OS dropped the lock
    RunLock(out).check()
    with RunLock(out) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert (out / LOCK_FILE).is_file() and not (out / HOLDER_FILE).exists()


@needs_fmnist
def test_two_runs_into_one_directory(tmp_path):
    """The issue's reproduction: two `wae train` started together into one directory."""
    out = tmp_path / "runs" / "c"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "wae", "train", "-c", "fashion_mnist", "-o", str(out)]
            + ["--set", *QUIET, f"seed={seed}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, outputs)
    win = codes.index(0)
    assert_clean_error(2, outputs[1 - win][1], f"process {procs[win].pid} on")
    assert f"seed={win}" in outputs[1 - win][1]  # the holder's command line
    config = json.loads((out / "config.json").read_text())["config"]
    results = json.loads((out / "results.json").read_text())
    assert config["seed"] == results["config"]["seed"] == win
    for k in (1, 2, 3):  # every stage comes from the winner's config
        meta = read_meta(out / f"stage{k}")["meta"]
        assert meta["stage_fingerprint"] == stage_fingerprint(config, k)
    assert not (out / HOLDER_FILE).exists()


@needs_fmnist
def test_following_the_resume_hint_finishes_the_run(tmp_path, capsys, one_thread):
    """The hint printed by a stopped run resumes it with its own --set values."""
    out = tmp_path / "o"
    argv = ["train", "-c", "fashion_mnist", "-o", str(out), "--set", *QUIET, "seed=3"]
    assert main([*argv, "--max-epochs-this-run", "2"]) == 0
    printed = capsys.readouterr().out
    hint = printed.split("continue with: ", 1)[1].strip()
    assert hint == shlex.join(
        ["wae", "train", "-c", f"{out}/config.json", "-o", str(out), "--resume"]
    )
    assert main(shlex.split(hint)[1:]) == 0
    assert "done: " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["config"]["seed"] == 3


@needs_fmnist
def test_plan_made_while_another_run_wrote_is_refused(tmp_path, monkeypatch):
    """OUT changes between planning and taking its lock (another run wrote and finished):
    the stale plan is refused and the other run's files are left as they are."""
    import wae.train.stages as stages

    out = tmp_path / "o"
    configure = stages.configure_runtime

    def other_run_writes(cfg, env):  # runs after the plan, before the lock
        configure(cfg, env)
        out.mkdir()
        (out / "config.json").write_text(json.dumps({"config": {"seed": 7}}))

    monkeypatch.setattr(stages, "configure_runtime", other_run_writes)
    with pytest.raises(RunDirError, match="changed while this run was being set up") as e:
        run_training("fashion_mnist", out, overrides=QUIET)
    assert "\n" not in str(e.value)
    assert json.loads((out / "config.json").read_text()) == {"config": {"seed": 7}}
    assert not (out / HOLDER_FILE).exists()
    RunLock(out).check()


def _take_lock(path: str) -> int:
    """A seed worker's part: own a run directory under the parent's output directory."""
    with RunLock(path, "worker") as lock:
        return int(lock.holder()["pid"])


@pytest.mark.slow  # two spawned interpreters importing torch
def test_seed_workers_lock_run_dirs_under_the_parents_lock(tmp_path):
    """`wae reproduce` holds OUT while its seed processes take OUT/runs/<method>/seed<s>:
    different locks, no wait (a held lock is refused at once, never waited for)."""
    from wae.apps.reproduce.training import run_in_processes

    dirs = {s: str(tmp_path / "runs" / "wae" / f"seed{s}") for s in (0, 1)}
    with RunLock(tmp_path, "wae reproduce"):
        pids = run_in_processes(
            _take_lock, dirs, 2, logs=tmp_path / "logs", threads=1, log=lambda m: None
        )
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
