"""Image transforms (resize, crop, flip, channel conversion to float [0, 1]) and channel stats.

Augmentation follows the paper (resize 256, random crop 224, horizontal flip on ImageNet)
scaled to the input size, with a small-image rule for Fashion-MNIST and CIFAR at their native
resolution; see :class:`ImageTransform`. Mean/std are metadata for the model's own
normalisation and are never applied here.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from .errors import DataError, fail_if

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "ImageTransform",
    "build_transform",
    "check_input_size",
    "check_size_chans",
    "resize_for",
    "stats_for_chans",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The image sizes (pixels per side) any option accepts: smaller ones leave nothing for a
#: CNN's stride-2 stages and the WAE's half-size branches; larger ones only exhaust memory.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 8, 4096


def resize_for(input_size: int) -> int:
    """Short-side resize before cropping: 256 for 224, i.e. ``round(size * 256 / 224)``."""
    return round(input_size * 256 / 224)


def check_input_size(
    size: object, what: str = "input_size", *, hi: int = MAX_INPUT_SIZE
) -> tuple[int, int]:
    """``size`` (an int, or ``[height, width]``) as ``(height, width)``, each an integer from
    :data:`MIN_INPUT_SIZE` to ``hi``; else :class:`DataError` naming ``what`` and the range.

    The one check of an image size for every option that takes one (``--input-size``,
    ``data.input_size``, ``export_onnx(input_size=)``): 0 or a negative size is refused, never
    taken as "not given"."""
    sides = list(size) if isinstance(size, (list, tuple)) else [size]
    ints = 1 <= len(sides) <= 2 and all(
        isinstance(s, int) and not isinstance(s, bool) for s in sides
    )
    if ints and all(MIN_INPUT_SIZE <= s <= hi for s in sides):
        return int(sides[0]), int(sides[-1])
    if not ints:
        advice = "Pass one integer, or [height, width]."
    elif any(s < MIN_INPUT_SIZE for s in sides):
        advice = "Use a larger input size."
    else:
        advice = "Use a smaller input size."
    raise DataError(
        f"{what} must be an image size from {MIN_INPUT_SIZE} to {hi} pixels, got {size!r}. {advice}"
    )


def check_size_chans(input_size: int, in_chans: int) -> None:
    """Raise :class:`DataError` unless ``in_chans`` is 1 or 3 and ``input_size`` an integer
    image size (:func:`check_input_size`)."""
    fail_if(
        in_chans not in (1, 3),
        f"in_chans must be 1 (grey) or 3 (RGB), got {in_chans!r}. Fix --in-chans.",
    )
    fail_if(
        not isinstance(input_size, int) or isinstance(input_size, bool),
        f"input_size must be an integer, got {input_size!r}. Fix --input-size.",
    )
    check_input_size(input_size)


def stats_for_chans(
    mean: tuple[float, ...], std: tuple[float, ...], in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of a dataset converted to ``in_chans`` channels."""
    if len(mean) == in_chans:
        return mean, std
    if in_chans == 3:
        return mean * 3, std * 3
    # RGB -> grey with ITU-R 601 luma weights (as PIL/torchvision convert). The std is
    # approximate: it assumes fully correlated channels, close for natural images.
    w = (0.299, 0.587, 0.114)
    grey = tuple(sum(a * b for a, b in zip(w, v, strict=True)) for v in (mean, std))
    return grey[:1], grey[1:]


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
        check_size_chans(input_size, in_chans)
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
