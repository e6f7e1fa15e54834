"""Knowledge distillation from a trained full-resolution network (the teacher) into a WAE.

Hinton et al.'s soft-target loss: T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged
over the batch. The T^2 keeps its gradient on the scale of the cross-entropy as T changes.
The teacher's logits are targets: no gradient ever reaches the teacher.

Feature distillation (beyond the paper, in the manner of FitNets' hints): the I_L network's
feature map learns the teacher's last feature map, average-pooled to its size (the teacher
sees the full-resolution image, so its map is twice as large), as a mean squared error
relative to the teacher map's mean square, so its scale does not depend on the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models.wae_net import WAENet, WAENetOutput

__all__ = [
    "DISTILL_HEADS",
    "distillation_loss",
    "feature_distillation_loss",
    "soft_target_kl",
    "teacher_outputs",
]

# Which of the WAE's scores learn from the teacher: both (summed, as L_c sums the two
# cross-entropies), or one of WAENet's head choices (each head, or their average: the
# prediction WAENet.forward makes).
DISTILL_HEADS = ("both", *WAENet.HEADS)


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """T^2 * KL(teacher || student) at temperature T, batch mean: (N, K), (N, K) -> scalar.

    Computed in float32 (autocast-safe); zero when the two agree up to a constant shift.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: the two models must have the same classes."
        )
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def distillation_loss(
    out: WAENetOutput | torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 4.0,
    weight: float = 1.0,
    heads: str = "both",
) -> torch.Tensor:
    """`weight` * the soft-target loss of a WAE's scores (or any logits (N, K)) against the
    teacher's logits (N, K).

    ``heads`` (for a WAENetOutput): "both" sums the loss of s_L and s_c (s_L alone without an
    I_H branch), "low" / "fused" one head, "average" the prediction (s_L + s_c) / 2.
    """
    if heads not in DISTILL_HEADS:
        raise ValueError(f"heads must be one of {DISTILL_HEADS}, got {heads!r}.")
    if isinstance(out, torch.Tensor):
        scores = [out]
    elif heads == "both":
        scores = [s for s in (out.s_low, out.s_fused) if s is not None]
    else:
        scores = [WAENet.combine_heads(out.s_low, out.s_fused, heads)]
    loss = sum(soft_target_kl(s, teacher_logits, temperature) for s in scores)
    return weight * loss


def feature_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Relative MSE of a student feature map (N, C, h, w) to a teacher map (N, C, H, W) with
    H, W >= h, w, average-pooled to (h, w) first: ||f_s - pool(f_t)||^2 / ||pool(f_t)||^2.

    Computed in float32; the teacher's map is a target (detached). Channels must agree (the
    I_L network is the teacher's own architecture).
    """
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"feature distillation needs maps of the same batch and channels, got the "
            f"student's {tuple(student.shape)} and the teacher's {tuple(teacher.shape)}: the "
            f"student's I_L network must be the teacher's architecture."
        )
    t = F.adaptive_avg_pool2d(teacher.detach().float(), student.shape[-2:])
    return (student.float() - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)


def teacher_outputs(
    teacher: torch.nn.Module, x: torch.Tensor, features: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's logits (N, K) and, if asked, its last feature map (N, C, H, W), without
    gradient and in eval mode. The map comes from the classifier's own ``forward_features`` /
    ``forward_head`` (one forward for both); a teacher without them cannot teach features."""
    teacher.eval()  # its BatchNorm statistics never move
    with torch.no_grad():
        if not features:
            return teacher(x).float(), None
        net = getattr(teacher, "net", teacher)  # a PlainNet holds the classifier in .net
        if getattr(teacher, "half", False) or not hasattr(net, "forward_head"):
            raise ValueError(
                "feature distillation needs a full-resolution teacher whose classifier has "
                "forward_features and forward_head (timm models, SmallVGG); drop the "
                "feature_distillation loss for this teacher."
            )
        f = net.forward_features(x)
        return net.forward_head(f).float(), f
