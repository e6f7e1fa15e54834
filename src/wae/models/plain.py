"""The plain baselines WAE is compared with: the backbone at full resolution, and the same
network on the image resized to half size (the paper's I_R, "VGG16 (112)").

The half-size resize is part of the model (anti-aliased bilinear), so the model takes the
same full-size input as WAENet and its cost is counted honestly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._backbone import build_classifier
from ._cfgs import CFG_R50, CFG_S28, CFG_S32, CFG_S64, CFG_VGG16
from ._registry import register_model

__all__ = ["PlainNet", "HalfResize"]


class HalfResize(nn.Module):
    """(N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)), anti-aliased bilinear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (math.ceil(x.shape[-2] / 2), math.ceil(x.shape[-1] / 2))
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            # PyTorch's CPU anti-aliased resize has no bf16/fp16 kernel: resize in float32
            # (one cheap pass over the input) and hand the network its own dtype back.
            y = F.interpolate(x.float(), size, mode="bilinear", antialias=True, align_corners=False)
            return y.to(x.dtype)
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class PlainNet(nn.Module):
    """A classifier, optionally preceded by a half-size resize: (N, C, H, W) -> (N, K).

    Args:
        net: the classifier (e.g. torchvision's VGG16, unchanged).
        half: resize the input to half size first (the I_R baseline).
    """

    cost_parts = {"resize": ["resize"], "network": ["net"]}

    def __init__(self, net: nn.Module, *, half: bool = False, in_chans: int = 3) -> None:
        super().__init__()
        self.half = half
        self.in_chans = in_chans
        self.resize = HalfResize() if half else nn.Identity()
        self.net = net

    @classmethod
    def from_backbone(
        cls,
        backbone: str | nn.Module,
        num_classes: int = 1000,
        *,
        half: bool = False,
        in_chans: int = 3,
        pretrained: bool = False,
        input_size: Any = None,  # accepted for symmetry with WAENet; plain nets need none
        **backbone_kwargs: Any,
    ) -> PlainNet:
        net = build_classifier(
            backbone,
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=pretrained,
            **backbone_kwargs,
        )
        model = cls(net, half=half, in_chans=in_chans)
        if isinstance(backbone, str):
            kwargs = dict(num_classes=num_classes, half=half, in_chans=in_chans, **backbone_kwargs)
            model.wae_spec = {"builder": "plain", "backbone": backbone, "kwargs": kwargs}
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.resize(x))


def _create_plain(backbone: str, cfg: dict[str, Any], half: bool, **kwargs: Any) -> PlainNet:
    args = dict(num_classes=cfg["num_classes"], in_chans=cfg["in_chans"])
    args.update(cfg.get("model_args", {}))
    args.update(kwargs)
    return PlainNet.from_backbone(backbone, half=half, **args)


@register_model(kind="plain", **CFG_VGG16)
def vgg16_full(**kwargs: Any) -> PlainNet:
    """torchvision VGG16 at full resolution (the reference)."""
    return _create_plain("vgg16", CFG_VGG16, False, **kwargs)


@register_model(kind="plain", **CFG_VGG16)
def vgg16_half(**kwargs: Any) -> PlainNet:
    """torchvision VGG16 on the half-size image (paper: VGG16 (112), I_R)."""
    return _create_plain("vgg16", CFG_VGG16, True, **kwargs)


@register_model(kind="plain", **CFG_R50)
def resnet50_full(**kwargs: Any) -> PlainNet:
    """torchvision ResNet-50 at full resolution."""
    return _create_plain("resnet50", CFG_R50, False, **kwargs)


@register_model(kind="plain", **CFG_R50)
def resnet50_half(**kwargs: Any) -> PlainNet:
    """torchvision ResNet-50 on the half-size image."""
    return _create_plain("resnet50", CFG_R50, True, **kwargs)


@register_model(kind="plain", **CFG_S28)
def small_vgg_28_full(**kwargs: Any) -> PlainNet:
    """SmallVGG on 28x28 grey images."""
    return _create_plain("small_vgg", CFG_S28, False, **kwargs)


@register_model(kind="plain", **CFG_S28)
def small_vgg_28_half(**kwargs: Any) -> PlainNet:
    """SmallVGG on 28x28 grey images resized to 14x14."""
    return _create_plain("small_vgg", CFG_S28, True, **kwargs)


@register_model(kind="plain", **CFG_S32)
def small_vgg_32_full(**kwargs: Any) -> PlainNet:
    """SmallVGG on 32x32 colour images."""
    return _create_plain("small_vgg", CFG_S32, False, **kwargs)


@register_model(kind="plain", **CFG_S32)
def small_vgg_32_half(**kwargs: Any) -> PlainNet:
    """SmallVGG on 32x32 colour images resized to 16x16."""
    return _create_plain("small_vgg", CFG_S32, True, **kwargs)


@register_model(kind="plain", **CFG_S64)
def small_vgg_64_full(**kwargs: Any) -> PlainNet:
    """SmallVGG on 64x64 grey patches (skimage-textures)."""
    return _create_plain("small_vgg", CFG_S64, False, **kwargs)


@register_model(kind="plain", **CFG_S64)
def small_vgg_64_half(**kwargs: Any) -> PlainNet:
    """SmallVGG on 64x64 grey patches resized to 32x32."""
    return _create_plain("small_vgg", CFG_S64, True, **kwargs)
