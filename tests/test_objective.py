"""Training's losses are the library's: the transform loss a stage trains on is
:func:`wae.transform_loss`, and the head names each consumer accepts are WAENet's."""

from __future__ import annotations

import typing

import pytest
import torch

import wae
from wae.models import WAENet
from wae.train.objective import StageModule
from wae.train.schema import StageConfig, TeacherConfig

LOSSES = {
    "transform only (stage 1)": {"transform": 1.0},
    "joint (stage 3)": {"classification": 1.0, "transform": 0.5},
}


@pytest.mark.parametrize("losses", LOSSES.values(), ids=list(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_stage_transform_term_is_transform_loss(losses: dict[str, float], reduction: str) -> None:
    """On a random batch the stage's transform term (and its two parts) equal the public
    transform_loss / reconstruction_loss / energy_loss of the same WAE parts."""
    torch.manual_seed(0)
    model = wae.create_model("wae_small_vgg_28", num_classes=3, width=8).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    stage = StageConfig(losses=losses, lam=0.3, reduction=reduction)
    with torch.no_grad():
        total, terms, _ = StageModule(model, stage)(x, y)
        parts = model.decompose(x, decode=True)
        expected = wae.transform_loss(x, parts, lam=0.3, reduction=reduction)
        rec = wae.reconstruction_loss(x, parts.recon, reduction)
        en = wae.energy_loss(parts.high, reduction)
    torch.testing.assert_close(terms["transform"], expected, rtol=0, atol=0)
    torch.testing.assert_close(terms["reconstruction"], rec, rtol=0, atol=0)
    torch.testing.assert_close(terms["energy"], en, rtol=0, atol=0)
    assert terms["transform"].dtype == torch.float32
    want = sum(w * terms[k] for k, w in losses.items())
    torch.testing.assert_close(total, want)


def test_the_head_names_come_from_wae_net() -> None:
    """WAENet.HEADS is the one list of head choices: `wae eval --head` offers exactly them
    (a copy, so that --help does not import torch), and distillation takes them plus "both"
    (the training schema's TeacherConfig.heads too)."""
    from wae.cli.eval import _HEADS
    from wae.distill import DISTILL_HEADS

    assert WAENet.HEADS == ("average", "low", "fused")
    assert _HEADS == WAENet.HEADS
    assert DISTILL_HEADS == ("both", *WAENet.HEADS)
    hints = typing.get_type_hints(TeacherConfig)
    assert set(typing.get_args(hints["heads"])) == set(DISTILL_HEADS)
    with pytest.raises(ValueError, match="head must be one of"):
        WAENet.combine_heads(torch.zeros(1, 2), torch.zeros(1, 2), "both")
