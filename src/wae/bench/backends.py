"""Backends: one model made ready to run, as a callable the library timer can time.

* ``eager``: PyTorch eager, NCHW (contiguous) parameters and input;
* ``channels_last``: PyTorch eager with channels_last parameters; the NCHW input is
  converted inside the timed call (a deployment receives NCHW images);
* ``compile``: ``torch.compile`` (inductor, weight freezing) of the channels_last model,
  compiled per thread count and batch size (inductor bakes both in); compile time is
  recorded, a failure is recorded, not raised;
* ``optimized``: :func:`wae.optimize.optimize_for_inference` (BN folding, WAE norm/head
  folding, oneDNN conv+add+ReLU fusion with pre-packed weights, channels_last);
* ``ort``: ONNX Runtime (graph optimisation level ALL) on the exported model;
* ``ort_optimized``: ONNX Runtime on the export of ``optimize_for_inference(...,
  fuse_mkldnn=False)`` (the same rewrites minus the oneDNN-only ones).

On CUDA, ``amp`` runs the PyTorch backends under autocast (:func:`wae.runtime.autocast`),
and ONNX Runtime uses its CUDA provider with I/O bound on the device.

What does not depend on the thread count or batch size (re-laid-out and optimised copies,
the exported ONNX files) is prepared once per backbone and kept in a :class:`BackboneCache`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import cost
from ..runtime import autocast
from .models import BenchError

__all__ = [
    "ALL_BACKENDS",
    "PYTORCH_TUNED",
    "RUNTIME",
    "BackboneCache",
    "BackendUnavailable",
    "Prepared",
    "Runner",
    "first_line",
    "prepare_backend",
]

ALL_BACKENDS = ("eager", "channels_last", "compile", "optimized", "ort", "ort_optimized")
#: Backends whose best is "PyTorch best of channels_last / torch.compile".
PYTORCH_TUNED = ("channels_last", "compile")
#: Backends sharing a runtime (and so a thread pool); see wae.bench.matrix.measure_grouped.
RUNTIME = {
    "eager": "torch",
    "channels_last": "torch",
    "optimized": "torch",
    "compile": "inductor",
    "ort": "onnxruntime",
    "ort_optimized": "onnxruntime",
}


class BackendUnavailable(RuntimeError):
    """A backend that could not be prepared for a model (recorded in the results)."""


class Runner(nn.Module):
    """An nn.Module around a prepared callable, holding no parameters itself.

    The library timer converts a model's parameters to the requested layout/dtype before
    timing; each backend has prepared its model exactly as it should run, so the runner hides
    it from that conversion (the callable is not registered as a submodule).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        object.__setattr__(self, "_fn", fn)

    def forward(self, *x: torch.Tensor) -> Any:
        return self._fn(*x)


@dataclass
class Prepared:
    """A backend ready to time: the runner, setup seconds and a note for the table."""

    runner: Runner
    setup_s: float
    note: str = ""
    keep: list[Any] = field(default_factory=list)  # objects that must outlive the timing


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for a table."""
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _torch_runner(
    model: nn.Module, device: torch.device, amp: bool, fmt: torch.memory_format
) -> Runner:
    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return model(x.contiguous(memory_format=fmt))

    return Runner(run)


def _ort_runner(session: Any, device: torch.device) -> Runner:
    import numpy as np

    name_in = session.get_inputs()[0].name
    name_out = session.get_outputs()[0].name
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()

        def run_cuda(x: torch.Tensor) -> Any:
            # Bind the device tensor directly: no host round trip inside the timed call.
            x = x.contiguous()
            binding = session.io_binding()
            binding.bind_input(name_in, "cuda", index, np.float32, list(x.shape), x.data_ptr())
            binding.bind_output(name_out, "cuda", index)
            session.run_with_iobinding(binding)
            return binding

        return Runner(run_cuda)

    def run_cpu(x: torch.Tensor) -> Any:
        return session.run([name_out], {name_in: x.numpy()})[0]

    return Runner(run_cpu)


class BackboneCache:
    """Per-backbone cache of what does not depend on thread count or batch size: the
    re-laid-out / optimised PyTorch copies, the exported ONNX files (in `workdir`) and the
    MACs per image."""

    def __init__(self, workdir: Path, device: torch.device, amp: bool = False) -> None:
        self.workdir = workdir
        self.device = device
        self.amp = amp
        self.macs: dict[str, float | None] = {}
        self.modules: dict[tuple[str, str], nn.Module] = {}
        self.onnx: dict[tuple[str, str], Path | BaseException] = {}
        self.setup_s: dict[tuple[str, str], float] = {}

    def module(self, name: str, backend: str, model: nn.Module) -> nn.Module:
        """`model` on the device as `backend` (eager / channels_last / optimized) runs it."""
        from ..optimize import optimize_for_inference

        key = (name, backend)
        if key not in self.modules:
            t0 = time.perf_counter()
            if backend == "eager":
                m = model.to(self.device)
            elif backend == "channels_last":
                m = copy.deepcopy(model).to(self.device, memory_format=torch.channels_last)
            else:  # optimized; under AMP without the fused fp32-only oneDNN ops, so autocast
                # still applies to every convolution
                m = optimize_for_inference(
                    copy.deepcopy(model).to(self.device),
                    inplace=True,
                    fuse_mkldnn=False if self.amp else None,
                )
            self.modules[key] = m
            self.setup_s[key] = time.perf_counter() - t0
        return self.modules[key]

    def macs_per_image(
        self, models: Mapping[str, nn.Module], x: torch.Tensor
    ) -> dict[str, float | None]:
        """MACs of one image per model (FlopCounterMode, see wae.cost), counted once."""
        for name, m in models.items():
            if name not in self.macs:
                try:
                    self.macs[name] = cost.count_ops(m, x[:1].to(self.device)).macs
                except Exception:  # informative only: never fail a benchmark over it
                    self.macs[name] = None
        return {name: self.macs[name] for name in models}

    def onnx_file(self, name: str, backend: str, model: nn.Module, example: torch.Tensor) -> Path:
        """The ONNX export of `model` (ort) or of its optimised rewrite (ort_optimized)."""
        from ..export import export_onnx
        from ..optimize import optimize_for_inference

        key = (name, backend)
        if key not in self.onnx:
            t0 = time.perf_counter()
            try:
                src = copy.deepcopy(model).to("cpu")
                if backend == "ort_optimized":
                    src = optimize_for_inference(
                        src, inplace=True, fuse_mkldnn=False, channels_last=False
                    )
                path = self.workdir / f"{name}-{backend}.onnx"
                size = tuple(example.shape[-2:])
                self.onnx[key] = export_onnx(src, path, size, in_chans=example.shape[1])
            except Exception as e:  # recorded as this backend's failure, every config
                self.onnx[key] = e
            self.setup_s[key] = time.perf_counter() - t0
        out = self.onnx[key]
        if isinstance(out, BaseException):
            raise BackendUnavailable(f"export failed: {type(out).__name__}: {first_line(out)}")
        return out


def prepare_backend(
    backend: str,
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int,
    amp: bool,
    cache: BackboneCache,
) -> Prepared:
    """Make `model` ready to run on `backend`; raises BackendUnavailable with the reason."""
    from ..export import onnx_session

    device = cache.device
    t0 = time.perf_counter()
    if backend in ("eager", "channels_last", "optimized"):
        m = cache.module(name, backend, model)
        fmt = torch.contiguous_format if backend == "eager" else torch.channels_last
        note = ""
        if backend == "optimized":
            note = "oneDNN fusion" if _has_fused(m) else "BN fold + channels_last"
        return Prepared(_torch_runner(m, device, amp, fmt), cache.setup_s[(name, backend)], note)
    if backend == "compile":
        return _prepare_compile(model, example, threads=threads, device=device, amp=amp)
    if backend in ("ort", "ort_optimized"):
        path = cache.onnx_file(name, backend, model, example)
        try:
            session = onnx_session(path, threads, device=device)
        except Exception as e:
            raise BackendUnavailable(f"{type(e).__name__}: {first_line(e)}") from e
        note = "float32 (AMP does not apply to the ONNX model)" if amp else ""
        setup = cache.setup_s[(name, backend)] + time.perf_counter() - t0
        return Prepared(_ort_runner(session, device), setup, note, [session])
    raise BenchError(f"Unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}.")


def _has_fused(model: nn.Module) -> bool:
    from ..optimize import FusedConv2d

    return any(isinstance(m, FusedConv2d) for m in model.modules())


def _prepare_compile(
    model: nn.Module, example: torch.Tensor, *, threads: int, device: torch.device, amp: bool
) -> Prepared:
    """torch.compile (inductor, freezing) compiled and warmed up at this thread count."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    t0 = time.perf_counter()
    torch._dynamo.reset()  # a fresh compile: inductor bakes thread count and shapes in
    m = copy.deepcopy(model).to(device, memory_format=torch.channels_last)
    compiled = torch.compile(m, dynamic=False)
    runner = _torch_runner(compiled, device, amp, torch.channels_last)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # Freezing turns weights into constants (BN folding, weight pre-packing); it must be
        # on while the first calls compile, and under inference mode as the timer runs.
        with inductor_config.patch(freezing=True), torch.inference_mode():
            x = example.to(device)
            runner(x)
            runner(x)
    except Exception as e:
        msg = f"torch.compile failed: {type(e).__name__}: {first_line(e)}"
        raise BackendUnavailable(msg) from e
    finally:
        torch.set_num_threads(old)
    secs = time.perf_counter() - t0
    return Prepared(runner, secs, f"compile + warm-up {secs:.0f} s", [compiled])
