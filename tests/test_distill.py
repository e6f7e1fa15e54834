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


# --- feature distillation (beyond the paper) --------------------------------------------------


def test_feature_loss_is_relative_and_pools_the_teacher_map() -> None:
    from wae.distill import feature_distillation_loss

    t = torch.rand(2, 8, 8, 8) + 0.5
    pooled = torch.nn.functional.avg_pool2d(t, 2)
    assert float(feature_distillation_loss(pooled, t)) == pytest.approx(0.0, abs=1e-7)
    assert float(feature_distillation_loss(torch.zeros_like(pooled), t)) == pytest.approx(1.0)
    # Scale-free: the same relative error for a map 10x larger.
    a = feature_distillation_loss(pooled * 1.1, t)
    torch.testing.assert_close(a, feature_distillation_loss(pooled * 11.0, t * 10.0))
    with pytest.raises(ValueError, match="same batch and channels"):
        feature_distillation_loss(torch.rand(2, 4, 4, 4), t)


def test_feature_distillation_trains_the_student_only() -> None:
    """A stage with the feature_distillation loss: the teacher's own features and logits
    from one forward, a gradient into the I_L network, none into the teacher."""
    from wae.train.objective import StageModule
    from wae.train.schema import StageConfig

    torch.manual_seed(0)
    teacher = wae.create_model("small_vgg_28_full", num_classes=3, width=8)
    student = wae.create_model("wae_small_vgg_28", num_classes=3, width=8)
    stage = StageConfig(losses={"classification": 0.5, "feature_distillation": 1.0})
    assert stage.distill and stage.classify
    loss, terms, _ = StageModule(student, stage, teacher=teacher)(
        torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    )
    assert set(terms) == {"classification", "feature_distillation"}
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.low_net.parameters())


def test_feature_distillation_refuses_a_half_size_teacher() -> None:
    from wae.distill import teacher_outputs

    half = wae.create_model("small_vgg_28_half", num_classes=3, width=8)
    with pytest.raises(ValueError, match="full-resolution teacher"):
        teacher_outputs(half, torch.rand(1, 1, 28, 28), features=True)
