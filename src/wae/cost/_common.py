"""Small helpers that counting, timing and profiling share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

#: A model's positional input(s): one tensor, or a sequence of them.
ExampleInput = torch.Tensor | Sequence[torch.Tensor]


def as_tuple(example_input: ExampleInput) -> tuple[torch.Tensor, ...]:
    """The positional arguments of ``model(*inputs)``."""
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


def shapes(inputs: Sequence[torch.Tensor]) -> list[list[int]]:
    return [list(x.shape) for x in inputs]


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


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else where the model's first parameter or buffer lives."""
    if device is not None:
        return torch.device(device)
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")
