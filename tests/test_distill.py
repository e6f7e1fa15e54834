"""Distillation loss: zero when student and teacher agree, gradients only to the student."""

import pytest
import torch
from torch import nn

import wae
from wae.distill import distillation_loss, soft_target_kl


def test_zero_when_logits_agree_up_to_a_shift() -> None:
    z = torch.randn(8, 10)
    assert float(soft_target_kl(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_target_kl(z + 3.0, z)) == pytest.approx(0.0, abs=1e-5)  # softmax shift
    assert float(soft_target_kl(torch.randn(8, 10), z)) > 0.01


def test_matches_hinton_definition() -> None:
    s, t, temp = torch.randn(4, 5), torch.randn(4, 5), 3.0
    p_t = torch.softmax(t / temp, 1)
    expected = (p_t * (p_t.log() - torch.log_softmax(s / temp, 1))).sum(1).mean() * temp**2
    torch.testing.assert_close(soft_target_kl(s, t, temp), expected)


def test_no_gradient_reaches_the_teacher() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(6, 3)
    student = wae.WAENet.from_backbone(
        "small_vgg", num_classes=3, in_chans=1, input_size=16, width=4
    )
    x = torch.rand(5, 1, 16, 16)
    t_logits = teacher(torch.randn(5, 6))  # part of a graph: detach must cut it
    out = student.forward_train(x, decode=False)
    loss = distillation_loss(out, t_logits, temperature=4.0, weight=0.7)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.head_low.fc.weight.grad is not None
    assert student.head_fused.fc.weight.grad is not None


def test_heads_choice_and_weight() -> None:
    s_low, s_fused, t = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    out = wae.WAENetOutput(s_low, s_fused, None)
    both = distillation_loss(out, t, heads="both", weight=0.5)
    parts = soft_target_kl(s_low, t) + soft_target_kl(s_fused, t)
    torch.testing.assert_close(both, 0.5 * parts)
    avg = distillation_loss(out, t, heads="average")
    torch.testing.assert_close(avg, soft_target_kl((s_low + s_fused) / 2, t))
    with pytest.raises(ValueError, match="heads must be"):
        distillation_loss(out, t, heads="sum")
    with pytest.raises(ValueError, match="same classes"):
        soft_target_kl(s_low, torch.randn(4, 6))
    with pytest.raises(ValueError, match="temperature"):
        soft_target_kl(s_low, t, temperature=0.0)
