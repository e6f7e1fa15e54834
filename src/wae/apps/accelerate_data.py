"""The data of :func:`wae.apps.accelerate_module.accelerate`: a dataset name or ImageFolder
path as it is, or in-memory Datasets / DataLoaders written once to ``OUT/data``.

The engine builds its datasets by name from a config, so in-memory images become an
ImageFolder tree the configs name: ``OUT/data/{train,test}/<class>/<n>.png`` (8-bit PNGs,
lossless for uint8 images, 1/255 steps for float ones), class folders sorting in label order
("03" or "03-dress"), and ``wae-folder.json`` declaring the image size (so the tree is used
at that size like CIFAR, not resized and cropped by the ImageNet rule) and, for re-runs, an
order-independent digest of each split. Every image is checked in one pass before anything
is written, and the tree is written to a temporary folder renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import build_dataset
from ..data.folders import FOLDER_INFO, save_image, write_folder_info
from .accelerate import AccelerateError

__all__ = ["DataPlan", "plan_data"]

_WRITER = "wae.accelerate"  # OUT/data's wae-folder.json says who wrote it


@dataclass
class DataPlan:
    """The run's data: `dataset` (what the configs name: a dataset name, an ImageFolder path,
    or OUT/data) and, for in-memory data, the splits to write there, their class folders
    and their images' digests (order-independent)."""

    dataset: str
    data_dir: str | None = None
    splits: dict[str, Any] | None = None
    classes: list[str] | None = None
    chans: int = 3
    num_classes: int = 0
    digests: dict[str, str] | None = None
    reuse: bool = False

    def facts(self, size: int, chans: int) -> dict[str, Any]:
        """The teacher checkpoint's meta: the training set's classes and statistics (as
        :func:`wae.data.build_dataset` reads them, like the engine)."""
        ds = build_dataset(
            self.dataset,
            "train",
            data_dir=self.data_dir,
            input_size=size,
            in_chans=chans,
            train_transforms=False,
        )
        return {
            "dataset": self.dataset,
            "classes": list(ds.classes),
            "num_classes": ds.num_classes,
            "in_chans": ds.in_chans,
            "input_size": size,
            "mean": list(ds.mean),
            "std": list(ds.std),
        }

    def check_reuse(self, overwrite: bool) -> None:
        """Decide whether OUT/data holds these images already (then it is kept, `reuse`);
        refuse a folder not written here, and other images unless `overwrite`."""
        out = Path(self.dataset)
        if self.splits is None or not out.exists():
            return
        info = _folder_info(out)
        if info is None or info.get("written_by") != _WRITER:
            raise AccelerateError(
                f"{out} exists and was not written by wae.accelerate: move it away or pass "
                f"another output."
            )
        self.reuse = info.get("digests") == self.digests and info.get("classes") == self.classes
        if not (self.reuse or overwrite):
            raise AccelerateError(
                f"The images in {out} (written by an earlier call) differ from train_data / "
                f"test_data, and the runs in {out.parent} were trained on them. Pass "
                f"overwrite=True to start over on these images, or another output. (A dataset "
                f"with random augmentation differs on every call: pass it without; wae "
                f"augments itself, data.augment.)"
            )

    def write(self, log: Callable[[str], Any]) -> None:
        """Write the in-memory splits as OUT/data/{train,test}/<class>/<n>.png (through a
        temporary folder renamed into place), unless they are there already."""
        if self.splits is None or self.reuse:
            return
        out = Path(self.dataset)
        log(f"[accelerate] writing the images into {out}")
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".data-"))
        try:
            digests, sizes = {}, set()
            for split, data in self.splits.items():
                for c in self.classes or ():
                    (tmp / split / c).mkdir(parents=True)
                digests[split], found = _scan(
                    data, f"{split}_data", self.chans, self.num_classes, self.classes, tmp / split
                )
                sizes |= found
            side = next(iter(sizes)) if len(sizes) == 1 else (0, 0)
            size = side[0] if side[0] == side[1] and 8 <= side[0] <= 1024 else None
            info = {"written_by": _WRITER, "image_size": size, "in_chans": self.chans}
            write_folder_info(tmp, {**info, "classes": self.classes, "digests": digests})
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _folder_info(root: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((root / FOLDER_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def plan_data(
    train: Any,
    test: Any,
    folder: Path,
    data_dir: Any,
    size: int,
    chans: int,
    num_classes: int,
) -> DataPlan:
    """The run's data, every image checked (nothing written)."""
    if isinstance(train, (str, os.PathLike)):
        if test is not None:
            raise AccelerateError(
                "A dataset name or ImageFolder path brings its own test split: leave test_data "
                "out (or pass both train_data and test_data as Datasets)."
            )
        data = DataPlan(str(train), None if data_dir is None else str(data_dir))
        found = data.facts(size, chans)["num_classes"]
        if found != num_classes:
            raise AccelerateError(
                f"{train} has {found} classes but model returns {num_classes} logits: pass the "
                f"data your network was trained on."
            )
        return data
    if data_dir is not None:
        raise AccelerateError(
            "data_dir says where a dataset named by train_data lives; with Datasets or "
            "DataLoaders leave it out."
        )
    splits = {"train": _source(train, "train_data"), "test": _source(test, "test_data")}
    classes = _class_folders(train, num_classes)
    digests = {k: _scan(v, f"{k}_data", chans, num_classes, classes)[0] for k, v in splits.items()}
    return DataPlan(str(folder), None, splits, classes, chans, num_classes, digests)


def _source(data: Any, what: str) -> Any:
    if isinstance(data, DataLoader) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return data
    hint = " (test_data is needed with Datasets)" if data is None else ""
    raise AccelerateError(
        f"{what} must be a torch Dataset of (image, label) or a DataLoader of (images, labels)"
        f" batches, or train_data a dataset name / ImageFolder path; got "
        f"{type(data).__name__}{hint}."
    )


def _class_folders(data: Any, num_classes: int) -> list[str]:
    """One folder name per class, sorting in label order: "07", or "07-dress" where the data
    name their classes (``.classes``)."""
    names = getattr(data.dataset if isinstance(data, DataLoader) else data, "classes", None)
    ok = isinstance(names, (list, tuple)) and len(names) == num_classes
    ok = ok and all(isinstance(n, str) for n in names)
    width = len(str(num_classes - 1))
    return [
        f"{k:0{width}d}" + (f"-{re.sub(r'[^A-Za-z0-9_.-]+', '_', names[k])[:40]}" if ok else "")
        for k in range(num_classes)
    ]


def _scan(
    data: Any,
    what: str,
    chans: int,
    num_classes: int,
    classes: list[str] | None,
    folder: Path | None = None,
) -> tuple[str, set[tuple[int, int]]]:
    """(digest of the images and labels, whatever their order; the image sizes) of every item
    of `data`, each checked; with `folder`, written there as <class>/<n>.png."""
    hashes, counts, sizes = [], [0] * num_classes, set()
    for i, (image, label) in enumerate(_items(data, what)):
        x, y = _item(image, label, f"{what} item {i}", chans, num_classes)
        shape = ",".join(map(str, x.shape))
        hashes.append(hashlib.sha256(f"{y}:{shape}:".encode() + x.numpy().tobytes()).digest())
        counts[y] += 1
        sizes.add((x.shape[1], x.shape[2]))
        if folder is not None and classes is not None:
            save_image(folder / classes[y] / f"{i:07d}.png", x)
    missing = [k for k, n in enumerate(counts) if n == 0]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise AccelerateError(
            f"{what} has no image of class {shown} (model returns {num_classes} logits): wae "
            f"trains and scores every class, so give {what} images of each."
        )
    return hashlib.sha256(b"".join(sorted(hashes))).hexdigest(), sizes


def _items(data: Any, what: str) -> Iterator[tuple[Any, Any]]:
    if not isinstance(data, DataLoader):
        for i in range(len(data)):
            yield _pair(data[i], f"{what} item {i}")
        return
    for b, batch in enumerate(data):
        images, labels = _pair(batch, f"{what} batch {b}")
        if not (isinstance(images, torch.Tensor) and images.ndim == 4):
            raise AccelerateError(
                f"{what} batch {b}: the images must be one tensor (N, C, H, W), got "
                f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}."
            )
        labels = torch.as_tensor(labels)
        if labels.shape != (len(images),):
            raise AccelerateError(
                f"{what} batch {b}: {len(images)} images but labels of shape "
                f"{tuple(labels.shape)}; give one int label per image."
            )
        yield from zip(images, labels, strict=True)


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if not (isinstance(item, (tuple, list)) and len(item) >= 2):
        raise AccelerateError(
            f"{where} is a {type(item).__name__}, not an (image, label) pair: the Dataset must "
            f"return (image tensor (C, H, W), int label), as torchvision's datasets do."
        )
    return item[0], item[1]


def _item(image: Any, label: Any, where: str, chans: int, num_classes: int) -> tuple[Any, int]:
    """(uint8 image (C, H, W) on the CPU, int label), checked."""
    if not isinstance(image, torch.Tensor):
        raise AccelerateError(
            f"{where}: the image is a {type(image).__name__}, not a tensor. Give image "
            f"tensors (C, H, W) in [0, 1], e.g. with torchvision's transforms.ToTensor()."
        )
    x = image.detach().cpu()
    x = x.unsqueeze(0) if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[0] != chans or min(x.shape[1:]) < 1:
        raise AccelerateError(
            f"{where}: an image of shape {tuple(image.shape)}, but model takes {chans}-channel "
            f"images: give tensors ({chans}, H, W)."
        )
    if x.is_floating_point():
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise AccelerateError(
                f"{where}: pixel values from {lo:.3g} to {hi:.3g}, outside [0, 1]. wae feeds "
                f"networks images in [0, 1] (as ToTensor gives them): drop Normalize from the "
                f"data and, if your network was trained on normalised images, put the "
                f"normalisation inside it (a first layer)."
            )
        x = (x * 255).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise AccelerateError(f"{where}: images must be float in [0, 1] or uint8, got {x.dtype}.")
    return x.contiguous(), _label(label, where, num_classes)


def _label(label: Any, where: str, num_classes: int) -> int:
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise AccelerateError(
            f"{where}: the label is {label!r}; labels must be ints (class indices 0..K-1)."
        )
    if not 0 <= int(label) < num_classes:
        raise AccelerateError(
            f"{where}: label {int(label)}, but model returns {num_classes} logits (classes 0.."
            f"{num_classes - 1}): pass the data your network was trained on."
        )
    return int(label)
