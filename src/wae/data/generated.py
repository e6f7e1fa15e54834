"""Datasets generated from files that install with wae's dependencies, no download:
``skimage-textures`` (:mod:`.textures`) and ``fonts`` (:mod:`.fonts`).

One lookup by name (:func:`parse_generated`), their pixel statistics, and writing one as an
ImageFolder tree. A generated dataset's spec (:class:`GeneratedSpec`) knows its name, image
size and classes, and serves its splits as in-memory sources.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch

from .errors import fail_if
from .folders import save_image
from .fonts import FONTS_NAME, parse_fonts_name
from .sources import TensorImageSource
from .textures import TEXTURES_NAME, parse_textures_name

__all__ = [
    "GENERATED_NAMES",
    "GeneratedSpec",
    "generated_stats",
    "parse_generated",
    "write_image_folder",
]

#: The families' base names, as error messages and help texts list them.
GENERATED_NAMES = (TEXTURES_NAME, FONTS_NAME)


class GeneratedSpec(Protocol):
    """What :class:`~wae.data.textures.TextureSpec` and :class:`~wae.data.fonts.FontSpec`
    share: a hashable description of one generated dataset."""

    @property
    def name(self) -> str: ...

    @property
    def image_size(self) -> int: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def source(self, split: str) -> tuple[TensorImageSource, str]: ...

    def stems(self, split: str) -> list[str]: ...


def parse_generated(name: str) -> GeneratedSpec | None:
    """The spec a dataset name selects, or None when it names no generated dataset."""
    return parse_textures_name(name) or parse_fonts_name(name)


@lru_cache(maxsize=8)
def generated_stats(spec: GeneratedSpec) -> tuple[tuple[float], tuple[float]]:
    """``((mean,), (std,))`` of the train set on the [0, 1] scale, from exact integer counts."""
    source, _ = spec.source("train")
    counts = torch.bincount(source.images.flatten(), minlength=256)
    v = torch.arange(256, dtype=torch.int64)
    n, s, q = int(counts.sum()), int((counts * v).sum()), int((counts * v * v).sum())
    return (s / n / 255,), (math.sqrt(max(q / n - (s / n) ** 2, 0.0)) / 255,)


def write_image_folder(dataset_name: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write a generated dataset as ``out_dir/{train,test}/<class>/<stem>.png`` (8-bit grey
    PNGs, readable by ``build_dataset(out_dir, ...)``; stems name each item, e.g. its
    position or string); returns ``out_dir``."""
    spec = parse_generated(str(dataset_name))
    fail_if(
        spec is None,
        f"{dataset_name!r} is not a generated dataset name; use a {TEXTURES_NAME} or "
        f"{FONTS_NAME} name (e.g. {TEXTURES_NAME}-64, {FONTS_NAME}-64).",
    )
    out = Path(out_dir).expanduser()
    fail_if(
        out.exists() and (not out.is_dir() or any(out.iterdir())),
        f"{out} already exists and is not an empty directory; writing the dataset there could "
        f"mix it with other files. Pass a new or empty directory.",
    )
    for split in ("train", "test"):
        source, _ = spec.source(split)
        for c in spec.classes:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(spec.stems(split)):
            image, label = source[i]
            path = out / split / spec.classes[label] / f"{stem}.png"
            save_image(path, image)
    return out
