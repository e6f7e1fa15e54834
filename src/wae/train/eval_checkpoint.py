"""Evaluate a saved checkpoint on the data it was trained on (or another), by any head.

The service behind ``wae eval``; ``wae reproduce`` and the demo call it too, so resolving the
dataset from a checkpoint's metadata and checking its classes happen in one place.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    CheckpointError,
    CheckpointMeta,
    check_num_classes,
    load_model,
    read_checkpoint_meta,
)
from ..data import DATASET_NAMES, DataError, LabeledDataset, build_dataset
from ..models import WAENet
from ..precision import INFERENCE_PRECISIONS
from ..scorers import bf16_scorer, int8_scorer
from .distributed import device_from_spec
from .evaluate import check_eval_options, evaluate

__all__ = [
    "HeadScores",
    "checked_dataset",
    "checkpoint_dataset",
    "evaluate_checkpoint",
]


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
    doc: CheckpointMeta | Mapping[str, Any] | None = None,
) -> tuple[LabeledDataset, str]:
    """(dataset, its name) to score the checkpoint in `path` on: `data` if given, else the
    dataset its metadata names, at the checkpoint's input size and channels
    (:class:`~wae.checkpoint.CheckpointMeta`). `doc`: its metadata (or model.json document)
    when the caller has read it already. The caller checks that the classes match (after
    the model is loaded, so a wrong count is named first; see :func:`checked_dataset`).
    Every split comes as the model sees images at inference, the train split too (no
    augmentation): it is scored, or calibrates an int8 model."""
    meta = _typed(path, doc)
    dataset = data or meta.dataset
    if not dataset:
        raise CheckpointError(
            f"The checkpoint {path} does not say which data it was trained on; pass --data "
            f"({DATASET_NAMES})."
        )
    if data_dir is None and data is None:
        data_dir = meta.data_config.get("data_dir")
    ds = build_dataset(
        dataset,
        split,
        data_dir=data_dir,
        input_size=meta.input_size,
        in_chans=meta.in_chans,
        subset=subset,
        seed=seed,
        train_transforms=False,  # scored, never trained on: no augmentation
    )
    return ds, str(dataset)


def checked_dataset(
    path: str | os.PathLike[str], doc: CheckpointMeta | Mapping[str, Any], **kwargs: Any
) -> tuple[LabeledDataset, str]:
    """:func:`checkpoint_dataset` (same keywords), refused unless its classes are those the
    checkpoint (its metadata, or model.json document, `doc`) was trained on."""
    meta = _typed(path, doc)
    ds, dataset = checkpoint_dataset(path, doc=meta, **kwargs)
    check_num_classes(meta.doc, ds.num_classes, path)
    _check_classes(meta.classes, ds, dataset)
    return ds, dataset


def _typed(
    path: str | os.PathLike[str], doc: CheckpointMeta | Mapping[str, Any] | None
) -> CheckpointMeta:
    """The checkpoint's metadata: `doc` as it is, typed, or read from `path`."""
    if isinstance(doc, CheckpointMeta):
        return doc
    return read_checkpoint_meta(path) if doc is None else CheckpointMeta.from_doc(doc, path)


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
    precision: str = "fp32",
    calibration_size: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5, per class and under noise (see :func:`evaluate`) of a checkpoint.

    ``head``: for a WAE, "average" (the model's prediction), "low" (s_L) or "fused" (s_c).
    ``allow_code``: your own backbone factories the checkpoint may be built with (see
    :func:`wae.checkpoint.load_model`).
    ``precision``: "fp32" (as trained), "bf16" (the model cast to bfloat16 once, inputs cast
    too; no autocast) or "int8" (ONNX Runtime, QDQ int8 of the exported scorer, calibrated on
    ``calibration_size`` (default 512) seeded images of the same dataset's train split; CPU).
    The result also names the checkpoint, dataset, split, model, head, precision (with the
    calibration figures at int8) and the run's config.
    """
    _check_options(batch_size, noise_vars, head, subset, split, num_workers, seed)
    _check_precision(precision, calibration_size, device)
    dev = torch.device("cpu") if precision == "int8" else device_from_spec(device)
    # The model first: a checkpoint is refused before any data file is opened.
    model, doc = load_model(path, allow_code=allow_code)
    meta = CheckpointMeta.from_doc(doc, path)
    ds, dataset = checked_dataset(
        path, meta, data=data, data_dir=data_dir, split=split, subset=subset, seed=seed
    )
    scorer: nn.Module = _scorer(model, head, path)
    extra: dict[str, Any] = {}
    if precision == "bf16":
        scorer = bf16_scorer(scorer)
    elif precision == "int8":  # calibrated on the train split, as the model sees it (no aug.)
        train_ds, _ = checked_dataset(path, meta, data=data, data_dir=data_dir, split="train")
        scorer, extra = int8_scorer(scorer, train_ds, calibration_size or 512, seed)
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
        model=meta.arch,
        head=head,
        precision=precision,
        **extra,
        config=meta.config,
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


# fp16 is left out: wae evaluates on the CPU by default, where it has no fast path.
PRECISIONS = tuple(p for p in INFERENCE_PRECISIONS if p != "fp16")


def _check_precision(precision: str, calibration_size: int | None, device: Any) -> None:
    """Refuse, before anything is loaded, a precision that does not exist or options that
    would be silently ignored at it."""
    if precision not in PRECISIONS:
        raise CheckpointError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}."
        )
    if calibration_size is not None and precision != "int8":
        raise CheckpointError(
            f"--calibration-size sets how many images calibrate an int8 model; at {precision} "
            f"nothing is calibrated. Drop it, or add --precision int8."
        )
    if calibration_size is not None and not (_is_int(calibration_size) and calibration_size >= 1):
        raise DataError(
            f"--calibration-size must be a positive number of images, got {calibration_size!r}."
        )
    if precision == "int8" and str(device) not in ("auto", "cpu"):
        raise CheckpointError(
            f"--precision int8 runs the quantised model with ONNX Runtime on the CPU; it cannot "
            f"run on --device {device}. Drop --device (or use --device cpu)."
        )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_classes(saved: Sequence[str] | None, ds: LabeledDataset, dataset: str) -> None:
    if saved and list(saved) != list(ds.classes):
        raise CheckpointError(
            f"The checkpoint was trained on classes {list(saved)[:5]}... but {dataset} has "
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
