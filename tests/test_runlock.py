"""wae.runlock: one writer per output directory. A second lock on a held directory is refused
naming the holder; a holder record left by a dead process does not block; release frees the
directory and removes the record (the lock file stays). The multi-process and CLI cases are
in test_hostile_io."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from wae import runlock
from wae.outputs import OutputError
from wae.runlock import HOLDER_FILE, LOCK_FILE, RunLock, RunLockedError


def _dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(proc.stdout)


def test_the_holder_says_who_it_is(tmp_path) -> None:
    out = tmp_path / "run"
    lock = RunLock(out, "wae train")
    assert not out.exists()  # nothing is created before acquire
    with lock:
        assert lock.held
        doc = json.loads((out / HOLDER_FILE).read_text())
        assert doc["pid"] == os.getpid() and doc["host"] == socket.gethostname()
        assert doc["what"] == "wae train" and doc["command"] and doc["started"]
        assert lock.holder() == doc
    assert not lock.held


def test_a_second_lock_is_refused_naming_the_holder(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with RunLock(out, "wae demo"):
        second = RunLock(out, "wae train")
        for attempt in (second.check, second.acquire):
            with pytest.raises(RunLockedError) as e:
                attempt()
            msg = str(e.value)
            assert f"process {os.getpid()} on {socket.gethostname()}" in msg
            assert str(out) in msg and LOCK_FILE in msg and "is in use" in msg
        assert not second.held
        assert isinstance(e.value, OutputError)
        # The refused lock changed nothing: the record is still the holder's.
        assert json.loads((out / HOLDER_FILE).read_text())["what"] == "wae demo"
    assert (out / "notes.txt").read_text() == "mine"


def test_a_holder_that_has_not_written_its_record_is_still_refused(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between taking the lock and writing the record, the holder is unnamed but holds."""
    from filelock import FileLock

    monkeypatch.setattr(runlock, "_HOLDER_WAIT_S", 0.05)
    out = tmp_path / "run"
    out.mkdir()
    raw = FileLock(str(out / LOCK_FILE), timeout=0)
    raw.acquire()
    try:
        with pytest.raises(RunLockedError, match="has not said which yet"):
            RunLock(out).acquire()
    finally:
        raw.release()
    with RunLock(out):  # free once the other lock is released
        pass


def test_a_stale_holder_record_does_not_block(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record left by a killed process (its OS lock died with it) is ignored and replaced."""
    monkeypatch.setattr(runlock, "_HOLDER_WAIT_S", 0.05)  # holder() waits for a live record
    out = tmp_path / "run"
    out.mkdir()
    dead = _dead_pid()
    stale = {"pid": dead, "host": socket.gethostname(), "command": "wae train", "what": "x"}
    (out / HOLDER_FILE).write_text(json.dumps(stale))
    lock = RunLock(out)
    assert lock.holder() is None  # a dead process of this host holds nothing
    lock.check()  # no refusal
    with lock:
        assert json.loads((out / HOLDER_FILE).read_text())["pid"] == os.getpid()
    assert not (out / HOLDER_FILE).exists()


def test_a_record_from_another_host_is_not_judged_dead(tmp_path) -> None:
    """Another host's pid says nothing here: its record names the holder."""
    out = tmp_path / "run"
    out.mkdir()
    other = {"pid": _dead_pid(), "host": "not-" + socket.gethostname(), "command": "wae train"}
    (out / HOLDER_FILE).write_text(json.dumps(other))
    assert RunLock(out).holder() == other


def test_release_frees_the_directory(tmp_path) -> None:
    out = tmp_path / "run"
    lock = RunLock(out)
    lock.release()  # not held: nothing happens
    lock.acquire()
    lock.acquire()  # re-entrant
    lock.check()  # its own lock is no refusal
    lock.release()
    assert not lock.held and not (out / HOLDER_FILE).exists()
    assert (out / LOCK_FILE).exists()  # kept: removing it would let two processes lock two
    with RunLock(out, "next") as nxt:
        assert nxt.held
    lock.acquire()  # the same object can take it again
    assert lock.held
    lock.release()


def test_a_file_is_no_output_directory(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError):
        RunLock(tmp_path / "f")
