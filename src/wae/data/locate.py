"""Where datasets live: the data-directory setting and the Fashion-MNIST IDX files.

Lookup order: an explicit ``data_dir``, else ``$WAE_DATA_DIR``, else the Debian location
``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``) and the download cache.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torchvision import datasets as tv_datasets

from .errors import DOWNLOAD_HINT, DataError, fail_if

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_FASHION_MNIST_DIR",
    "locate_fashion_mnist",
    "resolve_dir",
]

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "WAE_DATA_DIR"
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Where downloads go when no data_dir was given (the Debian location is read-only).
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wae" / "datasets"
)


def resolve_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
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


def locate_fashion_mnist(
    split: str, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of ``split``, downloading them if allowed."""
    fail_if(split not in ("train", "test"), f"Fashion-MNIST has splits train/test, not {split!r}.")
    explicit = resolve_dir(data_dir)
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
                f"(apt-get install dataset-fashion-mnist) and turn data.download off."
            ) from e
        files = _fashion_mnist_files(target, split)
    if files is None:
        where = " or ".join(str(r) for r in roots)
        prefix = "train" if split == "train" else "t10k"
        raise DataError(
            f"No Fashion-MNIST {split} files ({prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz]) in {where}. Install Debian's "
            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist), point --data-dir "
            f"or {DATA_DIR_ENV} at a folder with the four IDX files, or set {DOWNLOAD_HINT}."
        )
    return files
