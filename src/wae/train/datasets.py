"""Datasets from a run's config: the one place that turns ``[data]`` / ``[eval]`` into datasets.

The trainer, ``wae reproduce``, the demo and ``wae eval`` all build their data here, so a
subset, a validation hold-out or an image size means the same thing in each of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data import LabeledDataset, balanced_subset, build_dataset, train_val_split
from ..models import is_model, model_cfg
from .config import ConfigError, TrainConfig, load_config

__all__ = ["SPLITS", "build_datasets", "resolve_image"]

# "train" and "val" as the trainer uses them (subset, hold-out, augmentation); "test" is
# eval.split with eval.subset; "all_train" is the whole training split, nothing held out.
SPLITS = ("train", "val", "test", "all_train")


def resolve_image(cfg: TrainConfig | Mapping[str, Any]) -> tuple[int, int]:
    """(input_size, in_chans) of a run: the data's if set, else the model's registered ones
    (a backbone name has none: its config must set both, which config validation checks)."""
    cfg = load_config(cfg)
    if not is_model(cfg.model.name):
        return cfg.data.input_size, cfg.data.in_chans
    mc = model_cfg(cfg.model.name)
    return cfg.data.input_size or mc["input_size"], cfg.data.in_chans or mc["in_chans"]


def build_datasets(
    cfg: TrainConfig | Mapping[str, Any],
    splits: Sequence[str] = ("train", "val", "test"),
    *,
    augment: bool | None = None,
    download: bool | None = None,
) -> dict[str, LabeledDataset]:
    """The datasets a run with `cfg` uses, by split name (see ``SPLITS``).

    ``augment`` overrides ``data.augment`` for "train" (False: the training images as they
    are, e.g. to calibrate or prune on them); ``download`` overrides ``data.download`` (a
    distributed run lets rank 0 download first). Items are ``(float32 (C, S, S) in [0, 1],
    label)``; datasets carry ``.classes``, ``.mean``, ``.std``.
    """
    cfg = load_config(cfg)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"splits must be among {SPLITS}, got {unknown}.")
    d = cfg.data
    size, chans = resolve_image(cfg)
    common = dict(
        data_dir=d.data_dir,
        input_size=size,
        in_chans=chans,
        seed=cfg.seed,
        skip_bad=d.skip_bad,
        download=d.download if download is None else download,
    )
    out: dict[str, LabeledDataset] = {}
    if "all_train" in splits:
        out["all_train"] = build_dataset(d.dataset, "train", train_transforms=False, **common)
    if "train" in splits or "val" in splits:
        out.update(_train_val(cfg, d.augment if augment is None else augment, common))
    if "test" in splits and cfg.eval.split:
        out["test"] = build_dataset(d.dataset, cfg.eval.split, subset=cfg.eval.subset, **common)
    return {s: out[s] for s in splits if s in out}


def _train_val(
    cfg: TrainConfig, augment: bool, common: dict[str, Any]
) -> dict[str, LabeledDataset]:
    """The training set (subset, minus the hold-out) and the validation set."""
    d = cfg.data
    train = build_dataset(d.dataset, "train", train_transforms=augment, subset=d.subset, **common)
    if d.val_fraction > 0:
        train, val = train_val_split(train, d.val_fraction, cfg.seed)
        if not augment:
            train = train.with_indices(torch.arange(len(train)), False, "train")
        if d.val_subset is not None and d.val_subset < len(val):
            keep = balanced_subset(val.targets, d.val_subset, cfg.seed)
            val = val.with_indices(keep, False, "val")
    else:
        val = build_dataset(d.dataset, d.val_split, subset=d.val_subset, **common)
    if val.num_classes != train.num_classes:
        raise ConfigError(
            f"The validation split has {val.num_classes} classes but train has "
            f"{train.num_classes}: check data.val_split."
        )
    return {"train": train, "val": val}
