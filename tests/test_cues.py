"""The trivial-cue baseline: logistic regression on each image's mean and standard deviation."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from wae.data import trivial_cue_accuracy


def _data(n: int, seed: int, *, spatial: bool) -> TensorDataset:
    """Two classes of (1, 8, 8) images: told apart by brightness, or (``spatial``) only by
    where the bright half lies (the same mean and standard deviation in both)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.1
    if spatial:
        x[y == 0, :, :4, :] += 0.8  # top half bright
        x[y == 1, :, 4:, :] += 0.8  # bottom half bright
    else:
        x[y == 1] += 0.5
    return TensorDataset(x, y)


def test_brightness_is_found() -> None:
    acc = trivial_cue_accuracy(_data(200, 0, spatial=False), _data(100, 1, spatial=False))
    assert acc > 95.0


def test_spatial_detail_is_not_seen() -> None:
    acc = trivial_cue_accuracy(_data(200, 0, spatial=True), _data(200, 1, spatial=True))
    assert 30.0 < acc < 70.0  # chance is 50 %
