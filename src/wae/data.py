"""Data layer: datasets, transforms and loaders for training and evaluating WAE models.

One entry point, :func:`build_dataset`, covers three sources:

* ``"fashion-mnist"`` (the embedded default): read straight from its four IDX files with a small
  hand-written parser (:func:`read_idx`). Default location ``/usr/share/datasets/fashion-mnist``
  (Debian package ``dataset-fashion-mnist``), overridable by ``data_dir`` or ``$WAE_DATA_DIR``.
  A whole split is held as one uint8 tensor, so fetching an item is a tensor index, not a PIL
  round trip.
* ``"cifar10"`` / ``"cifar100"``: loaded (or downloaded) by torchvision, then held as a tensor
  the same way.
* any directory in ImageFolder layout (``root/<class>/<image>``, optionally with
  ``root/train`` and ``root/val``), e.g. ImageNet or face-identity folders.

Every item is ``(image, label)`` with ``image`` a float32 tensor of shape
``(in_chans, input_size, input_size)`` and values in ``[0, 1]``. The pixel scale matters: the
noise-robustness evaluation adds noise whose variance is defined on this [0, 1] scale.
Per-dataset mean/std are recorded as metadata (``.mean``, ``.std``) but are NOT applied here;
the model normalises its own input.

Augmentation follows the paper (resize 256, random crop 224, horizontal flip on ImageNet)
scaled to the input size; see :func:`build_transform` for the exact rule, including the
small-image rule used for Fashion-MNIST and CIFAR at their native resolution.

Problems with the data raise :class:`DataError` (a ``ValueError``) with a one-paragraph message
saying what is wrong, where, and what to do; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import os
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
from torchvision.transforms.v2 import functional as TF

from .errors import WAEError

__all__ = [
    "CIFAR10_CLASSES",
    "DATA_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_FASHION_MNIST_DIR",
    "DataError",
    "DataWarning",
    "DatasetInfo",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderSource",
    "ImageTransform",
    "LabeledDataset",
    "TensorImageSource",
    "balanced_subset",
    "build_dataset",
    "build_loader",
    "build_transform",
    "load_fashion_mnist",
    "resize_for",
    "read_idx",
    "stratified_split",
    "train_val_split",
    "write_idx",
]

logger = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

DATA_DIR_ENV = "WAE_DATA_DIR"
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Where downloads go when no data_dir was given (the Debian location is read-only).
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wae" / "datasets"
)

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
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Folder names accepted for each split in an ImageFolder tree, in order of preference. Datasets
# with a single held-out set (ImageNet's "val" is the paper's test set) serve both val and test.
_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val", "valid", "validation", "test"),
    "test": ("test", "val", "valid", "validation"),
}
# Held-out fraction when an ImageFolder tree has no split folders at all.
FOLDER_VAL_FRACTION = 0.1

# PIL modes holding one channel; anything else is treated as colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class DataError(WAEError, ValueError):
    """A dataset is missing, malformed or misconfigured.

    The message is one paragraph: what was wrong, where, and what to do about it.
    """


class DataWarning(UserWarning):
    """Something about the data was changed on the fly (colour conversion, skipped files)."""


def _fail_if(cond: bool, msg: str) -> None:
    if cond:
        raise DataError(msg)


# --------------------------------------------------------------------------------------------
# IDX files (the MNIST/Fashion-MNIST container format)
# --------------------------------------------------------------------------------------------

# IDX header: 2 zero bytes, a dtype code, the number of dims, then one big-endian uint32 per dim.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip'd; detected from the content, not the name).

    Returns a writable, native-byte-order array with the shape stored in the header, e.g.
    ``(N, 28, 28)`` uint8 for images or ``(N,)`` uint8 for labels. Raises :class:`DataError`
    naming the file if it is missing, not IDX, or truncated/too long.
    """
    path = Path(path)
    redo = "Delete it and reinstall or re-download the dataset."
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist. Check the dataset folder.") from None
    except (EOFError, zlib.error, OSError) as e:  # truncated or corrupt gzip stream, unreadable
        raise DataError(
            f"Cannot read IDX file {path}: {e}. It is probably truncated or corrupt. {redo}"
        ) from e
    _fail_if(
        len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0,
        f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty file'}). {redo}",
    )
    ndim, header = raw[3], 4 + 4 * raw[3]
    _fail_if(len(raw) < header, f"IDX file {path} is truncated inside its header. {redo}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    _fail_if(
        len(raw) != expected,
        f"IDX file {path} is {'truncated' if len(raw) < expected else 'longer than its header'}: "
        f"the header declares shape {tuple(dims)} ({expected} bytes) but the file holds "
        f"{len(raw)} bytes (after decompression). {redo}",
    )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # copy: writable and native-endian


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip'd if ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder(">"): k for k, v in _IDX_DTYPES.items()}
    big = array.dtype.newbyteorder(">")
    if big not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    data = bytes([0, 0, codes[big], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(big).tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------


def _resolve_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Explicit argument first, then $WAE_DATA_DIR; None when neither is set."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def _find_idx(folder: Path, stem: str) -> Path | None:
    # Both the official "-idx3-ubyte" names and the ".idx3-ubyte" variant some mirrors use.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in (".gz", ""):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def _fashion_mnist_files(root: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    # root itself, a dataset-named child, or torchvision's download layout under root.
    for folder in (root, root / "fashion-mnist", root / "fashion_mnist", root / "FashionMNIST/raw"):
        images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            return images, labels
    return None


@lru_cache(maxsize=4)
def _load_idx_pair(images: str, labels: str, stamp: tuple[int, ...]) -> tuple[Any, Any]:
    # Cached on path + size + mtime so building train and eval views of a split reads it once.
    x, y = read_idx(images), read_idx(labels)
    _fail_if(
        x.ndim != 3 or x.dtype != np.uint8,
        f"{images} should hold uint8 images of shape (N, H, W), found {x.dtype} {x.shape}.",
    )
    _fail_if(
        y.ndim != 1 or len(y) != len(x),
        f"{labels} should hold {len(x)} labels to match {images}, found shape {y.shape}.",
    )
    _fail_if(
        len(y) > 0 and int(y.max()) >= len(FASHION_MNIST_CLASSES),
        f"{labels} holds label {int(y.max())}, outside Fashion-MNIST's 0..9.",
    )
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


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
    files = _locate_fashion_mnist(split, data_dir, download)
    stamp = tuple(v for f in files for v in (f.stat().st_size, f.stat().st_mtime_ns))
    return _load_idx_pair(str(files[0]), str(files[1]), stamp)


def _locate_fashion_mnist(
    split: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of ``split``, downloading them if allowed."""
    _fail_if(split not in ("train", "test"), f"Fashion-MNIST has splits train/test, not {split!r}.")
    explicit = _resolve_dir(data_dir)
    roots = [explicit] if explicit else [DEFAULT_FASHION_MNIST_DIR, DEFAULT_CACHE_DIR]
    files = next((f for r in roots if (f := _fashion_mnist_files(r, split))), None)
    if files is None and download:
        target = explicit or DEFAULT_CACHE_DIR
        logger.info("Downloading Fashion-MNIST into %s", target)
        try:
            tv_datasets.FashionMNIST(str(target), train=split == "train", download=True)
        except (OSError, RuntimeError) as e:
            raise DataError(
                f"Downloading Fashion-MNIST into {target} failed: {e}. Check the network and "
                f"that the folder is writable, or install Debian's dataset-fashion-mnist "
                f"(apt-get install dataset-fashion-mnist) and drop --download."
            ) from e
        files = _fashion_mnist_files(target, split)
    if files is None:
        where = " or ".join(str(r) for r in roots)
        prefix = "train" if split == "train" else "t10k"
        raise DataError(
            f"No Fashion-MNIST {split} files ({prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz]) in {where}. Install Debian's "
            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist), point --data-dir "
            f"or {DATA_DIR_ENV} at a folder with the four IDX files, or pass --download when "
            f"online."
        )
    return files


# --------------------------------------------------------------------------------------------
# Sources: raw (image, label) access, before transforms
# --------------------------------------------------------------------------------------------


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


class ImageFolderSource(tv_datasets.ImageFolder):
    """torchvision ImageFolder with clear errors, bad-file handling and colour-mode control.

    Items are ``(PIL image in mode "RGB" or "L", label)``. Images whose colour mode differs
    from ``in_chans`` (grey in a colour dataset or vice versa) are converted, with one
    :class:`DataWarning` per dataset. An unreadable or truncated image raises
    :class:`DataError` naming the file; skipping is done by :class:`LabeledDataset`.
    """

    def __init__(self, root: str | os.PathLike[str], in_chans: int = 3):
        root = Path(root).expanduser()
        _check_image_root(root)
        try:
            super().__init__(str(root))
        except FileNotFoundError as e:
            raise DataError(
                f"Image folder {root} has class folders but no usable images ({e}). Add images "
                f"to every class folder or remove the empty ones."
            ) from e
        self.in_chans = in_chans
        self._mode = "RGB" if in_chans == 3 else "L"
        self._warned_colour = False

    def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
        # Skip hidden folders (.ipynb_checkpoints, .DS_Store dirs...) that would become classes.
        classes = sorted(
            e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
        )
        return classes, {c: i for i, c in enumerate(classes)}

    def load(self, path: str) -> Image.Image:
        """Decode ``path`` fully and convert it to the model's colour mode."""
        try:
            with Image.open(path) as im:
                im.load()  # full decode: Image.open only reads the header, missing truncation
                src_mode = im.mode
                out = im.convert(self._mode)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
            raise DataError(
                f"Cannot read image {path}: {e}. The file is unreadable, truncated or not an "
                f"image. Delete or replace it, or pass skip_bad=True (--skip-bad) to skip bad "
                f"images with a warning."
            ) from e
        src_grey = src_mode in _GREY_MODES
        if src_grey != (self.in_chans == 1) and not self._warned_colour:
            self._warned_colour = True
            kind = "greyscale" if src_grey else "colour"
            warnings.warn(
                f"{path} is {kind} (mode {src_mode}) but the model expects in_chans="
                f"{self.in_chans}; converting such images in {self.root} to {self._mode} "
                f"(said once per dataset).",
                DataWarning,
                stacklevel=2,
            )
        return out

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, target = self.samples[index]
        return self.load(path), target

    def verify(self, indices: Sequence[int] | None = None) -> list[tuple[int, str, str]]:
        """Decode every image (or those at ``indices``); return ``(index, path, reason)`` of
        the bad ones. Slow on big trees: it reads every file."""
        bad = []
        for i in range(len(self.samples)) if indices is None else indices:
            path = self.samples[i][0]
            try:
                with Image.open(path) as im:
                    im.load()
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
                bad.append((int(i), path, str(e)))
        return bad


def _check_image_root(root: Path) -> None:
    layout = "root/<class>/<image> (optionally root/train/<class>/... and root/val/<class>/...)"
    _fail_if(
        not root.exists(),
        f"Image folder {root} does not exist. Check the path; the expected layout is {layout}.",
    )
    _fail_if(not root.is_dir(), f"{root} is not a directory; expected an image folder: {layout}.")
    entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    _fail_if(
        not entries,
        f"Image folder {root} is empty. Put one sub-folder per class in it, each holding that "
        f"class's images: {layout}.",
    )
    if not any(e.is_dir() for e in entries):
        n = sum(has_file_allowed_extension(e.name, IMG_EXTENSIONS) for e in entries)
        found = f"holds {n} images directly but" if n else "has"
        raise DataError(
            f"Image folder {root} {found} no class sub-folders. Images must sit in one "
            f"sub-folder per class: {layout}."
        )


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------


def resize_for(input_size: int) -> int:
    """Short-side resize before cropping: 256 for 224, i.e. ``round(size * 256 / 224)``."""
    return round(input_size * 256 / 224)


class ImageTransform:
    """Image (PIL, or uint8 tensor ``(C, H, W)``) -> float32 ``(in_chans, size, size)`` in [0, 1].

    The rule:

    * ``input_size == native_size`` (small-image datasets used at their own resolution:
      Fashion-MNIST 28, CIFAR 32): no resize. Train = random crop ``input_size`` with zero
      padding ``crop_padding`` (2 for Fashion-MNIST, 4 for CIFAR) + horizontal flip;
      eval = the image unchanged.
    * otherwise (the paper's ImageNet recipe, 256 -> 224, scaled to the input size): resize
      the short side to ``round(input_size * 256 / 224)``; train = random crop ``input_size``
      + horizontal flip; eval = center crop ``input_size``.

    Channels are then converted to ``in_chans`` (grey<->RGB; a no-op when they match). No
    mean/std normalisation: the model normalises its own input.

    It calls torchvision's v2 kernels directly rather than composing v2 transform objects:
    their per-call dispatch (~40 us each) would dominate the cost of a 28x28 item. Randomness
    comes from torch's global RNG, like torchvision's (see :func:`build_loader` for seeding).
    """

    def __init__(
        self,
        input_size: int,
        train: bool,
        *,
        in_chans: int = 3,
        native_size: int | None = None,
        crop_padding: int = 0,
    ):
        _check_size_chans(input_size, in_chans)
        self.input_size, self.train, self.in_chans = input_size, train, in_chans
        native = native_size is not None and input_size == native_size
        self.resize = None if native else resize_for(input_size)
        self.padding = crop_padding if native and train else 0

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        if isinstance(image, Image.Image):
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB" if self.in_chans == 3 else "L")
            x = TF.pil_to_tensor(image)
        else:
            x = image.as_subclass(torch.Tensor)  # plain tensor, also for tv_tensors.Image input
        size = self.input_size
        if self.resize is not None:
            x = TF.resize_image(x, [self.resize], antialias=True)  # short side, keeps aspect
        if self.train:
            if self.padding:
                x = TF.pad_image(x, [self.padding])  # zero fill
            top = int(torch.randint(x.shape[-2] - size + 1, ()))
            left = int(torch.randint(x.shape[-1] - size + 1, ()))
            x = TF.crop_image(x, top, left, size, size)
            if torch.rand(()) < 0.5:
                x = TF.horizontal_flip_image(x)
        elif self.resize is not None:
            x = TF.center_crop_image(x, [size, size])
        if x.shape[-3] != self.in_chans:
            x = x.expand(3, -1, -1) if self.in_chans == 3 else TF.rgb_to_grayscale_image(x)
        # Crops/resizes ran on uint8 (cheaper); the [0, 1] float conversion comes last.
        return TF.to_dtype_image(x, torch.float32, scale=True)

    def __repr__(self) -> str:
        steps = [f"Resize({self.resize})"] if self.resize else []
        if self.train:
            pad = f", padding={self.padding}" if self.padding else ""
            steps += [f"RandomCrop({self.input_size}{pad})", "RandomHorizontalFlip()"]
        elif self.resize:
            steps.append(f"CenterCrop({self.input_size})")
        steps += [f"ToChannels({self.in_chans})", "ToFloat01()"]
        return f"ImageTransform({', '.join(steps)})"


def build_transform(
    input_size: int,
    train: bool,
    *,
    in_chans: int = 3,
    native_size: int | None = None,
    crop_padding: int = 0,
) -> ImageTransform:
    """The train or eval transform for ``input_size``; see :class:`ImageTransform` for the rule."""
    return ImageTransform(
        input_size, train, in_chans=in_chans, native_size=native_size, crop_padding=crop_padding
    )


def _check_size_chans(input_size: int, in_chans: int) -> None:
    _fail_if(
        in_chans not in (1, 3),
        f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans!r}. Fix --in-chans.",
    )
    _fail_if(
        not isinstance(input_size, int) or input_size < 8,
        f"input_size must be an integer >= 8, got {input_size!r}. Fix --input-size.",
    )


# --------------------------------------------------------------------------------------------
# Index helpers: balanced subsets and stratified splits
# --------------------------------------------------------------------------------------------


def _class_ranks(targets: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle, then rank each item within its class. Returns ``(perm, rank)``, both ``(N,)``:
    ``perm[k]`` is an original index and ``rank[k]`` its position among its class."""
    perm = torch.randperm(len(targets), generator=g)
    t = targets[perm]
    order = torch.sort(t, stable=True).indices
    counts = torch.bincount(t)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(perm)
    rank[order] = torch.arange(len(t)) - starts[t[order]]
    return perm, rank


def balanced_subset(targets: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Seeded, class-balanced choice of ``n`` indices into ``targets`` (int64 ``(N,)``).

    Classes are taken round-robin (in a seeded class order) from seeded per-class shuffles, so
    class counts differ by at most one unless a class runs out. Returns sorted int64 ``(n,)``.
    """
    _fail_if(n < 1, f"subset must be a positive number of images, got {n}.")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    if n >= len(targets):
        return torch.arange(len(targets))
    g = torch.Generator().manual_seed(seed)
    perm, rank = _class_ranks(targets, g)
    num_classes = int(targets.max()) + 1
    class_order = torch.randperm(num_classes, generator=g)
    key = rank * num_classes + class_order[targets[perm]]  # unique per item
    return perm[torch.argsort(key)[:n]].sort().values


def stratified_split(
    targets: torch.Tensor, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded per-class split of indices into ``(train, val)``, sorted int64 tensors.

    Each class gives ``round(count * val_fraction)`` items to val, and at least one if it has
    two or more (small classes, e.g. face identities, would otherwise never be validated).
    """
    _fail_if(not 0 < val_fraction < 1, f"val_fraction must be in (0, 1), got {val_fraction}.")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    perm, rank = _class_ranks(targets, torch.Generator().manual_seed(seed))
    counts = torch.bincount(targets)
    n_val = torch.round(counts.double() * val_fraction).long()
    n_val = torch.where(counts >= 2, n_val.clamp(min=1), n_val)
    is_val = rank < n_val[targets[perm]]
    _fail_if(
        not is_val.any(),
        f"Too few images ({len(targets)}) to hold out {val_fraction:.0%} per class for "
        f"validation. Add images or provide a separate val folder.",
    )
    return perm[~is_val].sort().values, perm[is_val].sort().values


# --------------------------------------------------------------------------------------------
# The dataset returned by build_dataset
# --------------------------------------------------------------------------------------------


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
                f"replace them, or pass skip_bad=True (--skip-bad) to skip them with a warning."
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


def train_val_split(
    dataset: LabeledDataset, val_fraction: float = 0.1, seed: int = 0
) -> tuple[LabeledDataset, LabeledDataset]:
    """Seeded, stratified split of ``dataset`` into (train, val).

    Train keeps augmentation; val gets the eval transform.
    """
    tr, va = stratified_split(dataset.targets, val_fraction, seed)
    return dataset.with_indices(tr, True, "train"), dataset.with_indices(va, False, "val")


# --------------------------------------------------------------------------------------------
# build_dataset
# --------------------------------------------------------------------------------------------

_NAMES = {
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
}
# name -> (mean, std, native size, crop padding, native channels)
_SPECS: dict[str, tuple[tuple[float, ...], tuple[float, ...], int | None, int, int]] = {
    "fashion-mnist": ((0.2860,), (0.3530,), 28, 2, 1),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32, 4, 3),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32, 4, 3),
    "folder": (IMAGENET_MEAN, IMAGENET_STD, None, 0, 3),
}


def _stats_for_chans(
    mean: tuple[float, ...], std: tuple[float, ...], in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if len(mean) == in_chans:
        return mean, std
    if in_chans == 3:
        return mean * 3, std * 3
    # RGB -> grey with ITU-R 601 luma weights (as PIL/torchvision convert). The std is
    # approximate: it assumes fully correlated channels, close for natural images.
    w = (0.299, 0.587, 0.114)
    grey = tuple(sum(a * b for a, b in zip(w, v, strict=True)) for v in (mean, std))
    return grey[:1], grey[1:]


def _cifar_source(key: str, split: str, data_dir: Path | None, download: bool):
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
            f"pass --download when online."
        ) from e
    # (N, H, W, C) numpy -> (N, C, H, W) view; no copy, items are tensor indexes like MNIST.
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
    return TensorImageSource(images, torch.as_tensor(ds.targets), ds.classes), str(root)


def _folder_source(path: Path, split: str, in_chans: int, seed: int):
    """ImageFolder source for ``split`` plus the indices it uses (None: all)."""
    _check_image_root(path)
    subdirs = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    split_dirs = sorted(set(subdirs) & {n for names in _SPLIT_DIRS.values() for n in names})
    if split_dirs:
        name = next((n for n in _SPLIT_DIRS[split] if n in subdirs), None)
        if name is None:
            raise DataError(
                f"{path} has split folders ({', '.join(split_dirs)}) but none for split "
                f"{split!r} (looked for {', '.join(_SPLIT_DIRS[split])}). Add "
                f"{path}/{split}/<class>/<image> or pick another split."
            )
        if name != split:
            logger.info("Using %s as the %s split", subdirs[name], split)
        return ImageFolderSource(subdirs[name], in_chans), None
    # No split folders (e.g. face-identity folders): hold out a seeded, stratified fraction.
    source = ImageFolderSource(path, in_chans)
    train_idx, val_idx = stratified_split(source.targets, FOLDER_VAL_FRACTION, seed)
    logger.info(
        "%s has no train/val folders; using a seeded %.0f%% per-class hold-out as val/test",
        path,
        100 * FOLDER_VAL_FRACTION,
    )
    return source, train_idx if split == "train" else val_idx


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
    """Build a dataset by name (``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``) or path.

    A path is an ImageFolder tree: ``root/<class>/<image>``, or with split folders
    ``root/{train,val[,test]}/<class>/<image>``. Splits: Fashion-MNIST and CIFAR have an
    official train and test set, and ``"val"`` means the test set (as ImageNet's val set is the
    paper's test set); use :func:`train_val_split` to hold out part of train instead. A tree
    with only one held-out folder serves it for both val and test; a tree without split folders
    holds out a seeded 10% per class as val/test.

    Defaults: ``input_size`` is 28 (Fashion-MNIST), 32 (CIFAR) or 224 (folders); ``in_chans`` is
    the dataset's own (1 for Fashion-MNIST, 3 otherwise); a mismatch converts images with a
    :class:`DataWarning`. Augmentation is used for ``split="train"`` when ``train_transforms``.
    ``subset`` keeps a seeded, class-balanced choice of that many images.

    Returns a :class:`LabeledDataset` with ``.classes``, ``.num_classes``, ``.in_chans``,
    ``.input_size``, ``.mean``, ``.std`` (metadata only, not applied) and ``.info``; items are
    ``(float32 (in_chans, input_size, input_size) in [0, 1], int label)``.
    """
    _fail_if(
        split not in ("train", "val", "test"),
        f"split must be 'train', 'val' or 'test', got {split!r}.",
    )
    _fail_if(
        in_chans not in (None, 1, 3),
        f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans!r}. Fix --in-chans.",
    )
    raw_name = str(name_or_path)
    key = _NAMES.get(raw_name.lower().replace("-", "").replace("_", ""))
    resolved_dir = _resolve_dir(data_dir)
    indices: torch.Tensor | None = None
    if key == "fashion-mnist":
        fm_split = "train" if split == "train" else "test"
        images, labels = load_fashion_mnist(fm_split, data_dir, download)
        # (N, 28, 28) -> (N, 1, 28, 28) view.
        source = TensorImageSource(images.unsqueeze(1), labels, FASHION_MNIST_CLASSES)
        root = str(_locate_fashion_mnist(fm_split, data_dir, False)[0].parent)
    elif key in ("cifar10", "cifar100"):
        source, root = _cifar_source(key, split, resolved_dir, download)
    else:
        path = Path(raw_name).expanduser()
        if not path.exists() and os.sep not in raw_name and "/" not in raw_name:
            raise DataError(
                f"Unknown dataset {raw_name!r}: not one of fashion-mnist, cifar10, cifar100, "
                f"and no directory of that name exists. Pass a known name or the path of an "
                f"ImageFolder tree (root/<class>/<image>)."
            )
        key, root = "folder", str(path)
        source, indices = _folder_source(path, split, in_chans or 3, seed)

    mean, std, native_size, crop_padding, native_chans = _SPECS[key]
    in_chans = native_chans if in_chans is None else in_chans
    input_size = (native_size or 224) if input_size is None else input_size
    _check_size_chans(input_size, in_chans)
    if key != "folder" and in_chans != native_chans:
        # Folders convert per image (they may mix modes) and warn there; here all images differ.
        how = "grey to RGB" if in_chans == 3 else "RGB to grey"
        warnings.warn(
            f"{raw_name} images have {native_chans} channel(s) but the model expects in_chans="
            f"{in_chans}; converting every image ({how}).",
            DataWarning,
            stacklevel=2,
        )
    mean, std = _stats_for_chans(mean, std, in_chans)
    info = DatasetInfo(
        name=key if key != "folder" else Path(root).name,
        split=split,
        root=root,
        classes=tuple(source.classes),
        in_chans=in_chans,
        input_size=input_size,
        mean=mean,
        std=std,
        native_size=native_size,
        crop_padding=crop_padding,
    )
    if subset is not None:
        targets = torch.as_tensor(source.targets, dtype=torch.int64)
        base = torch.arange(len(targets)) if indices is None else indices
        indices = base[balanced_subset(targets[base], subset, seed)]
    transform = _transform_for(info, train=split == "train" and train_transforms)
    return LabeledDataset(source, info, transform, indices, skip_bad)


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; extend that to numpy/random so
    # user transforms drawing from them are reproducible too.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _SeededLoader(DataLoader):
    """DataLoader whose main-process loading (``num_workers=0``) is reproducible too.

    Workers are seeded from ``generator`` by DataLoader itself; without workers, augmentation
    would draw from torch's global RNG and depend on whatever ran before. Here each batch is
    fetched under a private RNG stream seeded from ``generator``, and the global state is
    restored around it.
    """

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        if self.num_workers > 0 or self.generator is None:
            return it
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        return self._private_rng(it, torch.Generator().manual_seed(seed).get_state())

    @staticmethod
    def _private_rng(it: Iterator[Any], state: torch.Tensor) -> Iterator[Any]:
        while True:
            outer = torch.get_rng_state()
            torch.set_rng_state(state)
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                state = torch.get_rng_state()
                torch.set_rng_state(outer)
            yield batch


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    distributed: bool = False,
    *,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A reproducible DataLoader: order and augmentation depend only on ``seed`` (and epoch).

    Batches are ``(images (B, C, H, W) float32, labels (B,) int64)`` on the CPU; moving them
    to a device is the caller's job. With ``distributed``, a :class:`DistributedSampler`
    (seeded with ``seed``) shards the data over the ranks of the initialised process group;
    the caller must call ``loader.sampler.set_epoch(epoch)`` each epoch.
    """
    _fail_if(batch_size < 1, f"batch_size must be >= 1, got {batch_size}.")
    _fail_if(num_workers < 0, f"num_workers must be >= 0, got {num_workers}.")
    sampler = None
    rank = 0
    if distributed:
        dist = torch.distributed
        _fail_if(
            not (dist.is_available() and dist.is_initialized()),
            "distributed=True but torch.distributed is not initialised. Launch with torchrun "
            "(or call torch.distributed.init_process_group) before building the loader, or "
            "drop --distributed.",
        )
        rank = dist.get_rank()
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False  # the sampler shuffles
    # Distinct augmentation streams per rank; the sampler keeps the shard order in sync.
    generator = torch.Generator().manual_seed(seed + rank)
    return _SeededLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
