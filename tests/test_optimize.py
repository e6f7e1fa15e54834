"""wae.optimize on small hand-made models: optimize_for_inference keeps the outputs of eager
PyTorch (BN folded, convs fused or not), leaves the model it was given as it was, and refuses
a check it cannot make; its building blocks compute what they replace.

The registry's models (WAENet, plain networks) through it are in test_bench."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wae.optimize import (
    FusedConv2d,
    OptimizeError,
    SplitConv2d,
    optimize_for_inference,
)


class Small(nn.Module):
    """conv-BN-ReLU, a residual conv-BN (+ x) -> ReLU, a reflect-padded conv, pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.reflect = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        x = torch.relu(self.reflect(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def small(randomise_stats) -> tuple[nn.Module, torch.Tensor]:
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    return randomise_stats(Small(), x), x


@pytest.mark.parametrize("fuse", [None, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_outputs_stay_close_to_eager(small, fuse, channels_last) -> None:
    model, x = small
    with torch.no_grad():
        ref = model(x)
    opt = optimize_for_inference(model, fuse_mkldnn=fuse, channels_last=channels_last, check=x)
    with torch.no_grad():
        got = opt(x)
        one = opt(x[1:2])  # another batch size
    assert got.shape == ref.shape == (4, 5)
    assert (got - ref).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))
    assert (one - ref[1:2]).abs().max() <= 1e-5 * max(1.0, float(ref.abs().max()))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in opt.modules())  # folded
    fused = [m for m in opt.modules() if isinstance(m, FusedConv2d)]
    if fuse is None and torch.backends.mkldnn.is_available():
        # conv1 (+ReLU) and conv2 (+add+ReLU); the reflect-padded conv is left a Conv2d.
        assert sorted((m.add, m.relu) for m in fused) == [(False, True), (True, True)]
        assert sum(type(m) is nn.Conv2d for m in opt.modules()) == 1
    else:
        assert not fused
    assert not any(p.requires_grad for p in opt.parameters())
    if channels_last:
        conv_weights = [m.weight for m in opt.modules() if isinstance(m, (nn.Conv2d, FusedConv2d))]
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)


def test_the_given_model_is_left_as_it_was(small) -> None:
    model, x = small
    model.train()
    state = copy.deepcopy(model.state_dict())
    optimize_for_inference(model, check=x)
    assert model.training and all(m.training for m in model.modules())  # flags restored
    assert all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)  # BN stats not updated either


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"atol": float("nan")}, "atol must be a finite number"),
        ({"atol": float("inf")}, "atol must be a finite number"),
        ({"atol": True}, "atol must be a finite number"),
        ({"atol": "1e-5"}, "atol must be a finite number"),
        ({"check": torch.rand(3, 12, 12)}, r"check must be an image batch .*\(3, 12, 12\)"),
        ({"check": [[1.0]]}, "check must be an image batch .*list"),
    ],
)
def test_refuses_a_check_it_cannot_make(small, kwargs, match) -> None:
    model, _ = small
    model.train()
    with pytest.raises(OptimizeError, match=match):
        optimize_for_inference(model, **kwargs)
    assert model.training  # refused before anything was touched


def test_refuses_a_result_outside_the_tolerance(small) -> None:
    model, x = small
    with pytest.raises(OptimizeError, match=r"changed the outputs by .* \(> "):
        optimize_for_inference(model, check=x, atol=-1.0)  # no result can meet this
    optimize_for_inference(model, check=x, atol=1e-5)  # the default bound passes


def test_no_onednn_fusion_off_float32(small) -> None:
    """A bfloat16 model is folded but not fused (FusedConv2d is float32 CPU only)."""
    model, x = small
    low = copy.deepcopy(model).to(torch.bfloat16)
    opt = optimize_for_inference(low)
    assert not any(isinstance(m, FusedConv2d) for m in opt.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in opt.modules())
    with torch.no_grad():
        got, ref = opt(x.bfloat16()).float(), model(x)
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max() + 0.05


def test_fused_conv_supports_only_plain_float32_cpu_convs() -> None:
    assert FusedConv2d.supports(nn.Conv2d(2, 4, 3, padding=1))
    assert not FusedConv2d.supports(nn.Conv2d(2, 4, 3, padding="same"))
    assert not FusedConv2d.supports(nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"))
    assert not FusedConv2d.supports(nn.Conv2d(2, 4, 3).double())
    assert not FusedConv2d.supports(nn.ConvTranspose2d(2, 4, 3))


@pytest.mark.parametrize(("relu", "add"), [(False, False), (True, False), (True, True)])
def test_fused_conv_computes_conv_add_relu(relu: bool, add: bool) -> None:
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    x = torch.randn(2, 4, 9, 9)
    other = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        want = conv(x) + (other if add else 0)
        want = torch.relu(want) if relu else want
        fused = FusedConv2d(conv, relu=relu, add=add)
        got = fused(x, other if add else None)
        # Another dtype takes the standard ops (the reference path), same arithmetic.
        slow = fused(x.double(), other.double() if add else None)
    assert torch.allclose(got, want, atol=1e-5)
    assert slow.dtype == torch.float64 and torch.allclose(slow.float(), want, atol=1e-5)


def test_split_conv_equals_the_convs_it_merges() -> None:
    a, b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 5, 3, padding=1, bias=False)
    split = SplitConv2d([a, b])
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        ya, yb = split(x)
        assert torch.allclose(ya, a(x), atol=1e-6) and torch.allclose(yb, b(x), atol=1e-6)
    assert split.sizes == [2, 5] and split.conv.out_channels == 7
