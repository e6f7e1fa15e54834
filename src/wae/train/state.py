"""The resumable part of a checkpoint: optimiser, schedule, loop counters, RNG, history.

Stored beside the weights as ``train_state.safetensors`` (every tensor: optimiser moments,
torch RNG states as uint8 tensors) + ``train_state.json`` (everything else: param groups,
scalars, python/numpy RNG states, the metrics history). Nothing is pickled, so nothing is
unpickled on load either.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..checkpoint import CheckpointError, atomic_save_tensors, atomic_write_json

__all__ = [
    "TRAIN_STATE_JSON",
    "TRAIN_STATE_TENSORS",
    "capture_rng",
    "load_train_state",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "restore_rng",
    "save_train_state",
]

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors keyed ``optimizer.<param index>.<name>``, JSON document)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optimizer.{idx}.{name}"] = v
            else:  # None (SGD without momentum) or plain numbers
                scalars.setdefault(str(idx), {})[name] = v
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], doc: dict) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`: a state_dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in doc["scalars"].items():
        state.setdefault(int(idx), {}).update(st)
    groups = [
        {k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in doc["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch CPU/CUDA as uint8 tensors, python/numpy as JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    doc = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, doc


def restore_rng(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only where the devices exist)."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "python" in doc:
        version, internal, gauss = doc["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in doc:
        kind, keys, pos, has_gauss, cached = doc["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_train_state(
    directory: str | os.PathLike[str], tensors: dict[str, torch.Tensor], doc: dict[str, Any]
) -> None:
    """Write train_state.safetensors then train_state.json, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(directory / TRAIN_STATE_TENSORS, tensors, {"format": "wae-train-state"})
    atomic_write_json(directory / TRAIN_STATE_JSON, doc)


def load_train_state(directory: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (tensors, JSON document) written by :func:`save_train_state`; nothing unpickled."""
    directory = Path(directory)
    try:
        tensors = load_file(directory / TRAIN_STATE_TENSORS)
        doc = json.loads((directory / TRAIN_STATE_JSON).read_text())
    except Exception as e:  # missing, truncated or not safetensors (e.g. a pickle)
        raise CheckpointError(
            f"Could not read the train state in {directory} ({type(e).__name__}: {e}). The "
            f"checkpoint is incomplete or corrupt; resume from an earlier one or start over "
            f"with --overwrite."
        ) from e
    return tensors, doc
