"""In-memory sources: whole splits held as one uint8 tensor (Fashion-MNIST, CIFAR).

A source gives raw ``(image, label)`` items before transforms; here an item is a tensor index,
not a decode. Image-folder trees are in :mod:`.folders`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from .errors import DOWNLOAD_HINT, DataError, fail_if
from .idx import read_idx
from .locate import DATA_DIR_ENV, DEFAULT_CACHE_DIR, locate_fashion_mnist

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SIZE",
    "TensorImageSource",
    "cifar_source",
    "fashion_mnist_source",
    "load_fashion_mnist",
]

#: Fashion-MNIST's image side: its IDX files must hold (N, 28, 28) images.
FASHION_MNIST_SIZE = 28
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class TensorImageSource(Dataset):
    """A whole split held in memory as a uint8 tensor.

    ``images`` is ``(N, C, H, W)`` uint8 (a strided view is fine), ``targets`` ``(N,)`` int64.
    ``source[i]`` is ``(images[i], int(targets[i]))``: a tensor index, no decoding.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]):
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(targets):
            raise ValueError(
                f"expected uint8 images (N, C, H, W) and N targets, got {images.dtype} "
                f"{tuple(images.shape)} and {len(targets)} targets"
            )
        self.images, self.targets, self.classes = images, targets, list(classes)
        self.root = "<memory>"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.targets[i])


@lru_cache(maxsize=4)
def _load_idx_pair(images: str, labels: str, stamp: tuple[int, ...]) -> tuple[Any, Any]:
    # Cached on path + size + mtime so building train and eval views of a split reads it once.
    x, y = read_idx(images), read_idx(labels)
    fail_if(
        x.ndim != 3 or x.dtype != np.uint8,
        f"{images} should hold uint8 images of shape (N, H, W), found {x.dtype} {x.shape}.",
    )
    h, w = x.shape[1:]
    fail_if(
        (h, w) != (FASHION_MNIST_SIZE, FASHION_MNIST_SIZE),
        f"{images} holds {h}x{w} images, but Fashion-MNIST's are {FASHION_MNIST_SIZE}x"
        f"{FASHION_MNIST_SIZE}: a model for Fashion-MNIST would silently get images of another "
        f"size. Point --data-dir (or {DATA_DIR_ENV}) at the real Fashion-MNIST files, or keep "
        f"other images as an ImageFolder tree (root/<class>/<image>), which is resized to the "
        f"model's input size.",
    )
    fail_if(
        y.ndim != 1 or len(y) != len(x),
        f"{labels} should hold {len(x)} labels to match {images}, found shape {y.shape}.",
    )
    fail_if(
        len(y) > 0 and int(y.max()) >= len(FASHION_MNIST_CLASSES),
        f"{labels} holds label {int(y.max())}, outside Fashion-MNIST's 0..9.",
    )
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def _load_files(files: tuple[Path, Path]) -> tuple[torch.Tensor, torch.Tensor]:
    stamp = tuple(v for f in files for v in (f.stat().st_size, f.stat().st_mtime_ns))
    return _load_idx_pair(str(files[0]), str(files[1]), stamp)


def load_fashion_mnist(
    split: Literal["train", "test"] = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole Fashion-MNIST split from its IDX files.

    Looks in ``data_dir``, else ``$WAE_DATA_DIR``, else the Debian location
    ``/usr/share/datasets/fashion-mnist`` and the download cache. If the files are missing and
    ``download`` is true, torchvision fetches them (the IDX files are still parsed here).

    Returns ``images`` uint8 ``(N, 28, 28)`` and ``labels`` int64 ``(N,)``; N is 60000 for
    train and 10000 for test. The tensors are shared between calls: do not modify them.
    """
    return _load_files(locate_fashion_mnist(split, data_dir, download))


def fashion_mnist_source(
    split: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[TensorImageSource, str]:
    """The Fashion-MNIST ``"train"`` or ``"test"`` split as a source, and its folder."""
    files = locate_fashion_mnist(split, data_dir, download)
    images, labels = _load_files(files)
    # (N, 28, 28) -> (N, 1, 28, 28) view.
    source = TensorImageSource(images.unsqueeze(1), labels, FASHION_MNIST_CLASSES)
    return source, str(files[0].parent)


def cifar_source(
    key: str, split: str, data_dir: Path | None, download: bool
) -> tuple[TensorImageSource, str]:
    """CIFAR-10/100 (``key`` ``"cifar10"``/``"cifar100"``) loaded by torchvision, and its root."""
    cls = tv_datasets.CIFAR10 if key == "cifar10" else tv_datasets.CIFAR100
    root = data_dir or DEFAULT_CACHE_DIR
    if root.name == cls.base_folder:  # accept the extracted folder itself
        root = root.parent
    try:
        ds = cls(str(root), train=split == "train", download=download)
    except (RuntimeError, OSError) as e:
        pretty = "CIFAR-10" if key == "cifar10" else "CIFAR-100"
        archive = cls.filename
        raise DataError(
            f"No usable {pretty} files ({cls.base_folder}/) in {root} ({e}). Download "
            f"{archive} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it there, "
            f"point --data-dir or {DATA_DIR_ENV} at the folder holding {cls.base_folder}/, or "
            f"set {DOWNLOAD_HINT}."
        ) from e
    # (N, H, W, C) numpy -> (N, C, H, W) view; no copy, items are tensor indexes like MNIST.
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
    return TensorImageSource(images, torch.as_tensor(ds.targets), ds.classes), str(root)
