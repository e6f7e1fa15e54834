"""Fingerprints of a config (what --resume and the stage hand-over compare) and readable
differences between two configs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .schema import TrainConfig, config_to_dict

__all__ = ["NOT_FINGERPRINTED", "config_diff", "fingerprint", "stage_fingerprint"]

# Keys that do not change what a run computes (or are allowed to move): left out of the
# fingerprint that --resume and stage hand-over compare.
# teacher.cache: the same teacher logits, computed once or at every step.
NOT_FINGERPRINTED = ("name", "runtime", "data.data_dir", "teacher.cache")


def _strip(doc: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for key in keys:
        *parents, leaf = key.split(".")
        node = doc
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return doc


def _hash(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint(cfg: TrainConfig | Mapping[str, Any]) -> str:
    """Hash of everything that decides what a run computes (all but name, runtime, data_dir)."""
    doc = config_to_dict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
    return _hash(_strip(doc, NOT_FINGERPRINTED))


def stage_fingerprint(cfg: TrainConfig | Mapping[str, Any], stage: int) -> str:
    """Hash of what decides the weights at the end of stage `stage` (1-based): seed, model,
    data and stages 1..stage. Stage N+1 may start from a stage-N checkpoint whose value
    matches, even if later stages or the final evaluation changed."""
    doc = config_to_dict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
    doc = _strip(doc, NOT_FINGERPRINTED)
    return _hash(
        {k: doc.get(k) for k in ("seed", "model", "data")} | {"stages": doc["stages"][:stage]}
    )


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, Mapping):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(doc, list) and doc and all(isinstance(v, Mapping) for v in doc):
        out = {}
        for i, v in enumerate(doc, 1):
            out |= _flatten(v, f"{prefix}.{i}")
        return out
    return {prefix: doc}


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = NOT_FINGERPRINTED
) -> list[str]:
    """Human-readable differences ``"stages.2.lr: 0.01 -> 0.02"`` between two config dicts."""
    a, b = _flatten(_strip(dict(old), ignore)), _flatten(_strip(dict(new), ignore))
    return [
        f"{k}: {json.dumps(a.get(k, '<absent>'))} -> {json.dumps(b.get(k, '<absent>'))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
