"""Small VGG-style CNNs for 28x28 grey and 32x32 colour images.

Not from the paper: stand-ins for VGG16 on small images (Fashion-MNIST, CIFAR), so the
method can be trained and measured on a 2-core CPU. Stages of [3x3 conv, BN, ReLU] x depth,
then 2x2 max-pool; channels width, 2*width, 4*width, ... A `width` setting makes the
quarter-width I_H branch native (width // 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..autoencoder import ShapeError, check_count

__all__ = ["SmallVGG", "small_vgg"]


def _stage(in_ch: int, out_ch: int, depth: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [
            nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 7x7 -> 4x4, odd sizes keep edges
    return layers


class SmallVGG(nn.Module):
    """VGG-style classifier: (N, in_chans, H, W) -> (N, num_classes).

    Args:
        num_classes: classifier outputs (0: no classifier, forward returns pooled features).
        in_chans: image channels.
        width: channels of the first stage; stage i has width * 2**i.
        depths: convs per stage.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        width: int = 32,
        depths: Sequence[int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        if num_classes != 0:  # 0: no classifier (the feature extractor alone)
            check_count(num_classes, "num_classes", "classes")
        self.in_chans = check_count(in_chans, "in_chans", "image channels")
        self.width = check_count(width, "width", "channels in its first stage")
        if not isinstance(depths, (list, tuple)) or not depths:
            raise ShapeError(f"depths must list the convs per stage, got {depths!r}.")
        self.depths = tuple(check_count(d, "depths", "convolutions in a stage") for d in depths)
        layers: list[nn.Module] = []
        ch = in_chans
        for i, d in enumerate(self.depths):
            layers += _stage(ch, width * 2**i, d)
            ch = width * 2**i
        self.features = nn.Sequential(*layers)
        self.num_features = ch
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H / 2**stages, W / 2**stages)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def slim_copy(self, divisor: int = 4, in_chans: int | None = None) -> SmallVGG:
        """The same architecture with every conv's channel count divided by `divisor`."""
        if self.width % divisor:
            raise ShapeError(
                f"width {self.width} is not divisible by {divisor}, so the quarter-width I_H "
                f"branch cannot have 1/{divisor} of its channels: use a width that is a "
                f"multiple of {divisor} (e.g. {max(divisor, self.width // divisor * divisor)})."
            )
        return SmallVGG(0, in_chans or self.in_chans, self.width // divisor, self.depths)


def small_vgg(
    num_classes: int = 10, in_chans: int = 1, width: int = 32, depths: Sequence[int] = (2, 2, 2)
) -> SmallVGG:
    """Build a SmallVGG (see the class)."""
    return SmallVGG(num_classes, in_chans, width, depths)
