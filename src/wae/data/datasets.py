"""The dataset every caller gets: :func:`build_dataset` -> :class:`LabeledDataset`.

A :class:`LabeledDataset` is a source (:mod:`.sources`, :mod:`.folders`), a selection of its
indices, a transform (:mod:`.transforms`) and the :class:`DatasetInfo` a model needs.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from .errors import SKIP_BAD_HINT, DataError, DataWarning, fail_if
from .folders import ImageFolderSource, folder_image_size, folder_source
from .generated import GENERATED_NAMES, generated_stats, parse_generated
from .locate import resolve_dir
from .sources import (
    FASHION_MNIST_SIZE,
    TensorImageSource,
    cifar_source,
    fashion_mnist_source,
)
from .splits import balanced_subset
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    build_transform,
    check_size_chans,
    stats_for_chans,
)

__all__ = ["DATASET_NAMES", "DatasetInfo", "LabeledDataset", "Split", "build_dataset"]

#: What a dataset argument may name, as help texts and errors list it.
DATASET_NAMES = (
    "fashion-mnist, cifar10, cifar100, skimage-textures[-P], fonts[-S] or an ImageFolder path"
)

Split = Literal["train", "val", "test"]

_NAMES = {
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
}
# name -> (mean, std, native size, crop padding, native channels)
_SPECS: dict[str, tuple[tuple[float, ...], tuple[float, ...], int | None, int, int]] = {
    "fashion-mnist": ((0.2860,), (0.3530,), FASHION_MNIST_SIZE, 2, 1),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32, 4, 3),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32, 4, 3),
    "folder": (IMAGENET_MEAN, IMAGENET_STD, None, 0, 3),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    ``mean``/``std`` (one value per channel, [0, 1] pixel scale) are metadata for the model's
    own normalisation; the dataset does not apply them. ``native_size`` is the stored image
    size for small-image datasets (None for folders of arbitrary images).
    """

    name: str
    split: str
    root: str
    classes: tuple[str, ...]
    in_chans: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_size: int | None = None
    crop_padding: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class LabeledDataset(Dataset):
    """A source, a selection of its indices, a transform and :class:`DatasetInfo`.

    ``ds[i]`` is ``(image, label)``: float32 ``(in_chans, input_size, input_size)`` in [0, 1]
    and an int. With ``skip_bad`` an unreadable image is skipped with one warning per file and
    the next readable item is returned in its place; otherwise :class:`DataError` is raised.
    """

    def __init__(
        self,
        source: Dataset,
        info: DatasetInfo,
        transform: Callable[[Any], torch.Tensor],
        indices: torch.Tensor | None = None,
        skip_bad: bool = False,
    ):
        self.source, self.info, self.transform, self.skip_bad = source, info, transform, skip_bad
        all_targets = torch.as_tensor(source.targets, dtype=torch.int64)
        self.indices = torch.arange(len(all_targets)) if indices is None else indices.long()
        self.targets = all_targets[self.indices]
        self._bad: set[int] = set()

    # Metadata, forwarded so a LabeledDataset can be used wherever the info is needed.
    classes = property(lambda self: list(self.info.classes))
    num_classes = property(lambda self: self.info.num_classes)
    in_chans = property(lambda self: self.info.in_chans)
    input_size = property(lambda self: self.info.input_size)
    mean = property(lambda self: self.info.mean)
    std = property(lambda self: self.info.std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for dataset of length {n}")
        for k in range(n):
            j = int(self.indices[(i + k) % n])
            if j in self._bad:
                continue
            try:
                image, target = self.source[j]
            except DataError as e:
                if not self.skip_bad:
                    raise
                self._bad.add(j)
                warnings.warn(f"Skipping bad image (skip_bad=True): {e}", DataWarning, stacklevel=2)
                continue
            return self.transform(image), target
        raise DataError(f"No readable images left in {self.info.root}; every one failed to load.")

    def verify(self) -> list[str]:
        """Eagerly decode every image of this dataset; return the paths of bad ones.

        Raises :class:`DataError` listing them unless ``skip_bad``, in which case they are
        dropped from the dataset with one warning. In-memory datasets have nothing to check.
        """
        if not hasattr(self.source, "verify"):
            return []
        bad = self.source.verify(self.indices.tolist())
        if not bad:
            return []
        paths = [p for _, p, _ in bad]
        listing = "; ".join(f"{p} ({r})" for _, p, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
        if not self.skip_bad:
            raise DataError(
                f"{len(bad)} unreadable image(s) in {self.info.root}: {listing}. Delete or "
                f"replace them, {SKIP_BAD_HINT}."
            )
        warnings.warn(
            f"Dropping {len(bad)} unreadable image(s) (skip_bad=True): {listing}",
            DataWarning,
            stacklevel=2,
        )
        keep = ~torch.isin(self.indices, torch.tensor([j for j, _, _ in bad]))
        self.indices, self.targets = self.indices[keep], self.targets[keep]
        self._bad.update(j for j, _, _ in bad)
        return paths

    def with_indices(self, indices: torch.Tensor, train: bool, split: str) -> LabeledDataset:
        """A view on positions ``indices`` of this dataset, with train or eval transforms."""
        info = dataclasses.replace(self.info, split=split)
        return LabeledDataset(
            self.source, info, _transform_for(info, train), self.indices[indices], self.skip_bad
        )

    def __repr__(self) -> str:
        i = self.info
        return (
            f"LabeledDataset({i.name!r}, split={i.split!r}, n={len(self)}, "
            f"classes={i.num_classes}, in_chans={i.in_chans}, input_size={i.input_size}, "
            f"root={i.root!r})"
        )


def _transform_for(info: DatasetInfo, train: bool) -> ImageTransform:
    return build_transform(
        info.input_size,
        train,
        in_chans=info.in_chans,
        native_size=info.native_size,
        crop_padding=info.crop_padding,
    )


def _open_source(
    raw_name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None,
    in_chans: int | None,
    seed: int,
    download: bool,
) -> tuple[str, TensorImageSource | ImageFolderSource, str, torch.Tensor | None]:
    """Resolve a dataset name or path to ``(key, source, root, indices)``.

    ``key`` indexes ``_SPECS``; ``indices`` is the part of ``source`` that ``split`` uses
    (None: all of it).
    """
    key = _NAMES.get(raw_name.lower().replace("-", "").replace("_", ""))
    if key == "fashion-mnist":
        fm_split = "train" if split == "train" else "test"
        source, root = fashion_mnist_source(fm_split, data_dir, download)
        return key, source, root, None
    if key in ("cifar10", "cifar100"):
        source, root = cifar_source(key, split, resolve_dir(data_dir), download)
        return key, source, root, None
    if gen := parse_generated(raw_name):
        source, root = gen.source(split)
        return gen.name, source, root, None
    path = Path(raw_name).expanduser()
    if not path.exists() and os.sep not in raw_name and "/" not in raw_name:
        raise DataError(
            f"Unknown dataset {raw_name!r}: not one of fashion-mnist, cifar10, cifar100, "
            f"{', '.join(GENERATED_NAMES)}, and no directory of that name exists. Pass a known "
            f"name or the path of an ImageFolder tree (root/<class>/<image>)."
        )
    source, indices = folder_source(path, split, in_chans or 3, seed)
    return "folder", source, str(path), indices


def _spec(key: str) -> tuple[tuple[float, ...], tuple[float, ...], int | None, int, int]:
    """``_SPECS[key]``; a generated dataset's (skimage-textures, fonts) from its build (native
    size: its image size; no zero-padded crop: its train images are already random windows or
    placements)."""
    if gen := parse_generated(key):
        return (*generated_stats(gen), gen.image_size, 0, 1)
    return _SPECS[key]


def _make_info(
    key: str,
    raw_name: str,
    split: str,
    root: str,
    classes: list[str],
    input_size: int | None,
    in_chans: int | None,
) -> DatasetInfo:
    """The :class:`DatasetInfo` of source ``key``, with its defaults for size and channels."""
    mean, std, native_size, crop_padding, native_chans = _spec(key)
    if key == "folder" and (declared := folder_image_size(root)) is not None:
        native_size, crop_padding = declared, declared // 8  # used like CIFAR (4 at 32)
    in_chans = native_chans if in_chans is None else in_chans
    input_size = (native_size or 224) if input_size is None else input_size
    check_size_chans(input_size, in_chans)
    if key != "folder" and in_chans != native_chans:
        # Folders convert per image (they may mix modes) and warn there; here all images differ.
        how = "grey to RGB" if in_chans == 3 else "RGB to grey"
        warnings.warn(
            f"{raw_name} images have {native_chans} channel(s) but the model expects in_chans="
            f"{in_chans}; converting every image ({how}).",
            DataWarning,
            stacklevel=3,  # the caller of build_dataset
        )
    mean, std = stats_for_chans(mean, std, in_chans)
    return DatasetInfo(
        name=key if key != "folder" else Path(root).name,
        split=split,
        root=root,
        classes=tuple(classes),
        in_chans=in_chans,
        input_size=input_size,
        mean=mean,
        std=std,
        native_size=native_size,
        crop_padding=crop_padding,
    )


def build_dataset(
    name_or_path: str | os.PathLike[str],
    split: Split,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    input_size: int | None = None,
    in_chans: int | None = None,
    train_transforms: bool = True,
    subset: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    download: bool = False,
) -> LabeledDataset:
    """Build a dataset by name (``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``,
    ``"skimage-textures[-<patch>][-raw]"``: :mod:`.textures`, ``"fonts[-<size>]"``:
    :mod:`.fonts`) or path.

    A path is an ImageFolder tree: ``root/<class>/<image>``, or with split folders
    ``root/{train,val[,test]}/<class>/<image>``. Splits: Fashion-MNIST, CIFAR,
    skimage-textures and fonts have an official train and test set, and ``"val"`` means the
    test set (as ImageNet's val set is the paper's test set); use :func:`train_val_split` to
    hold out part of train instead. A tree with only one held-out folder serves it for both
    val and test; a tree without split folders holds out a seeded 10% per class as val/test.

    Defaults: ``input_size`` is 28 (Fashion-MNIST), 32 (CIFAR), the image size
    (skimage-textures, fonts) or 224 (folders); ``in_chans`` is the dataset's own (1 for
    Fashion-MNIST and the generated datasets, 3 otherwise); a mismatch converts images with a
    :class:`DataWarning`. Augmentation is used for ``split="train"`` when ``train_transforms``.
    ``subset`` keeps a seeded, class-balanced choice of that many images.

    Returns a :class:`LabeledDataset` with ``.classes``, ``.num_classes``, ``.in_chans``,
    ``.input_size``, ``.mean``, ``.std`` (metadata only, not applied) and ``.info``; items are
    ``(float32 (in_chans, input_size, input_size) in [0, 1], int label)``.
    """
    fail_if(
        split not in ("train", "val", "test"),
        f"split must be 'train', 'val' or 'test', got {split!r}.",
    )
    fail_if(
        in_chans not in (None, 1, 3),
        f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans!r}. Fix --in-chans.",
    )
    if input_size is not None:  # options first, before any file is opened
        check_size_chans(input_size, in_chans or 3)
    raw_name = str(name_or_path)
    key, source, root, indices = _open_source(raw_name, split, data_dir, in_chans, seed, download)
    info = _make_info(key, raw_name, split, root, source.classes, input_size, in_chans)
    if subset is not None:
        targets = torch.as_tensor(source.targets, dtype=torch.int64)
        base = torch.arange(len(targets)) if indices is None else indices
        indices = base[balanced_subset(targets[base], subset, seed)]
    transform = _transform_for(info, train=split == "train" and train_transforms)
    return LabeledDataset(source, info, transform, indices, skip_bad)
