"""The trivial-cue baseline: logistic regression on each image's mean, standard deviation and
ink fraction."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from wae.data import CUE_FEATURES, trivial_cue_accuracy
from wae.data.cues import cue_features


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


def test_ink_fraction_whatever_the_tones() -> None:
    """Dark ink on light paper and light ink on dark paper: the share of ink pixels."""
    x = torch.full((3, 1, 10, 10), 0.8)
    x[0, :, :2, :] = 0.1  # 20 % dark ink
    x[1] = 1 - x[0]  # the same, inverted
    x[2, :, :5, :1] = 0.75  # 5 % ink of little contrast
    feats, labels = cue_features(TensorDataset(x, torch.arange(3)))
    assert CUE_FEATURES == ("mean", "std", "ink") and feats.shape == (3, 3)
    assert feats[:, 2].tolist() == [0.2, 0.2, 0.05] and labels.tolist() == [0, 1, 2]
    flat = cue_features(TensorDataset(torch.full((1, 1, 4, 4), 0.5), torch.zeros(1)))[0]
    assert flat[0, 2] == 0.0  # no ink on a blank page
