"""What a stage computes and what it trains: the forward with its losses, the parameters it
updates, the modes of frozen modules, and its optimiser.

The stage's config says it all (the trainer has no ``if stage == 2``):

* the losses say what runs: without the classification loss only the WAE runs (stage 1 of the
  paper; the classifier is neither run nor changed); the decoder runs only for the transform
  loss (stage 2 passes ``decode=False``);
* the optimiser holds the parameters that run and are not frozen (``freeze`` prefixes, e.g.
  ``["wae"]`` in stage 2); frozen modules are also kept in eval mode, so batch-norm
  statistics inside them do not move either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..autoencoder import transform_loss_terms
from ..distill import distillation_loss, feature_distillation_loss, teacher_outputs
from ..models import WAENet, classification_loss
from .config import StageConfig, TeacherConfig

__all__ = ["StageModule", "make_optimizer", "set_modes", "trainable"]


class StageModule(nn.Module):
    """Runs what a stage needs and returns its losses (one module, so DDP sees it all).

    forward(x (N, C, H, W), y (N,), idx (N,) or None) -> (total loss (), {term: loss ()},
    logits (N, K) or None); `idx`: the images' rows in `soft_targets` (N_train, K), the
    teacher's logits computed once (:mod:`.soft_targets`), used instead of its forward.
    Terms: ``classification`` (L_c = CE(s_L) + CE(s_c) for WAENet, CE for a plain net),
    ``distillation`` (the soft-target loss against the teacher's logits, see
    :func:`wae.distillation_loss`), ``transform`` (L_t = reconstruction + lam * energy) and
    its two parts. Losses are computed in float32 even under autocast.

    The teacher (stages with a distillation loss) is held outside the module tree: it is
    neither trained, nor wrapped by DDP, nor saved, and always runs in eval mode.
    """

    def __init__(
        self,
        model: nn.Module,
        stage: StageConfig,
        teacher: nn.Module | None = None,
        teacher_cfg: TeacherConfig | None = None,
        soft_targets: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.is_wae = isinstance(model, WAENet)
        self.classify, self.decode, self.distill = stage.classify, stage.decode, stage.distill
        if self.distill and teacher is None:
            raise ValueError("a stage with the distillation loss needs the teacher")
        self._teacher = (teacher,)  # a tuple: not registered as a submodule
        self._targets = (soft_targets,)  # likewise: neither trained nor saved
        self.teacher_cfg = teacher_cfg or TeacherConfig()
        self.weights = {k: float(w) for k, w in stage.losses.items() if w > 0}
        self.lam, self.reduction = stage.lam, stage.reduction
        self.label_smoothing = stage.label_smoothing

    @property
    def soft_targets(self) -> torch.Tensor | None:
        """The teacher's logits of every training image (N_train, K), or None."""
        return self._targets[0]

    def _distill(
        self,
        x: torch.Tensor,
        out: object,
        terms: dict[str, torch.Tensor],
        idx: torch.Tensor | None = None,
    ) -> None:
        """Adds the distillation terms: the teacher's soft targets (looked up by `idx` when
        they were computed once) and, with the feature_distillation loss, its last feature
        map for the I_L network's."""
        t = self.teacher_cfg
        feats = self.weights.get("feature_distillation", 0.0) > 0
        if feats and not self.is_wae:
            raise ValueError("feature distillation needs a WAENet student (its I_L features)")
        if idx is not None and self.soft_targets is not None and not feats:
            logits, f_t = self.soft_targets[idx], None
        else:
            logits, f_t = teacher_outputs(self._teacher[0], x, features=feats)
        if "distillation" in self.weights:
            terms["distillation"] = distillation_loss(
                out, logits, temperature=t.temperature, heads=t.heads
            )
        if feats:
            terms["feature_distillation"] = feature_distillation_loss(out.f_low, f_t)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        m = self.model
        terms: dict[str, torch.Tensor] = {}
        logits = None
        parts = None
        if not self.classify:
            parts = m.decompose(x, decode=True)  # the WAE alone: the classifier does not run
        elif self.is_wae:
            out = m.forward_train(x, decode=self.decode)
            parts = out.parts
            s_low = out.s_low.float()
            s_fused = out.s_fused.float() if out.s_fused is not None else None
            out = out._replace(s_low=s_low, s_fused=s_fused)
            terms["classification"] = classification_loss(out, y, self.label_smoothing)
            logits = WAENet.combine_heads(s_low, s_fused)
        else:
            out = logits = m(x).float()
            terms["classification"] = F.cross_entropy(
                logits, y, label_smoothing=self.label_smoothing
            )
        if self.distill:
            self._distill(x, out, terms, idx)
        if self.decode:  # wae.transform_loss and its two parts, in float32
            parts = parts._replace(high=parts.high.float(), recon=parts.recon.float())
            terms.update(transform_loss_terms(x.float(), parts, self.lam, self.reduction))
        total = sum(w * terms[k] for k, w in self.weights.items())
        return total, terms, logits


def _matches_prefix(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def trainable(model: nn.Module, s: StageConfig) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of those that stage `s`'s forward uses and does not freeze."""
    is_wae = isinstance(model, WAENet)

    def used(n: str) -> bool:
        if not is_wae:
            return True
        if not s.classify:
            return n.startswith("wae.")
        if not s.decode and n.startswith(("wae.decoder_low.", "wae.decoder_high.")):
            return False
        return True

    return [
        (n, p) for n, p in model.named_parameters() if used(n) and not _matches_prefix(n, s.freeze)
    ]


def set_modes(model: nn.Module, s: StageConfig) -> None:
    """Train mode, but eval mode for the modules stage `s` freezes (their BN stays fixed)."""
    model.train()
    for name, m in model.named_modules():
        if name and _matches_prefix(name, s.freeze):
            m.eval()


def make_optimizer(s: StageConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Stage `s`'s optimiser (sgd | adam | adamw) over `params`."""
    if s.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=s.lr,
            momentum=s.momentum,
            weight_decay=s.weight_decay,
            nesterov=s.nesterov,
        )
    cls = torch.optim.Adam if s.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=s.lr, betas=tuple(s.betas), weight_decay=s.weight_decay)
