"""Small helpers that counting, timing and profiling share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import WAEError
from ..macs import module_device
from ..runtime import check_device

#: A model's positional input(s): one tensor, or a sequence of them.
ExampleInput = torch.Tensor | Sequence[torch.Tensor]


def as_tuple(example_input: ExampleInput) -> tuple[torch.Tensor, ...]:
    """The positional arguments of ``model(*inputs)``."""
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


def shapes(inputs: Sequence[torch.Tensor]) -> list[list[int]]:
    return [list(x.shape) for x in inputs]


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else where the model's first parameter or buffer lives."""
    return check_device(device) if device is not None else module_device(model)


class MeasureError(WAEError, ValueError):
    """A measurement (or run) that cannot be set up as asked: device, threads, timing."""


# The devices wae runs on: "auto" or a torch device of one of these types, optionally indexed.


def check_timing(
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    min_run_time: float | None = None,
    rounds: int | None = None,
    warmup: int | None = None,
) -> None:
    """Refuse timing settings that would time nothing or mislead (:class:`MeasureError`):
    batch_size >= 1, threads >= 1, min_run_time a finite number of seconds > 0, rounds >= 1,
    warmup >= 0. None means "not given" (the caller's default)."""
    bad = []
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        bad.append(
            f"the timing batch size (--batch-size, --latency-batch) must be an integer >= 1, "
            f"got {batch_size!r}"
        )
    if threads is not None and not (_is_int(threads) and threads >= 1):
        bad.append(f"threads (--threads) must be an integer >= 1, got {threads!r}")
    if min_run_time is not None and not (
        isinstance(min_run_time, (int, float)) and math.isfinite(min_run_time) and min_run_time > 0
    ):
        bad.append(f"min_run_time (--min-run-time) must be seconds > 0, got {min_run_time!r}")
    if rounds is not None and not (_is_int(rounds) and rounds >= 1):
        bad.append(f"rounds (--rounds) must be an integer >= 1, got {rounds!r}")
    if warmup is not None and not (_is_int(warmup) and warmup >= 0):
        bad.append(f"warmup (--warmup) must be an integer >= 0, got {warmup!r}")
    if bad:
        raise MeasureError("; ".join(bad) + ".")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
