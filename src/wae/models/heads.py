"""WAENet's heads: what turns the branches' feature maps into class scores.

"linear": global average pooling + one linear layer; "vgg": the release's MLP on the flattened
maps; "classifier": a backbone's own adaptive pooling and classifier (s_L), e.g. a trained
torchvision VGG's, reused by WAENet.from_trained.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ._backbone import BackboneError, classifier_parts

__all__ = ["ClassifierHead", "LinearHead", "MLPHead", "build_heads", "own_classifier"]


class LinearHead(nn.Module):
    """Global average pooling of each feature map, concatenated, then one linear layer:
    (N, C_1, h, w), (N, C_2, h, w), ... -> (N, num_classes)."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        pooled = [f.mean((2, 3)) for f in feats]
        return self.fc(self.drop(torch.cat(pooled, 1) if len(pooled) > 1 else pooled[0]))


class MLPHead(nn.Module):
    """The release's VGG head: feature maps concatenated along channels, flattened, then
    fc hidden -> ReLU -> dropout -> fc hidden -> ReLU -> dropout -> fc classes."""

    def __init__(
        self, in_features: int, hidden: int, num_classes: int, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        x = torch.cat(feats, 1) if len(feats) > 1 else feats[0]
        return self.mlp(x.flatten(1))


class ClassifierHead(nn.Module):
    """A backbone's own classifier as s_L's head: its adaptive pooling (to the map size the
    classifier was built for, whatever the maps' size), flattened, then the classifier:
    (N, C, h, w) -> (N, num_classes)."""

    def __init__(self, pool: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.pool = pool
        self.classifier = classifier

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(f), 1))


def own_classifier(clf: nn.Module, num_classes: int) -> ClassifierHead:
    """A copy of the backbone's adaptive pooling and classifier, its last linear layer
    replaced by a fresh one when it has not `num_classes` outputs (a pretrained backbone)."""
    parts = classifier_parts(clf)
    if parts is None:
        raise BackboneError(
            f"head='classifier' reuses the backbone's own adaptive pooling and classifier, "
            f"as torchvision's VGG and AlexNet models have them; {type(clf).__name__} is not "
            f"one. Use head='linear' or head='vgg'."
        )
    head = ClassifierHead(*copy.deepcopy(parts))
    name, last = [(n, m) for n, m in head.classifier.named_modules() if isinstance(m, nn.Linear)][
        -1
    ]
    if last.out_features != num_classes:
        parent, _, attr = name.rpartition(".")
        fresh = nn.Linear(last.in_features, num_classes, bias=last.bias is not None)
        setattr(head.classifier.get_submodule(parent) if parent else head.classifier, attr, fresh)
    return head


def build_heads(
    head: str,
    num_classes: int,
    features: tuple[int, int | None],
    maps: tuple[int, int],
    *,
    hidden: Sequence[int] = (1024, 2048),
    drop_rate: float | None = None,
    classifier: nn.Module | None = None,
) -> tuple[nn.Module, nn.Module | None]:
    """(s_L's head, the fused head or None) of the type `head` for the branches' feature maps:
    `features` (C_L, C_H or None without an I_H branch) channels of `maps` (h, w) each.

    "vgg": MLPHeads of widths `hidden` on the flattened maps (dropout 0.5 unless
    `drop_rate`); "classifier": `classifier` for s_L, the fused MLPHead for s_c; "linear":
    LinearHeads on the pooled maps (no dropout unless `drop_rate`)."""
    c_low, c_high = features
    c_all = c_low + (c_high or 0)
    if head in ("vgg", "classifier"):
        area = maps[0] * maps[1]
        drop = 0.5 if drop_rate is None else drop_rate
        low = (
            classifier
            if classifier is not None
            else MLPHead(c_low * area, hidden[0], num_classes, drop)
        )
        fused = MLPHead(c_all * area, hidden[1], num_classes, drop) if c_high is not None else None
        return low, fused
    drop = 0.0 if drop_rate is None else drop_rate
    low = LinearHead(c_low, num_classes, drop)  # built first: a seeded model's weights depend on it
    return low, LinearHead(c_all, num_classes, drop) if c_high is not None else None
