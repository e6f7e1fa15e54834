"""WAENet: a standard CNN on I_L, a quarter-width copy on I_H, and a fusion head.

Chen et al., "Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks",
AAAI 2018, https://arxiv.org/abs/1712.07493

    x -WAE-> I_L -FixedNorm-> low_net  (unchanged backbone)   -> f_L -> head_low -> s_L
          \\-> I_H -FixedNorm-> high_net (same net, 1/4 width) -> f_H
                                       concat(f_L, f_H) -> head_fused -> s_c
    prediction = (s_L + s_c) / 2;   training loss L_c = CE(s_L) + CE(s_c)

Heads: "vgg" is the release's (flattened pool5 -> fc 1024 -> fc 1024 -> classes for s_L;
flattened concatenated pool5 maps -> fc 2048 -> fc 2048 -> classes for s_c; ReLU and dropout
0.5 between); "linear" is global average pooling + one linear layer, for other backbones;
"classifier" is the backbone's own classifier behind its own adaptive pooling for s_L (a
torchvision VGG's or AlexNet's, so a trained one can be reused: WAENet.from_trained) and the
release's fused head for s_c.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..autoencoder import FixedNorm, ShapeError, WAEOutput, WaveletAutoEncoder, check_count
from ..encoders import DEFAULT_ENCODER
from ._cfgs import CFG_R50, CFG_S28, CFG_S32, CFG_S64, CFG_VGG16
from ._registry import register_model
from ._wae_parts import (
    adapt_backbone,
    check_backbone_args,
    check_classifier_arg,
    check_head_args,
    probe_features,
    size_pair,
)
from .heads import build_heads
from .payoff import check_payoff as run_payoff_check

__all__ = ["WAENet", "WAENetOutput", "classification_loss"]


class WAENetOutput(NamedTuple):
    """forward_train's result: both score vectors (N, K) and the WAE's parts."""

    s_low: torch.Tensor
    s_fused: torch.Tensor | None  # None for the I_L-alone ablation
    parts: WAEOutput
    f_low: torch.Tensor | None = None  # the I_L network's feature map (N, C_L, h, w)


# --- losses ---------------------------------------------------------------------------------


def classification_loss(
    out: WAENetOutput, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """L_c = CE(s_L) + CE(s_c) (the paper sums the two; s_c is absent for I_L alone)."""
    loss = F.cross_entropy(out.s_low, target, label_smoothing=label_smoothing)
    if out.s_fused is not None:
        loss = loss + F.cross_entropy(out.s_fused, target, label_smoothing=label_smoothing)
    return loss


# --- the model --------------------------------------------------------------------------------


class WAENet(nn.Module):
    """A classifier that runs its backbone on the WAE's half-resolution sub-images.

    Args:
        low_net: the standard network's feature extractor, I_L -> f_L (N, C_L, h, w).
        high_net: its quarter-width twin, I_H -> f_H (N, C_H, h, w); None for I_L alone.
        num_classes: K.
        decomposer: the module splitting x into (I_L, I_H): a WaveletAutoEncoder (default),
            one without decoder (Decomposition+CNN) or a wavelet transform (Wavelet+CNN).
            It must expose `low_chans`, `high_chans` and return (low, high) or a WAEOutput.
        in_chans: image channels.
        head: "linear", "vgg" (the release's MLP heads) or "classifier" (`classifier` for
            s_L, the release's fused MLP head for s_c).
        head_hidden: hidden widths of the "vgg" heads (s_L head, fused head).
        drop_rate: dropout in the heads (not in `classifier`, which keeps its own).
        input_size: the image size the "vgg" heads are built for (they flatten the maps).
        classifier: for head="classifier" only, a ClassifierHead (N, C_L, h, w) -> (N, K),
            e.g. the backbone's own pooling and classifier (from_backbone builds it).
    """

    # Display groups for cost breakdowns (wae.profile): label -> child-module names.
    cost_parts = {
        "encoder": ["wae", "norm_low", "norm_high"],
        "I_L network": ["low_net"],
        "I_H network": ["high_net"],
        "heads": ["head_low", "head_fused"],
    }

    def __init__(
        self,
        low_net: nn.Module,
        high_net: nn.Module | None,
        num_classes: int,
        *,
        decomposer: nn.Module | None = None,
        in_chans: int = 3,
        head: str = "linear",
        head_hidden: Sequence[int] = (1024, 2048),
        drop_rate: float | None = None,
        input_size: int | Sequence[int] = 224,
        classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_head_args(head, head_hidden, drop_rate, high_net is not None)
        check_classifier_arg(head, classifier)
        self.num_classes = check_count(num_classes, "num_classes", "classes")
        self.in_chans = check_count(in_chans, "in_chans", "image channels")
        self.input_size = size_pair(input_size)
        self.head_type = head
        self.wae = decomposer if decomposer is not None else WaveletAutoEncoder(in_chans)
        low_chans = getattr(self.wae, "low_chans", in_chans)
        high_chans = getattr(self.wae, "high_chans", in_chans)
        self.norm_low = FixedNorm(low_chans)
        self.norm_high = FixedNorm(high_chans) if high_net is not None else None
        self.low_net = low_net
        self.high_net = high_net

        # The feature shapes at the working resolution (I_L is half the input size).
        f_low, f_high = probe_features(
            (low_net, low_chans), (high_net, high_chans), self.input_size
        )
        self.train(self.training)  # every part in the model's mode, the given nets included
        self._set_feature_info(f_low, f_high)
        # The MLP heads flatten the maps: they take this size only (checked in forward).
        flat = head == "vgg" or (head == "classifier" and high_net is not None)
        self.head_maps = tuple(f_low.shape[-2:]) if flat else None
        self.head_low, self.head_fused = build_heads(
            head,
            num_classes,
            (self.low_features, self.high_features if f_high is not None else None),
            tuple(f_low.shape[-2:]),
            hidden=head_hidden,
            drop_rate=drop_rate,
            classifier=classifier,
        )

    def _set_feature_info(self, f_low: torch.Tensor, f_high: torch.Tensor | None) -> None:
        """Channel counts and timm-style `feature_info` of the branches' maps (N, C, h, w)."""
        self.low_features = f_low.shape[1]
        self.high_features = f_high.shape[1] if f_high is not None else 0
        self.num_features = self.low_features + self.high_features
        self.feature_info = [
            dict(num_chs=self.low_features, reduction=self._reduction(f_low), module="low_net")
        ]
        if f_high is not None:
            self.feature_info.append(
                dict(
                    num_chs=self.high_features, reduction=self._reduction(f_high), module="high_net"
                )
            )

    def _reduction(self, f: torch.Tensor) -> int:
        return round(self.input_size[0] / f.shape[-2])

    # -- construction from any backbone --------------------------------------------------------

    @classmethod
    def from_trained(
        cls, model: nn.Module, input_size: int | Sequence[int] = 224, **kwargs: Any
    ) -> WAENet:
        """A WAE student of the trained classifier `model`, which is left untouched: the I_L
        network is a copy of its feature extractor, s_L its classifier where the shapes allow
        (global pooling + linear; a VGG's or AlexNet's through its own adaptive pooling); the
        I_H branch and the fusion head are fresh; `kwargs` go to :meth:`from_backbone` (e.g.
        ``encoder="light"``). See :func:`wae.models.trained.from_trained`."""
        from .trained import from_trained

        return from_trained(model, input_size, **kwargs)

    @classmethod
    def from_backbone(
        cls,
        backbone: str | nn.Module,
        num_classes: int = 1000,
        *,
        in_chans: int = 3,
        input_size: int | Sequence[int] = 224,
        head: str = "auto",
        head_hidden: Sequence[int] = (1024, 2048),
        decomposer: str | nn.Module = "wae",
        encoder: str = DEFAULT_ENCODER,
        use_high: bool = True,
        high_net: nn.Module | None = None,
        high_divisor: int = 4,
        pretrained: bool = False,
        drop_rate: float | None = None,
        check_payoff: bool = True,
        **backbone_kwargs: Any,
    ) -> WAENet:
        """Wrap a CNN: a torchvision name ("vgg16"), "timm:<name>", "small_vgg", or a module.

        head: "vgg" (the release's MLP heads on the flattened maps, widths `head_hidden`),
        "linear" (global pooling + linear), "classifier" (s_L: the backbone's own adaptive
        pooling and classifier, for torchvision VGG / AlexNet; s_c: the release's fused head)
        or "auto" (vgg for VGG backbones, else linear).
        decomposer: "wae" (the paper), "encoder" (Decomposition+CNN: no decoder, no transform
        loss), "wavelet" (Wavelet+CNN: CDF 9/7 DWT) or a module. encoder: the learned
        decomposers' encoder by name (:data:`wae.encoders.ENCODERS`): "paper" (the default) or
        "light" (half resolution, ~50x fewer MACs). use_high=False drops the I_H branch (the
        I_L-alone ablation). high_net overrides the automatic quarter-width copy; high_divisor
        sets its width (the backbone's channels / high_divisor; the paper's 4, 2 for a wider
        I_H branch).
        check_payoff: count the MACs of the result and of the backbone at full resolution and
        warn (:class:`wae.PayoffWarning`) if WAE is not at least 1.5x cheaper (see
        :func:`wae.cost.check_payoff`; counted on the meta device, under a second).
        """
        check_backbone_args(
            head, head_hidden, drop_rate, use_high, input_size, decomposer, encoder, high_divisor
        )
        parts = adapt_backbone(
            backbone,
            num_classes,
            in_chans=in_chans,
            input_size=input_size,
            pretrained=pretrained,
            decomposer=decomposer,
            encoder=encoder,
            head=head,
            head_hidden=head_hidden,
            drop_rate=drop_rate,
            use_high=use_high,
            high_net=high_net,
            high_divisor=high_divisor,
            backbone_kwargs=backbone_kwargs,
        )
        net = cls(
            parts.features,
            parts.high_net,
            num_classes,
            decomposer=parts.decomposer,
            in_chans=in_chans,
            head=parts.head,
            head_hidden=head_hidden,
            drop_rate=drop_rate,
            input_size=input_size,
            classifier=parts.classifier,
        )
        if parts.spec is not None:  # built by name: checkpoints store this, not pickled code
            net.wae_spec = parts.spec
        if check_payoff:  # against the backbone's own full-resolution network
            run_payoff_check(net, parts.full, stacklevel=3)
        return net

    # -- forward paths -------------------------------------------------------------------------

    def decompose(self, x: torch.Tensor, decode: bool = False) -> WAEOutput:
        """x (N, C, H, W) -> WAEOutput(I_L, I_H, recon or None), before normalisation."""
        return self.run_decomposer(self.wae, x, decode)

    @staticmethod
    def run_decomposer(wae: nn.Module, x: torch.Tensor, decode: bool = False) -> WAEOutput:
        """`decompose` for a decomposer held elsewhere (e.g. a part of an inference graph):
        a WaveletAutoEncoder, or a module returning (I_L, I_H)."""
        if isinstance(wae, WaveletAutoEncoder):
            return wae(x, decode=decode)
        low, high = wae(x)
        return WAEOutput(low, high, None)

    def forward_branches(self, parts: WAEOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(I_L, I_H) -> (f_L (N, C_L, h, w), f_H (N, C_H, h, w) or None)."""
        f_low = self.low_net(self.norm_low(parts.low))
        f_high = None
        if self.high_net is not None:
            f_high = self.high_net(self.norm_high(parts.high))
        return f_low, f_high

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N, C, H, W) -> (f_L, f_H): the two branches' last feature maps."""
        return self.forward_branches(self.decompose(x))

    def forward_head(
        self, feats: tuple[torch.Tensor, torch.Tensor | None]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(f_L, f_H) -> (s_L, s_c), each (N, K); s_c is None without an I_H branch."""
        self.check_maps(feats[0])
        return self.run_heads(self.head_low, self.head_fused, feats)

    def check_maps(self, f_low: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """Refuse feature maps (from images x) of another size than MLP heads were built
        for: their first layer would fail with a bare matrix-shape error. Shapes only."""
        if self.head_maps is None or tuple(f_low.shape[-2:]) == self.head_maps:
            return
        h, w = self.input_size
        size = h if h == w else (h, w)
        got, fix = "these are", "<your images' size>"
        if x is not None:
            h, w = x.shape[-2:]
            got, fix = f"{h}x{w} images give", h if h == w else (h, w)
        raise ShapeError(
            f"This WAENet was built for input_size {size}: its '{self.head_type}' heads flatten "
            f"{self.head_maps[0]}x{self.head_maps[1]} feature maps, and {got} "
            f"{f_low.shape[-2]}x{f_low.shape[-1]} maps. Pass input_size={fix} when building "
            f"it (e.g. create_model(..., input_size={fix})), or resize the images to {size}."
        )

    @staticmethod
    def run_heads(
        head_low: nn.Module,
        head_fused: nn.Module | None,
        feats: tuple[torch.Tensor, torch.Tensor | None],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward_head` for heads held elsewhere: (f_L, f_H) -> (s_L, s_c or None)."""
        f_low, f_high = feats
        s_fused = head_fused(f_low, f_high) if head_fused is not None else None
        return head_low(f_low), s_fused

    def forward_train(self, x: torch.Tensor, decode: bool = True) -> WAENetOutput:
        """Everything the losses need: s_L, s_c and the WAE parts (with I' if decode)."""
        parts = self.decompose(x, decode=decode)
        feats = self.forward_branches(parts)
        self.check_maps(feats[0], x)
        s_low, s_fused = self.forward_head(feats)
        return WAENetOutput(s_low, s_fused, parts, feats[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) -> the prediction (s_L + s_c) / 2, (N, K)."""
        feats = self.forward_features(x)
        self.check_maps(feats[0], x)
        return self.combine_heads(*self.forward_head(feats))

    HEADS = ("average", "low", "fused")

    @staticmethod
    def combine_heads(
        s_low: torch.Tensor, s_fused: torch.Tensor | None, head: str = "average"
    ) -> torch.Tensor:
        """Scores (N, K) from the two heads: "average" (s_L + s_c) / 2, the model's prediction
        (s_L alone when there is no s_c); "low" s_L alone; "fused" s_c alone."""
        if head == "low":
            return s_low
        if head == "fused":
            if s_fused is None:
                raise ValueError("head='fused' needs a WAENet with an I_H branch (s_c).")
            return s_fused
        if head != "average":
            raise ValueError(f"head must be one of {WAENet.HEADS}, got {head!r}.")
        return s_low if s_fused is None else (s_low + s_fused) / 2

    # -- the fixed-statistics normalisation ----------------------------------------------------

    @torch.no_grad()
    def calibrate_norms(
        self, images: Iterable[torch.Tensor], max_batches: int | None = None
    ) -> None:
        """Estimate FixedNorm's statistics of I_L and I_H from image batches (N, C, H, W),
        e.g. the training set after stage 1. Items may be (images, labels) pairs."""
        device = next(self.parameters()).device
        norms = [n for n in (self.norm_low, self.norm_high) if n is not None]
        for n in norms:
            n.reset_stats()
        was_training = self.training
        self.eval()
        for i, batch in enumerate(images):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            parts = self.decompose(x.to(device))
            self.norm_low.update_stats(parts.low)
            if self.norm_high is not None:
                self.norm_high.update_stats(parts.high)
        self.train(was_training)


def _create_wae_net(backbone: str, cfg: dict[str, Any], **kwargs: Any) -> WAENet:
    """Builder defaults from the registered cfg, overridden by the caller's kwargs."""
    args = dict(
        num_classes=cfg["num_classes"], in_chans=cfg["in_chans"], input_size=cfg["input_size"]
    )
    args.update(cfg.get("model_args", {}))
    args.update(kwargs)
    # The registered models' pay-off is known (wae.cost.check_payoff checks one on demand).
    return WAENet.from_backbone(backbone, **args, check_payoff=False)


# --- registered builders ----------------------------------------------------------------------


@register_model(kind="wae", **CFG_VGG16)
def wae_vgg16(**kwargs: Any) -> WAENet:
    """WAE + VGG16 with the release's heads (the paper's main model)."""
    return _create_wae_net("vgg16", dict(CFG_VGG16, model_args={"head": "vgg"}), **kwargs)


@register_model(kind="wae", **CFG_R50)
def wae_resnet50(**kwargs: Any) -> WAENet:
    """WAE + ResNet-50 (paper, Table 5), linear heads."""
    return _create_wae_net("resnet50", CFG_R50, **kwargs)


@register_model(kind="wae", **CFG_S28)
def wae_small_vgg_28(**kwargs: Any) -> WAENet:
    """WAE + SmallVGG for 28x28 grey images (Fashion-MNIST)."""
    return _create_wae_net("small_vgg", CFG_S28, **kwargs)


@register_model(kind="wae", **CFG_S32)
def wae_small_vgg_32(**kwargs: Any) -> WAENet:
    """WAE + SmallVGG for 32x32 colour images (CIFAR)."""
    return _create_wae_net("small_vgg", CFG_S32, **kwargs)


@register_model(kind="wae", **CFG_S64)
def wae_small_vgg_64(**kwargs: Any) -> WAENet:
    """WAE + SmallVGG for 64x64 grey patches (skimage-textures)."""
    return _create_wae_net("small_vgg", CFG_S64, **kwargs)
