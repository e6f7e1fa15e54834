"""Output paths, checked before the work starts: finished work is never lost to a bad path.

Every command that writes (a run directory, a report, a JSON file, an exported model) asks
here first, so that a directory where a file is needed, a file where a directory is needed, a
read-only place or a missing parent is reported before minutes of training or timing.
The writes themselves are atomic (``wae.checkpoint.atomic_write_*``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import WAEError

__all__ = ["OutputError", "check_output_dir", "check_output_file"]


class OutputError(WAEError, ValueError):
    """An output path that cannot be written."""


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(directory: Path, path: Path, what: str) -> None:
    """Create and remove a scratch file in `directory`: the only portable writability test."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".wae-write-test.")
    except OSError as e:
        raise OutputError(
            f"{what} {path} cannot be written: {directory} is not writable ({e.strerror}). "
            f"Choose another location, or fix the folder's permissions."
        ) from None
    os.close(fd)
    os.unlink(tmp)


def check_output_dir(path: str | os.PathLike[str], what: str = "The output directory") -> Path:
    """`path` as a directory that can be created (or exists) and written; nothing is created.

    Raises :class:`OutputError` when `path` or one of its parents is a file, or the nearest
    existing folder is not writable.
    """
    path = Path(path).expanduser()
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        raise OutputError(
            f"{what} {path} cannot be created: {existing} is a file, not a directory. Choose "
            f"another path (e.g. under runs/)."
        )
    _probe_writable(existing, path, what)
    return path


def check_output_file(path: str | os.PathLike[str], what: str = "The output file") -> Path:
    """`path` as a file that can be written (its folder may be created); nothing is created."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(
            f"{what} {path} is a directory; name a file inside it (e.g. {path / 'result.json'})."
        )
    check_output_dir(path.parent, what=f"The folder of {what[0].lower()}{what[1:]}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} exists and is read-only. Choose another path.")
    return path
