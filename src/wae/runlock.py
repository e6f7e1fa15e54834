"""One writer per output directory: the OS-level lock a command holds while it writes there.

Two commands writing into one directory at once mix their files (config.json of one, final/
of the other). Every command that writes a run directory (`wae train`, `wae demo`,
`wae reproduce`, and each run `wae demo` / `wae reproduce` train) therefore owns it for its
whole life through a :class:`RunLock`:

* ``OUT/.wae.lock`` is locked with the `filelock` library (``flock`` on POSIX, ``LockFileEx``
  on Windows). The operating system drops the lock when the holding process ends, however it
  ends (an exception, Ctrl-C, ``kill -9``): a killed run never blocks the next one, and there
  is nothing to delete by hand. The file itself stays (removing it would let two processes
  lock two different files of the same name).
* ``OUT/.wae.lock.json`` says who holds it (pid, host, command line, start time), written
  atomically after the lock is taken and removed before it is released; a refused command
  names the holder from it.

The lock is taken when the command first writes, after its options and inputs are checked,
so a refused or failing command leaves a directory as it was; :meth:`RunLock.check` refuses
early (before any work) when a live holder is already there.

Limits: these locks are reliable between processes of one machine. On network filesystems
(NFS in particular) ``flock`` may be emulated or local to each client, so two machines may
both "hold" the lock: give runs on different machines different output directories.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .checkpoint import atomic_write_json
from .outputs import OutputError, check_output_dir

__all__ = ["HOLDER_FILE", "LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".wae.lock"
HOLDER_FILE = ".wae.lock.json"
_HOLDER_WAIT_S = 1.0  # how long a refused command waits for the holder to write who it is


class RunLockedError(OutputError):
    """The output directory is being written by another running command."""


def _command_line() -> str:
    """This process's command line, as the user typed it (``wae ...`` for the CLI)."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name in ("wae", "__main__.py"):
        argv[0] = "wae"
    return shlex.join(argv)


def _alive_here(holder: dict[str, Any]) -> bool:
    """False when `holder` names a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell; the lock itself decides
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return True


class RunLock:
    """The lock on one output directory (see the module docstring).

    ``directory`` is checked as an output directory at once (:func:`check_output_dir`: a
    file, a read-only place... raise :class:`~wae.outputs.OutputError`); nothing is created
    until :meth:`acquire`. ``what`` names the command in the holder record ("wae train").
    """

    def __init__(self, directory: str | os.PathLike[str], what: str = "wae") -> None:
        self.dir = check_output_dir(directory).absolute()
        self.what = what
        self._lock = FileLock(str(self.dir / LOCK_FILE), timeout=0)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock.is_locked

    def check(self) -> None:
        """Refuse now, creating nothing, if a live process holds the directory.

        A holder record left by a killed process is ignored (its lock died with it).
        """
        if self.held or not (self.dir / HOLDER_FILE).is_file():
            return
        try:
            self._lock.acquire()
        except Timeout:
            raise self._refusal() from None
        self._lock.release()

    def acquire(self) -> None:
        """Create the directory if needed and take the lock, or raise :class:`RunLockedError`
        naming the holder. Re-entrant: a second call on a held lock does nothing."""
        if self.held:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise self._refusal() from None
        try:
            atomic_write_json(
                self.dir / HOLDER_FILE,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": _command_line(),
                    "what": self.what,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                },
            )
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        """Remove the holder record and release the lock (nothing if not held)."""
        if not self.held:
            return
        try:
            (self.dir / HOLDER_FILE).unlink(missing_ok=True)
        finally:
            self._lock.release(force=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def holder(self) -> dict[str, Any] | None:
        """The holder record, waiting briefly for a holder that has just taken the lock."""
        deadline = time.monotonic() + _HOLDER_WAIT_S
        while True:
            try:
                doc = json.loads((self.dir / HOLDER_FILE).read_text())
            except (OSError, ValueError):
                doc = None
            if isinstance(doc, dict) and _alive_here(doc):
                return doc
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _refusal(self) -> RunLockedError:
        h = self.holder()
        who = (
            f"process {h.get('pid')} on {h.get('host')}, started {h.get('started')}, running "
            f"`{h.get('command')}`"
            if h
            else "another process (it has not said which yet)"
        )
        return RunLockedError(
            f"{self.dir} is in use: {who} is writing into it (it holds {self.dir / LOCK_FILE})."
            f" Two commands writing into one directory would mix their files. Wait for it to "
            f"finish (or stop it), or choose another output directory. A lock left by a "
            f"process that was killed is released by the operating system: there is nothing "
            f"to delete."
        )
