"""Profiles of one model and side-by-side comparisons: counts, latency, machine, ratios."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import nn

from ..data.transforms import check_input_size
from ..runtime import check_device
from ._common import MeasureError, check_timing, resolve_device
from .latency import Latency, format_name, measure_interleaved, measure_latency
from .machine import machine_info
from .ops import OpCount, PartsSpec, count_ops
from .report import comparison_to_dict, format_profile, format_table

if TYPE_CHECKING:
    from .baselines import BaselineComparison

__all__ = ["Comparison", "ModelProfile", "compare", "profile"]


@dataclass(repr=False)
class ModelProfile:
    """Counts plus (optionally) latency of one model at one input shape.

    ``print(p)`` (and the interpreter's echo) shows it as a table; ``to_dict()`` has it all.
    """

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

    def __str__(self) -> str:
        return format_profile(self)

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(str(self))


class Comparison(dict):
    """:func:`compare`'s result: a dict (keys documented there) that prints as a table."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (see :func:`comparison_to_dict`)."""
        return comparison_to_dict(self)

    def __str__(self) -> str:
        return format_table(self)

    __repr__ = __str__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(str(self))


def input_shape(input_size: int | Sequence[int], batch_size: int, in_chans: int) -> list[int]:
    """``[N, C, H, W]`` from ``input_size`` (H=W, or (H, W)), batch size and channels.

    Checked here, before any model is built or run: an empty batch, no channels or a size
    outside 8..4096 would time nothing (or exhaust memory), so they raise a WAEError."""
    h, w = check_input_size(input_size, "input_size (--input-size)")
    for what, v in (("batch_size (--batch-size)", batch_size), ("in_chans (--in-chans)", in_chans)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise MeasureError(f"{what} must be an integer >= 1, got {v!r}.")
    return [batch_size, in_chans, h, w]


def _make_input(model: nn.Module, shape: Sequence[int]) -> torch.Tensor:
    # Match the model's device and floating dtype so counting works on e.g. half/meta models;
    # a fixed seed keeps data-dependent models (if any) reproducible.
    device = resolve_device(model, None)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if device.type == "meta":
        return torch.empty(*shape, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


@overload
def profile(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    baselines: Literal[False] = False,
    **kwargs: Any,
) -> ModelProfile: ...


@overload
def profile(
    model: nn.Module, input_size: int | Sequence[int], *, baselines: Literal[True], **kwargs: Any
) -> BaselineComparison: ...


def profile(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    batch_size: int = 1,
    in_chans: int | None = None,
    parts: PartsSpec | None = None,
    latency: bool = True,
    threads: int | None = None,
    memory_format: str | torch.memory_format = "best",
    dtype: torch.dtype = torch.float32,
    min_run_time: float = 1.0,
    device: str | torch.device | None = None,
    warmup: int = 3,
    name: str = "",
    baselines: bool = False,
) -> ModelProfile | BaselineComparison:
    """Count ops (see :func:`count_ops`) and, if ``latency``, time (see :func:`measure_latency`)
    ``model`` on a random ``(batch_size, in_chans, H, W)`` input; ``input_size`` is H=W or (H, W).
    ``in_chans`` defaults to the model's ``in_chans`` attribute, else 3.

    ``print(wae.profile(net, 224))`` shows a table. With ``baselines=True`` the model is
    compared, interleaved, with its backbone at full and at half resolution, as ``wae profile``
    does (see :func:`compare_baselines`; ``name`` is then unused, ``parts`` applies to
    ``model``); the result is a :class:`BaselineComparison`.
    """
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    timing = dict(threads=threads, memory_format=memory_format, dtype=dtype)
    timing.update(min_run_time=min_run_time, device=device, warmup=warmup)
    if baselines:
        # Imported here: baselines builds on compare(), defined below in this module.
        from .baselines import compare_baselines

        return compare_baselines(
            model,
            input_size,
            batch_size=batch_size,
            in_chans=in_chans,
            parts=parts,
            latency=latency,
            **timing,
        )
    shape = input_shape(input_size, batch_size, in_chans)
    x = _make_input(model, shape)
    ops = count_ops(
        model, x, parts=parts if parts is not None else getattr(model, "cost_parts", None)
    )
    lat = measure_latency(model, x, **timing) if latency else None
    n_threads = lat.threads if lat is not None else threads
    return ModelProfile(
        name=name, input_shape=shape, ops=ops, latency=lat, machine=machine_info(n_threads)
    )


def _ratios(profiles: Mapping[str, ModelProfile], reference: str) -> dict[str, dict]:
    """Speed-up (latency) and MAC ratio of every model against ``reference``."""
    ref = profiles[reference]
    speedup: dict[str, float | None] = {}
    mac_ratio: dict[str, float | None] = {}
    for name, p in profiles.items():
        if ref.latency is not None and p.latency is not None and p.latency.median_ms > 0:
            speedup[name] = ref.latency.median_ms / p.latency.median_ms
        else:
            speedup[name] = None
        mac_ratio[name] = ref.macs / p.macs if p.macs > 0 else None
    return {"speedup": speedup, "mac_ratio": mac_ratio}


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
) -> Comparison:
    """Profile several models in the same process, thread count and input, interleaved.

    ``parts`` maps a model name to its parts spec (models without one get one part per child).
    Timing interleaves the models over ``rounds`` (each gets ``min_run_time`` seconds per memory
    format in total). Returns a :class:`Comparison` (a dict that prints as a table) with keys

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
    shape = input_shape(input_size, batch_size, in_chans)
    if latency:
        check_timing(threads=threads, min_run_time=min_run_time, rounds=rounds, warmup=warmup)
    if device is not None:
        device = check_device(device, "device (--device)")
    inputs = {name: (_make_input(m, shape),) for name, m in models.items()}
    # Models that declare their own `cost_parts` (WAENet, PlainNet) are grouped by them.
    ops = {
        name: count_ops(m, inputs[name], parts=parts.get(name, getattr(m, "cost_parts", None)))
        for name, m in models.items()
    }

    n_threads = int(threads) if threads is not None else torch.get_num_threads()
    settings = dict(memory_format=memory_format, dtype=dtype, min_run_time=min_run_time)
    settings.update(device=device, warmup=warmup, rounds=rounds)
    lats: dict[str, Latency | None] = dict.fromkeys(models)
    if latency:
        lats.update(measure_interleaved(models, inputs, threads=n_threads, **settings))
    machine = machine_info(n_threads)
    profiles = {
        name: ModelProfile(
            name=name, input_shape=shape, ops=ops[name], latency=lats[name], machine=machine
        )
        for name in models
    }
    return Comparison(
        reference=reference,
        machine=machine,
        settings=_settings(shape, n_threads, latency=latency, **settings),
        profiles=profiles,
        **_ratios(profiles, reference),
    )


def _settings(
    shape: list[int],
    threads: int,
    *,
    latency: bool,
    memory_format: str | torch.memory_format,
    dtype: torch.dtype,
    min_run_time: float,
    device: torch.device | None,
    warmup: int,
    rounds: int,
) -> dict[str, Any]:
    """The "settings" entry of a :class:`Comparison` (plain JSON values)."""
    return {
        "input_shape": shape,
        "dtype": str(dtype).replace("torch.", ""),
        "threads": threads,
        "memory_format": format_name(memory_format),
        "min_run_time": float(min_run_time),
        "rounds": int(rounds),
        "warmup": int(warmup),
        "device": str(device) if device is not None else None,
        "latency": bool(latency),
    }
