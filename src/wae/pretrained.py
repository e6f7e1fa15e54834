"""Trained networks that ship with wae, as data (as torchvision's weights are).

Each is a checkpoint directory under ``wae/weights/<name>/`` (``model.json`` and
``model.safetensors``, read like any other checkpoint: no pickle, nothing in them selects
code) with a ``card.json`` beside it: the recipe and the command that made it, its test
metrics, how long it trained and on what, and the SHA-256 of each checkpoint file. The files
are used only after their hashes match the card, so a damaged installation is an error, not a
silently different network.

The one shipped today is :data:`DEMO_TEACHER`, the trained network `wae demo` accelerates,
made by ``python scripts/build_demo_teacher.py`` (which trains the recipe and calls
:func:`write_pretrained`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from .checkpoint import META, WEIGHTS, CheckpointError, atomic_write_bytes, atomic_write_json

__all__ = [
    "CARD",
    "DEMO_TEACHER",
    "available",
    "copy_pretrained",
    "pretrained_card",
    "pretrained_dir",
    "write_pretrained",
]

CARD = "card.json"
FILES = (META, WEIGHTS)  # what a card pins; the checkpoint a user gets
DEMO_TEACHER = "fashion_mnist_small_vgg48"


def _root() -> Path:
    return Path(str(resources.files("wae") / "weights"))


def available() -> list[str]:
    """The names of the shipped networks."""
    root = _root()
    return sorted(p.name for p in root.iterdir() if (p / CARD).is_file()) if root.is_dir() else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pretrained_card(name: str) -> dict[str, Any]:
    """The card of the shipped network `name` (its recipe, command, metrics, hashes)."""
    path = _root() / name / CARD
    if not path.is_file():
        raise CheckpointError(
            f"No packaged network named {name!r}; wae ships {available() or 'none'}. "
            f"Reinstall wae, or rebuild it with `python scripts/build_demo_teacher.py`."
        )
    try:
        card = json.loads(path.read_text())
        card["sha256"][WEIGHTS], card["sha256"][META]  # noqa: B018 - both must be there
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{path} is not a valid card (JSON with the SHA-256 of {', '.join(FILES)}): the "
            f"installation is damaged; reinstall wae."
        ) from None
    return card


def pretrained_dir(name: str) -> Path:
    """The checkpoint directory of the shipped network `name`, after checking each file's
    SHA-256 against its card (a CheckpointError naming the file otherwise)."""
    return _checked(name)[0]


def _checked(name: str) -> tuple[Path, dict[str, Any]]:
    """(the directory, the card) of the shipped network `name`, its files checked."""
    card = pretrained_card(name)
    d = _root() / name
    for file in FILES:
        got = _sha256(d / file) if (d / file).is_file() else "missing"
        if got != card["sha256"][file]:
            raise CheckpointError(
                f"The packaged network {name!r} does not match its card: {d / file} has SHA-256 "
                f"{got}, the card says {card['sha256'][file]}. The installation is damaged or "
                f"the file was changed; reinstall wae, or rebuild the network with "
                f"`python scripts/build_demo_teacher.py`."
            )
    return d, card


def copy_pretrained(name: str, dest: str | os.PathLike[str]) -> Path:
    """The shipped network `name` copied (checked) into the checkpoint directory `dest`,
    which is left as it is when it holds the same files already; returns `dest`."""
    (src, card), dest = _checked(name), Path(dest)
    if all((dest / f).is_file() and _sha256(dest / f) == card["sha256"][f] for f in FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for file in (WEIGHTS, META):  # the metadata last: a directory with it is complete
        atomic_write_bytes(dest / file, (src / file).read_bytes())
    return dest


def write_pretrained(
    checkpoint: str | os.PathLike[str], name: str, card: dict[str, Any], root: Path | None = None
) -> Path:
    """Package the checkpoint directory `checkpoint` as the shipped network `name` (under
    `root`, default the installed ``wae/weights``): its two files copied, ``card.json`` =
    `card` plus their SHA-256. Returns the new directory."""
    dest = (root or _root()) / name
    dest.mkdir(parents=True, exist_ok=True)
    for file in FILES:
        shutil.copyfile(Path(checkpoint) / file, dest / file)
    atomic_write_json(dest / CARD, {**card, "sha256": {f: _sha256(dest / f) for f in FILES}})
    return dest
