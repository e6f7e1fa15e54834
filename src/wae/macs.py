"""Counting the multiply-accumulates of one forward pass, on ``meta`` tensors where possible.

The one place where a forward pass is counted: :func:`counted_forward` runs it under
:class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-accumulate; see
:mod:`wae.cost` for what is and is not counted). :func:`count_macs` is the core's plain total
(the pay-off check WAENet.from_backbone runs); :func:`wae.cost.count_ops` breaks the same
count down by operator and part.

On ``meta`` a model's parameters and buffers are swapped for storage-less copies with
:func:`torch.func.functional_call` (:class:`BoundCall`), so nothing is computed or copied,
whatever the model's size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["BoundCall", "count_macs", "counted_forward", "eval_mode", "module_device"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def module_device(module: nn.Module) -> torch.device:
    """Where the module's first parameter or buffer lives (the CPU for a module without)."""
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


def counted_forward(model: nn.Module, inputs: Sequence[torch.Tensor]) -> FlopCounterMode:
    """Run ``model(*inputs)`` once in eval mode under ``torch.no_grad`` (training flags are
    restored) and return the FlopCounterMode that counted it, every module depth kept."""
    with eval_mode(model), torch.no_grad():
        # depth=None keeps every level; display=False stops it printing a table.
        with FlopCounterMode(display=False, depth=None) as counter:
            model(*inputs)
    return counter


class BoundCall(nn.Module):
    """``module(x, **kwargs)`` as a one-input module; with ``meta``, on storage-less copies
    of the module's parameters and buffers (x must then be a meta tensor too)."""

    def __init__(
        self, module: nn.Module, kwargs: Mapping[str, Any] | None = None, *, meta: bool = True
    ) -> None:
        super().__init__()
        self.module = module
        self.kwargs = dict(kwargs or {})
        self.tensors = None
        if meta:
            named = [*module.named_parameters(), *module.named_buffers()]
            self.tensors = {n: torch.empty_like(t, device="meta") for n, t in named}

    def forward(self, x: torch.Tensor) -> Any:
        if self.tensors is None:
            return self.module(x, **self.kwargs)
        return functional_call(self.module, self.tensors, (x,), self.kwargs)


def count_macs(module: nn.Module, shape: Sequence[int], **kwargs: Any) -> float:
    """MACs of ``module(x, **kwargs)`` for an ``x`` of ``shape`` (batch included): on meta
    tensors, else for real on zeros where the module lives."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    try:
        x = torch.empty(*shape, device="meta", dtype=dtype)
        counter = counted_forward(BoundCall(module, kwargs, meta=True), (x,))
    except Exception:  # an op without a meta kernel, a data-dependent branch, ...
        x = torch.zeros(*shape, device=module_device(module), dtype=dtype)
        counter = counted_forward(BoundCall(module, kwargs, meta=False), (x,))
    return counter.get_total_flops() / 2
