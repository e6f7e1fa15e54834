"""The pruning peer: Taylor channel pruning (Molchanov et al. 2016, the paper's "Taylor" rows)
of the trained full-resolution network, down to about the WAE's MACs, with Torch-Pruning.

A pruned network is not one of the registry's architectures, so it gets a builder of its own,
:func:`pruned_net`: the base model's registry name and arguments, plus the shapes of the
layers that pruning changed. Checkpoints of it therefore rebuild like any other
(``wae.checkpoint.load_model``; it lives in ``wae.models.pruned``), and
the engine can fine-tune it like any other model (``model.init`` = the pruned weights).

What "Taylor" means here: Torch-Pruning's ``TaylorImportance`` (|weight x gradient| summed
over each channel's coupled parameters, mean-normalised per group), on the gradients of the
cross-entropy over a few training batches, recomputed before each of the iterative steps;
every prunable layer loses the same fraction of channels per step (Torch-Pruning's local
pruning), the classifier's output layer is kept. Molchanov et al. prune one feature map at a
time and fine-tune in between; we prune in steps without fine-tuning in between, then fine-tune
once (the stage-3 budget).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...cost import count_ops
from ...models.pruned import layer_shapes, pruned_net, reshape_layers

__all__ = ["layer_shapes", "pruned_net", "reshape_layers", "taylor_prune"]


def _ignored_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """The classifier's output layer(s): their outputs are the classes."""
    return [
        m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]


def taylor_prune(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    target_macs: float,
    example: torch.Tensor,
    *,
    num_classes: int,
    step_ratio: float = 0.025,
    max_ratio: float = 0.95,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of `model` with Taylor importance until its MACs (at `example`'s shape)
    are about `target_macs`; returns (pruned model, log).

    Each step removes another `step_ratio` of every prunable layer's channels, ranked by
    Taylor importance on gradients from `batches` (a list, reused every step). The step whose
    MACs are closest to the target (before or after crossing it) is kept.
    """
    import torch_pruning as tp

    model = copy.deepcopy(model).cpu()
    model.eval()  # gradients flow, but batch-norm running statistics stay as trained
    batches = list(batches)
    steps = max(1, round(max_ratio / step_ratio))
    base_macs = count_ops(model, example).macs
    log: dict[str, Any] = {
        "importance": "TaylorImportance (torch_pruning)",
        "torch_pruning": tp.__version__,
        "base_macs": base_macs,
        "target_macs": float(target_macs),
        "step_ratio": step_ratio,
        "grad_images_per_step": sum(len(y) for _, y in batches),
        "steps": [],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.TaylorImportance(),
            pruning_ratio=step_ratio * steps,
            iterative_steps=steps,
            ignored_layers=_ignored_layers(model, num_classes),
        )
    if base_macs <= target_macs:
        # Nothing to remove: the full network is already as cheap as the target (tiny widths,
        # where the WAE's full-resolution encoder dominates the WAE's cost).
        log["final_macs"] = base_macs
        log["mac_ratio_to_target"] = base_macs / target_macs if target_macs else None
        log["note"] = "not pruned: the network is already below the target MACs"
        return model, log
    model, macs = _prune_steps(model, pruner, batches, example, target_macs, steps, log)
    log["final_macs"] = macs
    log["mac_ratio_to_target"] = macs / target_macs if target_macs else None
    return model, log


def _prune_steps(
    model: nn.Module,
    pruner: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    example: torch.Tensor,
    target_macs: float,
    steps: int,
    log: dict[str, Any],
) -> tuple[nn.Module, float]:
    """Prune step by step (gradients first, then Torch-Pruning's step) until the MACs reach
    the target; returns the step closest to it and its MACs, each step logged."""
    prev, prev_macs = copy.deepcopy(model), log["base_macs"]
    step_ratio = log["step_ratio"]
    for step in range(1, steps + 1):
        for p in model.parameters():
            p.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        for x, y in batches:
            F.cross_entropy(model(x), y).backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.step()
        model.zero_grad(set_to_none=True)
        macs = count_ops(model, example).macs
        log["steps"].append({"step": step, "ratio": step * step_ratio, "macs": macs})
        if macs <= target_macs:
            if abs(prev_macs - target_macs) < abs(macs - target_macs):
                model, macs = prev, prev_macs
            break
        prev, prev_macs = copy.deepcopy(model), macs
    for p in model.parameters():
        p.requires_grad_(True)
    return model, macs
