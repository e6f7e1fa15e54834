"""Honest cost measurement: operation counts, parameters and wall-clock latency.

The paper's claim is "about 1/4 of the FLOPs"; this module is how the library checks that claim
and whether it turns into real speed. Everything here is a library function so that scripts,
tests and the CLI report the same numbers, measured the same way.

Conventions (read these before quoting a number):

* **FLOPs** are whatever :class:`torch.utils.flop_counter.FlopCounterMode` reports. We never
  write per-layer formulas ourselves, so the counts follow PyTorch's registered formulas.
* FlopCounterMode counts **2 FLOPs per multiply-accumulate** for convolutions and matrix
  products (``aten.convolution``, ``aten.mm``, ``aten.addmm``, ``aten.bmm``, attention, ...).
  **MACs = FLOPs / 2.** Papers (including Chen et al.) usually quote MACs under the name
  "FLOPs"; VGG16 at 224x224 is ~15.47 G MACs = ~30.9 G FLOPs.
* Only those ops are counted. Element-wise and reduction work is **not** counted: ReLU,
  BatchNorm in eval mode, bias adds of convolutions, residual/elementwise adds, pooling,
  softmax, resizing, concatenation. On CPUs these are often memory-bound and can be a large
  share of latency, which is one reason a 4x MAC reduction need not give a 4x speed-up.
* Counting runs in eval mode under ``torch.no_grad`` (the model's training flags are restored
  afterwards). Counts are for the given input shape, batch included.
* **Latency** uses :mod:`torch.utils.benchmark` (``Timer.blocked_autorange``): explicit
  warm-up, a fixed thread count (restored afterwards), optional interleaving of models across
  rounds, and median + interquartile range (IQR) over the measured blocks. On CUDA the
  benchmark timer synchronises the accelerator before reading the clock, so asynchronous
  kernel launches are not mistaken for finished work; we also synchronise after warm-up.

Public API: :func:`count_ops`, :func:`measure_latency`, :func:`profile`, :func:`compare`,
:func:`format_table`, :func:`comparison_to_dict`, :func:`machine_info` and the dataclasses
:class:`PartCount`, :class:`OpCount`, :class:`Latency`, :class:`ModelProfile`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "Latency",
    "ModelProfile",
    "OpCount",
    "PartCount",
    "compare",
    "comparison_to_dict",
    "count_ops",
    "format_table",
    "machine_info",
    "measure_interleaved",
    "measure_latency",
    "profile",
]

#: Label of the bucket that collects everything not assigned to a named part.
OTHER = "other"

PartsSpec = Mapping[str, Sequence[str]]
ExampleInput = torch.Tensor | Sequence[torch.Tensor]

_FORMAT_NAMES = {torch.contiguous_format: "contiguous_format", torch.channels_last: "channels_last"}
_FORMAT_ALIASES = {
    "contiguous": torch.contiguous_format,
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


# --------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------


@dataclass
class PartCount:
    """Cost of one group of top-level child modules."""

    flops: int
    macs: float
    params: int
    children: list[str] = field(default_factory=list)  # child-module names in this group


@dataclass
class OpCount:
    """Operation and parameter counts of one forward pass (see module docstring).

    ``flops`` is FlopCounterMode's total (2 per multiply-accumulate); ``macs = flops / 2``.
    ``by_child`` / ``params_by_child`` are keyed by top-level child name (children that ran no
    counted op appear with 0). FLOPs of ops called directly in the root module's ``forward`` and
    parameters registered directly on the root belong to no child; they land in
    ``parts["other"]``. ``sum(p.flops for p in parts.values()) == flops`` always.
    """

    flops: int
    macs: float
    params: int
    input_shapes: list[list[int]]
    by_op: dict[str, int]
    by_child: dict[str, int]
    params_by_child: dict[str, int]
    parts: dict[str, PartCount]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


@dataclass
class ModelProfile:
    """Counts plus (optionally) latency of one model at one input shape."""

    name: str
    input_shape: list[int]
    ops: OpCount
    latency: Latency | None
    machine: dict[str, Any]

    @property
    def macs(self) -> float:
        return self.ops.macs

    @property
    def params(self) -> int:
        return self.ops.params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    # Distinct (physical id, core id) pairs; hyper-threads share a core.
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.strip().split("\n\n"):
        kv = dict(
            (k.strip(), v.strip())
            for k, v in (ln.split(":", 1) for ln in block.splitlines() if ":" in ln)
        )
        if "core id" in kv:
            cores.add((kv.get("physical id", "0"), kv["core id"]))
    return len(cores) or None


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Describe the machine and PyTorch build; included in every profile and table header.

    ``threads`` is the intra-op thread count used for the measurement (default: the current
    ``torch.get_num_threads()``).
    """
    try:
        usable = len(os.sched_getaffinity(0))  # what a container actually lets us use
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cores": usable,
        "threads": int(threads) if threads is not None else torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _as_tuple(example_input: ExampleInput) -> tuple[torch.Tensor, ...]:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _child_of(name: str) -> str | None:
    """Top-level child of a dotted parameter name, or None for a root-level parameter."""
    head, sep, _ = name.partition(".")
    return head if sep else None


def _assign_parts(children: Sequence[str], parts: PartsSpec | None) -> dict[str, str]:
    """Map each child name to a part label (longest matching prefix wins)."""
    if parts is None:
        return {c: c for c in children}
    prefixes: dict[str, str] = {}
    for label, plist in parts.items():
        if isinstance(plist, str):  # a bare string would silently be split into characters
            raise TypeError(f"parts[{label!r}] must be a list of prefixes, not a string")
        for p in plist:
            if p in prefixes and prefixes[p] != label:
                raise ValueError(f"prefix {p!r} is listed under {prefixes[p]!r} and {label!r}")
            prefixes[p] = label
    assignment: dict[str, str] = {}
    used: set[str] = set()
    for c in children:
        matches = [p for p in prefixes if c.startswith(p)]
        if matches:
            best = max(matches, key=len)  # so "layer10" is not swallowed by "layer1"
            assignment[c] = prefixes[best]
            used.add(best)
        else:
            assignment[c] = OTHER
    unused = [p for p in prefixes if p not in used]
    if unused:
        # Usually a typo or a renamed child: its cost would silently land in "other".
        warnings.warn(
            f"parts prefixes match no child module: {unused}; children are {list(children)}",
            stacklevel=3,
        )
    return assignment


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


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
    t: torch.Tensor, device: torch.device, dtype: torch.dtype, fmt: torch.memory_format
) -> torch.Tensor:
    out = t.to(device=device, dtype=dtype if t.is_floating_point() else None)
    if out.dim() == 4:  # channels_last only exists for 4-D (N, C, H, W) tensors
        out = out.contiguous(memory_format=fmt)
    return out


@contextlib.contextmanager
def _converted(
    model: nn.Module, device: torch.device, dtype: torch.dtype, fmt: torch.memory_format
) -> Iterator[None]:
    """Temporarily move/cast/re-layout every parameter and buffer, in eval mode.

    We swap ``tensor.data`` and keep the original ``.data`` to put back, instead of calling
    ``model.to(...)`` twice: that restores the exact original storage (same layout, dtype,
    device and even data_ptr), so a caller's channels_last or half-precision model comes back
    untouched, and nothing is copied when no conversion is needed.
    """
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    with _eval_mode(model):
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


def _shapes(inputs: Sequence[torch.Tensor]) -> list[list[int]]:
    return [list(x.shape) for x in inputs]


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


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def count_ops(
    model: nn.Module, example_input: ExampleInput, *, parts: PartsSpec | None = None
) -> OpCount:
    """Count FLOPs/MACs and parameters of ``model(*example_input)`` with FlopCounterMode.

    Runs one forward pass in eval mode under ``torch.no_grad`` (training flags are restored).
    Works with models and inputs on the ``meta`` device, which counts without computing.

    ``parts`` maps a display label to a list of top-level child-name prefixes, e.g.
    ``{"encoder": ["wae", "norm_low", "norm_high"], "I_L network": ["low_net"]}``. Each child
    goes to the label of its longest matching prefix; unmatched children, ops called directly in
    the root's ``forward`` and root-level parameters go to ``"other"`` (a label named "other" is
    merged with it). Without ``parts`` there is one part per child, plus ``"other"``.
    """
    inputs = _as_tuple(example_input)
    with _eval_mode(model), torch.no_grad():
        # depth=None keeps every level; display=False stops it printing a table.
        with FlopCounterMode(display=False, depth=None) as counter:
            model(*inputs)
    counts = counter.get_flop_counts()
    total = int(counter.get_total_flops())

    by_op: dict[str, int] = defaultdict(int)
    for op, n in counts.get("Global", {}).items():
        by_op[str(op)] += int(n)

    # FlopCounterMode's module tracker names the root after its class and children by FQN, so
    # depth-1 children are the keys "<RootClass>.<child>".
    root = type(model).__name__
    children = [name for name, _ in model.named_children()]
    by_child = {c: int(sum(counts.get(f"{root}.{c}", {}).values())) for c in children}

    params_by_child = dict.fromkeys(children, 0)
    root_params = 0
    total_params = 0
    for pname, p in model.named_parameters():  # de-duplicates shared parameters
        total_params += p.numel()
        child = _child_of(pname)
        if child is None:
            root_params += p.numel()
        else:
            params_by_child[child] += p.numel()

    assignment = _assign_parts(children, parts)
    labels = list(parts) if parts is not None else list(children)
    grouped: dict[str, PartCount] = {
        label: PartCount(flops=0, macs=0.0, params=0) for label in labels if label != OTHER
    }
    grouped[OTHER] = PartCount(flops=0, macs=0.0, params=0)
    for c in children:
        part = grouped[assignment[c]]
        part.flops += by_child[c]
        part.params += params_by_child[c]
        part.children.append(c)
    # Whatever the children do not account for ran at root level; keeps sum(parts) == total.
    grouped[OTHER].flops += total - sum(by_child.values())
    grouped[OTHER].params += root_params
    for part in grouped.values():
        part.macs = part.flops / 2

    return OpCount(
        flops=total,
        macs=total / 2,
        params=int(total_params),
        input_shapes=_shapes(inputs),
        by_op=dict(by_op),
        by_child=by_child,
        params_by_child=params_by_child,
        parts=grouped,
    )


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def measure_interleaved(
    models: Mapping[str, nn.Module],
    inputs: Mapping[str, tuple[torch.Tensor, ...]],
    *,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype = torch.float32,
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
    # Imported here: torch.utils.benchmark pulls in cpp_extension, slow and noisy at import.
    from torch.utils import benchmark

    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if min_run_time <= 0:
        raise ValueError("min_run_time must be > 0")
    n_threads = int(threads) if threads is not None else torch.get_num_threads()
    if n_threads < 1:
        raise ValueError("threads must be >= 1")
    formats = _resolve_formats(memory_format)
    devices = {name: _resolve_device(m, device) for name, m in models.items()}
    candidates = [(name, fmt) for name in models for fmt in formats]
    times: dict[tuple[str, torch.memory_format], list[float]] = defaultdict(list)
    runs: dict[tuple[str, torch.memory_format], int] = defaultdict(int)

    old_threads = torch.get_num_threads()
    try:
        # The Timer sets num_threads only while timing; warm-up must use the same count.
        torch.set_num_threads(n_threads)
        for r in range(rounds):
            order = candidates if r % 2 == 0 else candidates[::-1]
            for name, fmt in order:
                model, dev = models[name], devices[name]
                dev_ctx = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
                with dev_ctx, _converted(model, dev, dtype, fmt), torch.inference_mode():
                    x = tuple(_convert_tensor(t, dev, dtype, fmt) for t in inputs[name])
                    # Explicit warm-up: first calls pay for allocation, oneDNN primitive
                    # creation and cache misses; repeated after every (re)conversion.
                    for _ in range(warmup):
                        model(*x)
                    _sync(dev)
                    timer = benchmark.Timer(
                        stmt="model(*x)",
                        globals={"model": model, "x": x},
                        num_threads=n_threads,
                        label=name,
                        description=_FORMAT_NAMES[fmt],
                    )
                    m = timer.blocked_autorange(min_run_time=min_run_time / rounds)
                times[(name, fmt)].extend(m.times)
                runs[(name, fmt)] += len(m.raw_times) * m.number_per_run
    finally:
        torch.set_num_threads(old_threads)

    result: dict[str, Latency] = {}
    for name in models:
        per_fmt = {fmt: _stats_ms(times[(name, fmt)]) for fmt in formats}
        best = min(formats, key=lambda f: per_fmt[f]["median_ms"])
        shapes = _shapes(inputs[name])
        result[name] = Latency(
            **per_fmt[best],
            n_measurements=len(times[(name, best)]),
            runs=runs[(name, best)],
            threads=n_threads,
            batch_size=shapes[0][0] if shapes and shapes[0] else 1,
            dtype=str(dtype).replace("torch.", ""),
            memory_format=_FORMAT_NAMES[best],
            device=str(devices[name]),
            input_shapes=shapes,
            candidates={_FORMAT_NAMES[f]: per_fmt[f]["median_ms"] for f in formats},
            min_run_time=float(min_run_time),
            warmup=int(warmup),
            rounds=int(rounds),
        )
    return result


def measure_latency(
    model: nn.Module,
    example_input: ExampleInput,
    *,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype = torch.float32,
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
    * ``dtype``: floating-point parameters, buffers and inputs are cast to it for timing.
    * ``device``: default is where the model's parameters are. On CUDA the benchmark timer
      synchronises before each clock read, so times include kernel completion.
    * ``min_run_time``: seconds of timed runs per memory format (after ``warmup`` untimed runs).

    The model runs in eval mode under ``torch.inference_mode``; its parameters' original
    storage (device, dtype, memory format) and training flags are restored afterwards.
    """
    inputs = _as_tuple(example_input)
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


# --------------------------------------------------------------------------------------------
# Profiles and comparisons
# --------------------------------------------------------------------------------------------


def _input_shape(input_size: int | Sequence[int], batch_size: int, in_chans: int) -> list[int]:
    if isinstance(input_size, int):
        h = w = input_size
    else:
        h, w = (int(s) for s in input_size)
    return [int(batch_size), int(in_chans), int(h), int(w)]


def _make_input(model: nn.Module, shape: Sequence[int]) -> torch.Tensor:
    # Match the model's device and floating dtype so counting works on e.g. half/meta models;
    # a fixed seed keeps data-dependent models (if any) reproducible.
    device = _resolve_device(model, None)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if device.type == "meta":
        return torch.empty(*shape, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def profile(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    batch_size: int = 1,
    in_chans: int = 3,
    parts: PartsSpec | None = None,
    latency: bool = True,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype = torch.float32,
    min_run_time: float = 1.0,
    device: str | torch.device | None = None,
    warmup: int = 3,
    name: str = "",
) -> ModelProfile:
    """Count ops (see :func:`count_ops`) and, if ``latency``, time (see :func:`measure_latency`)
    ``model`` on a random ``(batch_size, in_chans, H, W)`` input; ``input_size`` is H=W or (H, W).
    """
    shape = _input_shape(input_size, batch_size, in_chans)
    x = _make_input(model, shape)
    ops = count_ops(
        model, x, parts=parts if parts is not None else getattr(model, "cost_parts", None)
    )
    lat = None
    if latency:
        lat = measure_latency(
            model,
            x,
            threads=threads,
            memory_format=memory_format,
            dtype=dtype,
            min_run_time=min_run_time,
            device=device,
            warmup=warmup,
        )
    n_threads = lat.threads if lat is not None else threads
    return ModelProfile(
        name=name, input_shape=shape, ops=ops, latency=lat, machine=machine_info(n_threads)
    )


def compare(
    models: Mapping[str, nn.Module],
    input_size: int | Sequence[int],
    *,
    batch_size: int = 1,
    in_chans: int = 3,
    parts: Mapping[str, PartsSpec] | None = None,
    latency: bool = True,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype = torch.float32,
    min_run_time: float = 1.0,
    rounds: int = 3,
    device: str | torch.device | None = None,
    warmup: int = 3,
    reference: str = "baseline",
) -> dict[str, Any]:
    """Profile several models in the same process, thread count and input, interleaved.

    ``parts`` maps a model name to its parts spec (models without one get one part per child).
    Timing interleaves the models over ``rounds`` (each gets ``min_run_time`` seconds per memory
    format in total). Returns a dict with keys

    * ``"reference"``: the reference model's name,
    * ``"machine"``: :func:`machine_info`,
    * ``"settings"``: input shape, dtype, threads, memory_format, min_run_time, rounds, device,
    * ``"profiles"``: ``{name: ModelProfile}``,
    * ``"speedup"``: ``{name: reference median latency / name's median latency}`` (``None``
      without latency),
    * ``"mac_ratio"``: ``{name: reference MACs / name's MACs}`` (``None`` if 0 MACs).

    Use :func:`comparison_to_dict` for a JSON-ready copy and :func:`format_table` to print it.
    """
    if reference not in models:
        raise KeyError(f"reference {reference!r} not in models {list(models)}")
    parts = parts or {}
    unknown = set(parts) - set(models)
    if unknown:
        raise KeyError(f"parts given for unknown models {sorted(unknown)}")
    shape = _input_shape(input_size, batch_size, in_chans)
    inputs = {name: (_make_input(m, shape),) for name, m in models.items()}
    # Models that declare their own `cost_parts` (WAENet, PlainNet) are grouped by them.
    ops = {
        name: count_ops(m, inputs[name], parts=parts.get(name, getattr(m, "cost_parts", None)))
        for name, m in models.items()
    }

    n_threads = int(threads) if threads is not None else torch.get_num_threads()
    lats: dict[str, Latency | None] = dict.fromkeys(models)
    if latency:
        lats.update(
            measure_interleaved(
                models,
                inputs,
                threads=n_threads,
                memory_format=memory_format,
                dtype=dtype,
                min_run_time=min_run_time,
                device=device,
                warmup=warmup,
                rounds=rounds,
            )
        )
    machine = machine_info(n_threads)
    profiles = {
        name: ModelProfile(
            name=name, input_shape=shape, ops=ops[name], latency=lats[name], machine=machine
        )
        for name in models
    }
    ref = profiles[reference]
    speedup: dict[str, float | None] = {}
    mac_ratio: dict[str, float | None] = {}
    for name, p in profiles.items():
        if ref.latency is not None and p.latency is not None and p.latency.median_ms > 0:
            speedup[name] = ref.latency.median_ms / p.latency.median_ms
        else:
            speedup[name] = None
        mac_ratio[name] = ref.macs / p.macs if p.macs > 0 else None
    return {
        "reference": reference,
        "machine": machine,
        "settings": {
            "input_shape": shape,
            "dtype": str(dtype).replace("torch.", ""),
            "threads": n_threads,
            "memory_format": (
                memory_format if isinstance(memory_format, str) else _FORMAT_NAMES[memory_format]
            ),
            "min_run_time": float(min_run_time),
            "rounds": int(rounds),
            "warmup": int(warmup),
            "device": str(device) if device is not None else None,
            "latency": bool(latency),
        },
        "profiles": profiles,
        "speedup": speedup,
        "mac_ratio": mac_ratio,
    }


def comparison_to_dict(result: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-serialisable copy of a :func:`compare` result (profiles turned into dicts)."""
    out = dict(result)
    out["profiles"] = {
        name: p.to_dict() if isinstance(p, ModelProfile) else p
        for name, p in result["profiles"].items()
    }
    return out


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def format_table(result: Mapping[str, Any], *, parts: bool = True) -> str:
    """Readable side-by-side table of a :func:`compare` result (or its JSON round-trip).

    Columns: model, GMACs, params (M), latency median ± IQR (ms), number of measurements,
    memory format, speed-up and MAC ratio vs the reference. The header line states the CPU,
    threads, batch size, input shape, dtype, device and torch version. With ``parts``, per-part
    GMACs and parameters follow.
    """
    res = comparison_to_dict(result)
    machine, settings = res["machine"], res["settings"]
    shape = settings["input_shape"]
    header = (
        f"# CPU: {machine['cpu_model']} ({machine.get('usable_cores')} usable cores) | "
        f"threads: {settings['threads']} | batch: {shape[0]} | "
        f"input: {'x'.join(str(s) for s in shape[1:])} | dtype: {settings['dtype']} | "
        f"device: {settings['device'] or 'model'} | torch {machine['torch_version']}"
    )
    note = (
        f"# MACs = FlopCounterMode FLOPs / 2 (conv/matmul only); reference: {res['reference']}; "
        f"latency = median ± IQR over timed blocks, rounds: {settings['rounds']}"
    )
    cols = [
        "model",
        "GMACs",
        "params (M)",
        "latency (ms)",
        "n",
        "mem format",
        "speed-up",
        "MAC ratio",
    ]
    rows: list[list[str]] = []
    for name, p in res["profiles"].items():
        lat = p["latency"]
        rows.append(
            [
                name,
                f"{p['ops']['macs'] / 1e9:.3f}",
                f"{p['ops']['params'] / 1e6:.3f}",
                f"{lat['median_ms']:.3f} ± {lat['iqr_ms']:.3f}" if lat else "-",
                str(lat["n_measurements"]) if lat else "-",
                lat["memory_format"] if lat else "-",
                _fmt_ratio(res["speedup"].get(name)),
                _fmt_ratio(res["mac_ratio"].get(name)),
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [header, note, line(cols), line(["-" * w for w in widths]), *map(line, rows)]
    if parts:
        out.append("")
        out.append("# per part: GMACs / params (M)")
        for name, p in res["profiles"].items():
            items = [
                f"{label} {part['macs'] / 1e9:.3f} / {part['params'] / 1e6:.3f}"
                for label, part in p["ops"]["parts"].items()
                if part["flops"] or part["params"] or label != OTHER
            ]
            out.append(f"{name}: " + " | ".join(items))
    return "\n".join(out)
