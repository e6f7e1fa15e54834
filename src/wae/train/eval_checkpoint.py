"""Evaluate a saved checkpoint on the data it was trained on (or another), by any head.

The service behind ``wae eval``; ``wae reproduce`` and the demo call it too, so resolving the
dataset from a checkpoint's metadata and checking its classes happen in one place.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointError, check_num_classes, load_model, read_meta
from ..data import DataError, LabeledDataset, build_dataset
from ..models import WAENet
from .distributed import resolve_device
from .evaluate import check_eval_options, evaluate

__all__ = ["HeadScores", "checkpoint_dataset", "evaluate_checkpoint"]


class HeadScores(nn.Module):
    """A WAENet scored by one head choice (see ``WAENet.combine_heads``): x -> (N, K)."""

    def __init__(self, model: WAENet, head: str) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s_low, s_fused = self.model.forward_head(self.model.forward_features(x))
        return WAENet.combine_heads(s_low, s_fused, self.head)


def checkpoint_dataset(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    subset: int | None = None,
    seed: int = 0,
    doc: dict[str, Any] | None = None,
) -> tuple[LabeledDataset, str]:
    """(dataset, its name) to score the checkpoint in `path` on: `data` if given, else the
    dataset its metadata names, at the checkpoint's input size and channels. `doc`: its
    model.json document when the caller has read it already. The caller checks that the
    classes match (after the model is loaded, so a wrong count is named first)."""
    doc = doc if doc is not None else read_meta(path)
    meta, config = doc["meta"], doc["config"]
    data_cfg = config.get("data") if isinstance(config.get("data"), dict) else {}
    dataset = data or meta.get("dataset") or data_cfg.get("dataset")
    if not dataset:
        raise CheckpointError(
            f"The checkpoint {path} does not say which data it was trained on; pass --data "
            f"(fashion-mnist, cifar10, cifar100, skimage-textures[-P] or an ImageFolder path)."
        )
    if data_dir is None and data is None:
        data_dir = data_cfg.get("data_dir")
    spec_kw = doc["spec"].get("kwargs", {})
    ds = build_dataset(
        dataset,
        split,
        data_dir=data_dir,
        input_size=meta.get("input_size") or _size(spec_kw.get("input_size")),
        in_chans=meta.get("in_chans") or spec_kw.get("in_chans"),
        subset=subset,
        seed=seed,
    )
    return ds, str(dataset)


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    subset: int | None = None,
    head: str = "average",
    noise_vars: Sequence[float] = (),
    batch_size: int = 256,
    device: str | torch.device = "auto",
    seed: int = 0,
    num_workers: int = 0,
    allow_code: Collection[str] = (),
) -> dict[str, Any]:
    """Top-1/top-5, per class and under noise (see :func:`evaluate`) of a checkpoint.

    ``head``: for a WAE, "average" (the model's prediction), "low" (s_L) or "fused" (s_c).
    ``allow_code``: your own backbone factories the checkpoint may be built with (see
    :func:`wae.checkpoint.load_model`).
    The result also names the checkpoint, dataset, split, model, head and the run's config.
    """
    _check_options(batch_size, noise_vars, head, subset, split, num_workers, seed)
    dev = resolve_device(device)
    # The model first: a checkpoint is refused before any data file is opened.
    model, doc = load_model(path, allow_code=allow_code)
    ds, dataset = checkpoint_dataset(
        path, data=data, data_dir=data_dir, split=split, subset=subset, seed=seed, doc=doc
    )
    check_num_classes(doc, ds.num_classes, path)
    _check_classes(doc["meta"].get("classes"), ds, dataset)
    scorer = _scorer(model, head, path)
    result = evaluate(
        scorer.to(dev),
        ds,
        noise_vars,
        batch_size=batch_size,
        device=dev,
        seed=seed,
        num_workers=num_workers,
    )
    result.update(
        checkpoint=str(Path(path)),
        dataset=dataset,
        split=split,
        model=doc["spec"].get("name") or doc["spec"].get("backbone"),
        head=head,
        config=doc["config"],
    )
    return result


def _check_options(
    batch_size: int,
    noise_vars: Sequence[float],
    head: str,
    subset: int | None,
    split: str,
    num_workers: int,
    seed: int,
) -> None:
    """Refuse, before anything is loaded, options that would fail late or mislead (an
    accuracy row for noise of variance nan or inf, an empty batch)."""
    check_eval_options(batch_size, noise_vars)
    if head not in WAENet.HEADS:
        raise CheckpointError(f"head must be one of {WAENet.HEADS}, got {head!r}.")
    if subset is not None and not (_is_int(subset) and subset >= 1):
        raise DataError(f"--subset must be a positive number of images, got {subset!r}.")
    if split not in ("train", "val", "test"):
        raise DataError(f"--split must be train, val or test, got {split!r}.")
    if not (_is_int(num_workers) and num_workers >= 0):
        raise DataError(f"--num-workers must be an integer >= 0, got {num_workers!r}.")
    if not (_is_int(seed) and 0 <= seed < 2**32):
        raise DataError(f"--seed must be an integer from 0 to 2**32 - 1, got {seed!r}.")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_classes(saved: list[str] | None, ds: LabeledDataset, dataset: str) -> None:
    if saved and list(saved) != list(ds.classes):
        raise CheckpointError(
            f"The checkpoint was trained on classes {saved[:5]}... but {dataset} has "
            f"{list(ds.classes)[:5]}...: the labels would not mean the same thing. Evaluate on "
            f"the dataset the checkpoint was trained on."
        )


def _scorer(model: nn.Module, head: str, path: str | os.PathLike[str]) -> nn.Module:
    if head == "average":
        return model
    if not isinstance(model, WAENet) or (head == "fused" and model.head_fused is None):
        raise CheckpointError(
            f"--head {head} needs a WAE checkpoint with that head; {path} holds "
            f"{type(model).__name__}"
            + ("" if isinstance(model, WAENet) else " (a plain network has one output)")
            + ". Drop --head."
        )
    return HeadScores(model, head)


def _size(v: object) -> int | None:
    if isinstance(v, (list, tuple)) and v:
        return int(v[0])
    return int(v) if isinstance(v, int) else None
