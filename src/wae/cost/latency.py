"""Wall-clock latency with :mod:`torch.utils.benchmark`: warm-up, a fixed thread count,
both memory formats, interleaved rounds, and median + interquartile range (IQR).

On CUDA the benchmark timer synchronises before reading the clock, so asynchronous kernel
launches are not mistaken for finished work; we also synchronise after warm-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..macs import eval_mode
from ._common import ExampleInput, as_tuple, check_timing, resolve_device, shapes

__all__ = ["Latency", "format_name", "measure_interleaved", "measure_latency"]

_FORMAT_NAMES = {torch.contiguous_format: "contiguous_format", torch.channels_last: "channels_last"}
_FORMAT_ALIASES = {
    "contiguous": torch.contiguous_format,
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


@dataclass
class Latency:
    """Wall-clock latency of one forward pass (all times in milliseconds).

    Statistics are over the per-run times of the measured blocks (each block runs the model
    ``runs / n_measurements`` times on average and reports the mean). ``candidates`` maps every
    memory format that was timed to its median; ``memory_format`` is the one reported.
    """

    median_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    n_measurements: int
    runs: int
    threads: int
    batch_size: int
    dtype: str
    memory_format: str
    device: str
    input_shapes: list[list[int]]
    candidates: dict[str, float]
    min_run_time: float
    warmup: int
    rounds: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _resolve_formats(memory_format: str | torch.memory_format) -> list[torch.memory_format]:
    if isinstance(memory_format, torch.memory_format):
        if memory_format not in _FORMAT_NAMES:
            raise ValueError(f"unsupported memory format {memory_format}")
        return [memory_format]
    if memory_format == "best":
        return [torch.contiguous_format, torch.channels_last]
    if memory_format in _FORMAT_ALIASES:
        return [_FORMAT_ALIASES[memory_format]]
    raise ValueError(
        f"memory_format must be 'best', 'contiguous_format', 'channels_last' or a "
        f"torch.memory_format, got {memory_format!r}"
    )


def _convert_tensor(
    t: torch.Tensor, device: torch.device, dtype: torch.dtype | None, fmt: torch.memory_format
) -> torch.Tensor:
    out = t.to(device=device, dtype=dtype if t.is_floating_point() else None)
    if out.dim() == 4:  # channels_last only exists for 4-D (N, C, H, W) tensors
        out = out.contiguous(memory_format=fmt)
    return out


@contextlib.contextmanager
def _converted(
    model: nn.Module, device: torch.device, dtype: torch.dtype | None, fmt: torch.memory_format
) -> Iterator[None]:
    """Temporarily move/cast/re-layout every parameter and buffer, in eval mode.

    We swap ``tensor.data`` and keep the original ``.data`` to put back, instead of calling
    ``model.to(...)`` twice: that restores the exact original storage (same layout, dtype,
    device and even data_ptr), so a caller's channels_last or half-precision model comes back
    untouched, and nothing is copied when no conversion is needed.
    """
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with eval_mode(model):
        try:
            for t in list(model.parameters()) + list(model.buffers()):
                old = t.data
                new = _convert_tensor(old, device, dtype, fmt)
                if new is not old:
                    saved.append((t, old))
                    t.data = new
            yield
        finally:
            for t, old in reversed(saved):
                t.data = old


def _quantile(sorted_times: torch.Tensor, q: float) -> float:
    return float(sorted_times.quantile(q).item())


def _stats_ms(times_s: Sequence[float]) -> dict[str, float]:
    # Same estimator as torch.utils.benchmark.Measurement (torch.quantile, linear), but over the
    # times pooled from all rounds.
    t = torch.tensor(sorted(times_s), dtype=torch.float64) * 1e3
    return {
        "median_ms": _quantile(t, 0.5),
        "iqr_ms": _quantile(t, 0.75) - _quantile(t, 0.25),
        "mean_ms": float(t.mean().item()),
        "min_ms": float(t[0].item()),
        "max_ms": float(t[-1].item()),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_name(memory_format: str | torch.memory_format) -> str:
    """A memory format as the results name it: a string stays as given (e.g. "best")."""
    if isinstance(memory_format, str):
        return memory_format
    return _FORMAT_NAMES[memory_format]


def _import_benchmark() -> ModuleType:
    """torch.utils.benchmark, imported without its "No CUDA runtime is found" log line.

    It imports torch.utils.cpp_extension, which logs that warning on every CPU-only machine
    with a CUDA toolkit installed; it says nothing about timing, so it is silenced here.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark


def _time_one(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    label: str,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    fmt: torch.memory_format,
    warmup: int,
    threads: int,
    min_run_time: float,
) -> tuple[list[float], int]:
    """One timed slice of one (model, memory format) candidate: (block times in s, runs)."""
    benchmark = _import_benchmark()
    dev_ctx = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with dev_ctx, _converted(model, device, dtype, fmt), torch.inference_mode():
        x = tuple(_convert_tensor(t, device, dtype, fmt) for t in inputs)
        # Explicit warm-up: first calls pay for allocation, oneDNN primitive creation and
        # cache misses; repeated after every (re)conversion.
        for _ in range(warmup):
            model(*x)
        _sync(device)
        timer = benchmark.Timer(
            stmt="model(*x)",
            globals={"model": model, "x": x},
            num_threads=threads,
            label=label,
            description=_FORMAT_NAMES[fmt],
        )
        m = timer.blocked_autorange(min_run_time=min_run_time)
    return list(m.times), len(m.raw_times) * m.number_per_run


def measure_interleaved(
    models: Mapping[str, nn.Module],
    inputs: Mapping[str, tuple[torch.Tensor, ...]],
    *,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype | None = torch.float32,
    min_run_time: float = 2.0,
    device: str | torch.device | None = None,
    warmup: int = 3,
    rounds: int = 4,
) -> dict[str, Latency]:
    """Time several models in one process with the same settings, interleaved across rounds.

    ``models[name]`` is called as ``models[name](*inputs[name])``; any callable module works
    (an ONNX Runtime session wrapped in an ``nn.Module``, a compiled model). The settings
    mean what they mean in :func:`measure_latency`; returns one :class:`Latency` per name.

    Each (model, memory format) candidate gets ``min_run_time`` seconds of timed runs in total,
    split into ``rounds`` slices visited in turn (order reversed every other round) so that slow
    drift of the machine (thermal, neighbours) hits all candidates alike.
    """
    check_timing(threads=threads, min_run_time=min_run_time, rounds=rounds, warmup=warmup)
    n_threads = int(threads) if threads is not None else torch.get_num_threads()
    formats = _resolve_formats(memory_format)
    devices = {name: resolve_device(m, device) for name, m in models.items()}
    candidates = [(name, fmt) for name in models for fmt in formats]
    times: dict[tuple[str, torch.memory_format], list[float]] = defaultdict(list)
    runs: dict[tuple[str, torch.memory_format], int] = defaultdict(int)

    old_threads = torch.get_num_threads()
    try:
        # The Timer sets num_threads only while timing; warm-up must use the same count.
        torch.set_num_threads(n_threads)
        for r in range(rounds):
            for name, fmt in candidates if r % 2 == 0 else candidates[::-1]:
                t, n = _time_one(
                    models[name],
                    inputs[name],
                    name,
                    device=devices[name],
                    dtype=dtype,
                    fmt=fmt,
                    warmup=warmup,
                    threads=n_threads,
                    min_run_time=min_run_time / rounds,
                )
                times[(name, fmt)].extend(t)
                runs[(name, fmt)] += n
    finally:
        torch.set_num_threads(old_threads)

    settings = dict(
        threads=n_threads,
        dtype=str(dtype).replace("torch.", "") if dtype is not None else "as given",
        min_run_time=float(min_run_time),
        warmup=int(warmup),
        rounds=int(rounds),
    )
    return {
        name: _latency(
            {f: times[(name, f)] for f in formats},
            {f: runs[(name, f)] for f in formats},
            shapes(inputs[name]),
            device=str(devices[name]),
            **settings,
        )
        for name in models
    }


def _latency(
    times: Mapping[torch.memory_format, Sequence[float]],
    runs: Mapping[torch.memory_format, int],
    input_shapes: list[list[int]],
    **settings: Any,
) -> Latency:
    """One model's :class:`Latency`: the statistics of its fastest memory format."""
    per_fmt = {fmt: _stats_ms(t) for fmt, t in times.items()}
    best = min(per_fmt, key=lambda f: per_fmt[f]["median_ms"])
    return Latency(
        **per_fmt[best],
        n_measurements=len(times[best]),
        runs=runs[best],
        batch_size=input_shapes[0][0] if input_shapes and input_shapes[0] else 1,
        memory_format=_FORMAT_NAMES[best],
        input_shapes=input_shapes,
        candidates={_FORMAT_NAMES[f]: s["median_ms"] for f, s in per_fmt.items()},
        **settings,
    )


def measure_latency(
    model: nn.Module,
    example_input: ExampleInput,
    *,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype | None = torch.float32,
    min_run_time: float = 1.0,
    device: str | torch.device | None = None,
    warmup: int = 3,
) -> Latency:
    """Median wall-clock latency of ``model(*example_input)`` via ``torch.utils.benchmark``.

    * ``threads``: intra-op threads (default: current ``torch.get_num_threads()``, which PyTorch
      sets to the number of physical cores). The global setting is restored afterwards.
    * ``memory_format``: ``"best"`` times ``contiguous_format`` and ``channels_last`` (model
      and input converted) and reports the faster, recording which in ``memory_format`` and
      both medians in ``candidates``; or name one format.
    * ``dtype``: floating-point parameters, buffers and inputs are cast to it for timing;
      None keeps each one's own (candidates prepared at their own precision).
    * ``device``: default is where the model's parameters are. On CUDA the benchmark timer
      synchronises before each clock read, so times include kernel completion.
    * ``min_run_time``: seconds of timed runs per memory format (after ``warmup`` untimed runs).

    The model runs in eval mode under ``torch.inference_mode``; its parameters' original
    storage (device, dtype, memory format) and training flags are restored afterwards.
    """
    inputs = as_tuple(example_input)
    return measure_interleaved(
        {"model": model},
        {"model": inputs},
        threads=threads,
        memory_format=memory_format,
        dtype=dtype,
        min_run_time=min_run_time,
        device=device,
        warmup=warmup,
        rounds=1,
    )["model"]
