"""Knowledge distillation from a trained full-resolution network (the teacher) into a WAE.

Hinton et al.'s soft-target loss: T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged
over the batch. The T^2 keeps its gradient on the scale of the cross-entropy as T changes.
The teacher's logits are targets: no gradient ever reaches the teacher.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models.wae_net import WAENet, WAENetOutput

__all__ = ["DISTILL_HEADS", "distillation_loss", "soft_target_kl"]

# Which of the WAE's scores learn from the teacher: each head, both (summed, as L_c sums the
# two cross-entropies), or their average (the prediction WAENet.forward makes).
DISTILL_HEADS = ("both", "low", "fused", "average")


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
