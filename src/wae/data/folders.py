"""Image-folder sources: ``root/<class>/<image>`` trees (ImageNet, face identities, ...).

Split folders (``root/train``, ``root/val``, ...) are used when present; otherwise a seeded,
stratified 10% per class is held out as val/test. Unreadable images raise :class:`DataError`
naming the file; skipping them is the dataset's job (``LabeledDataset(skip_bad=True)``).

A tree may declare its images' own size in ``root/wae-folder.json`` (``{"image_size": S}``;
:func:`folder_image_size`): it is then used like CIFAR at that size (no resize, a zero-padded
random crop to train), not by the ImageNet rule. wae writes such trees from in-memory images
(:func:`save_image`, :func:`write_folder_info`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from .errors import SKIP_BAD_HINT, DataError, DataWarning, fail_if
from .splits import stratified_split
from .transforms import check_input_size

__all__ = [
    "FOLDER_INFO",
    "FOLDER_VAL_FRACTION",
    "ImageFolderSource",
    "check_image_root",
    "folder_image_size",
    "folder_source",
    "save_image",
    "write_folder_info",
]

logger = logging.getLogger(__name__)

# Folder names accepted for each split in an ImageFolder tree, in order of preference. Datasets
# with a single held-out set (ImageNet's "val" is the paper's test set) serve both val and test.
_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val", "valid", "validation", "test"),
    "test": ("test", "val", "valid", "validation"),
}
# Held-out fraction when an ImageFolder tree has no split folders at all.
FOLDER_VAL_FRACTION = 0.1
#: The file at a tree's root that declares its images' own size (see the module docstring).
FOLDER_INFO = "wae-folder.json"

# PIL modes holding one channel; anything else is treated as colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Integer modes wider than 8 bits (16-bit PNG/TIFF greys): PIL's convert() would clip them
# at 255, so they are scaled from the 16-bit range instead (see _to_8bit).
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# What PIL raises for a file that is not a (complete) image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class ImageFolderSource(tv_datasets.ImageFolder):
    """torchvision ImageFolder with clear errors, bad-file handling and colour-mode control.

    Items are ``(PIL image in mode "RGB" or "L", label)``. Images whose colour mode differs
    from ``in_chans`` (grey in a colour dataset or vice versa) are converted, with one
    :class:`DataWarning` per dataset. An unreadable or truncated image raises
    :class:`DataError` naming the file; skipping is done by :class:`LabeledDataset`.
    """

    def __init__(self, root: str | os.PathLike[str], in_chans: int = 3):
        root = Path(root).expanduser()
        check_image_root(root)
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
                out = _to_8bit(im).convert(self._mode)
        except _DECODE_ERRORS as e:
            raise DataError(
                f"Cannot read image {path}: {e}. The file is unreadable, truncated or not an "
                f"image. Delete or replace it, {SKIP_BAD_HINT}."
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
            except _DECODE_ERRORS as e:
                bad.append((int(i), path, str(e)))
        return bad


def _to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit grey image (mode "I;16*" or "I") as mode "L" scaled by 255 / 65535, so that
    its full range maps onto [0, 1] like an 8-bit image's; other modes unchanged."""
    if im.mode not in _WIDE_MODES:
        return im
    wide = np.clip(np.asarray(im, dtype=np.float64), 0, 65535)
    return Image.fromarray(np.rint(wide * (255 / 65535)).astype(np.uint8))  # 2-D uint8: mode "L"


def check_image_root(root: Path) -> None:
    """Raise :class:`DataError` unless ``root`` looks like ``root/<class>/<image>``."""
    layout = "root/<class>/<image> (optionally root/train/<class>/... and root/val/<class>/...)"
    fail_if(
        not root.exists(),
        f"Image folder {root} does not exist. Check the path; the expected layout is {layout}.",
    )
    fail_if(not root.is_dir(), f"{root} is not a directory; expected an image folder: {layout}.")
    entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    fail_if(
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


def folder_source(
    path: Path, split: str, in_chans: int, seed: int
) -> tuple[ImageFolderSource, torch.Tensor | None]:
    """ImageFolder source for ``split`` plus the indices it uses (None: all)."""
    check_image_root(path)
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


def folder_image_size(root: str | os.PathLike[str]) -> int | None:
    """The image size ``root/wae-folder.json`` declares (its ``"image_size"``), or None when
    the tree has no such file or it declares none (images of several sizes)."""
    path = Path(root).expanduser() / FOLDER_INFO
    if not path.is_file():
        return None
    try:
        size = json.loads(path.read_text()).get("image_size")
    except (OSError, ValueError, AttributeError) as e:
        raise DataError(
            f"Cannot read {path} ({e}). It must be a JSON object such as "
            f'{{"image_size": 32}}; fix or delete it (the images are then resized by the '
            f"ImageNet rule)."
        ) from None
    if size is not None:
        check_input_size(size, f"image_size in {path}")
    return size


def write_folder_info(root: str | os.PathLike[str], info: dict) -> None:
    """Write ``root/wae-folder.json`` (``info``: ``image_size`` and any facts worth keeping)."""
    (Path(root) / FOLDER_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def save_image(path: str | os.PathLike[str], image: torch.Tensor) -> None:
    """Save a uint8 image ``(C, H, W)``, C 1 (grey) or 3 (RGB), losslessly (PNG for a .png
    path), as :class:`ImageFolderSource` reads it back."""
    fail_if(
        image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3),
        f"save_image takes a uint8 (C, H, W) image with C 1 or 3, got {image.dtype} "
        f"{tuple(image.shape)}.",
    )
    pixels = image.detach().cpu()
    array = pixels[0] if pixels.shape[0] == 1 else pixels.permute(1, 2, 0)
    Image.fromarray(array.contiguous().numpy()).save(path)
