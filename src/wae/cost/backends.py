"""Backends: one model made ready to run, as a callable the library timer can time.

A service (`wae bench`, the deploy-speed columns of `wae accelerate`, `wae demo` and
`wae reproduce` use it; :func:`wae.cost.compare_batches`):

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
  fuse_mkldnn=False)`` (the same rewrites minus the oneDNN-only ones);
* ``openvino``: OpenVINO (``pip install 'wae[openvino]'``) on the ``ort`` backend's ONNX file,
  latency hint, one stream, the thread count fixed.

Each backend runs the precisions of :data:`PRECISIONS` (see :mod:`wae.precision`): the PyTorch
backends fp32, bf16 and fp16 with the model cast once and the float32 input cast inside the
timed call (a deployment receives float32 images); ONNX Runtime fp32 and int8 (static QDQ
quantization of its export, :func:`wae.quantize.quantize_onnx_int8`); OpenVINO fp32, bf16
(its inference-precision hint; the precision it actually ran is noted) and int8 (NNCF,
:func:`wae.quantize.quantize_openvino_int8`). The int8 models are calibrated on seeded random
images: enough for timing, which does not depend on the scales; accuracy at int8 is measured
on real images by ``wae eval --precision int8`` and ``wae export --precision int8``.

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

from ..errors import first_line
from ..precision import FLOAT_DTYPES, cast_for_inference
from ..runtime import autocast
from ._common import MeasureError
from .latency import Latency, measure_interleaved
from .ops import count_ops

__all__ = [
    "ALL_BACKENDS",
    "CALIBRATION_IMAGES",
    "PRECISIONS",
    "PYTORCH_TUNED",
    "RUNTIME",
    "BackboneCache",
    "BackendUnavailable",
    "Prepared",
    "Runner",
    "measure_grouped",
    "prepare_backend",
]

ALL_BACKENDS = (
    "eager",
    "channels_last",
    "compile",
    "optimized",
    "ort",
    "ort_optimized",
    "openvino",
)
#: Backends whose best is "PyTorch best of channels_last / torch.compile".
PYTORCH_TUNED = ("channels_last", "compile")
#: Backends sharing a runtime (and so a thread pool); see :func:`measure_grouped`.
RUNTIME = {
    "eager": "torch",
    "channels_last": "torch",
    "optimized": "torch",
    "compile": "inductor",
    "ort": "onnxruntime",
    "ort_optimized": "onnxruntime",
    "openvino": "openvino",
}
_TORCH_PRECISIONS = ("fp32", "bf16", "fp16")
#: The precisions each backend runs; a (backend, precision) pair not listed is not timed.
PRECISIONS = {
    "eager": _TORCH_PRECISIONS,
    "channels_last": _TORCH_PRECISIONS,
    "compile": _TORCH_PRECISIONS,
    "optimized": _TORCH_PRECISIONS,
    "ort": ("fp32", "int8"),
    "ort_optimized": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
#: Seeded random images the benchmark's int8 models are calibrated on.
CALIBRATION_IMAGES = 8


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


def _torch_runner(
    model: nn.Module,
    device: torch.device,
    amp: bool,
    fmt: torch.memory_format,
    precision: str = "fp32",
) -> Runner:
    dtype = FLOAT_DTYPES[precision]

    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp and precision == "fp32"):
            return model(x.to(dtype).contiguous(memory_format=fmt))

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
    re-laid-out / optimised / cast PyTorch copies, the exported (and quantized) ONNX and
    OpenVINO files (in `workdir`) and the MACs per image."""

    def __init__(self, workdir: Path, device: torch.device, amp: bool = False) -> None:
        self.workdir = workdir
        self.device = device
        self.amp = amp
        self.macs: dict[str, float | None] = {}
        self.modules: dict[tuple[str, str, str], nn.Module] = {}
        self.files: dict[tuple[str, str, str], Path | BaseException] = {}
        self.setup_s: dict[tuple[str, str, str], float] = {}

    def module(
        self, name: str, backend: str, model: nn.Module, precision: str = "fp32"
    ) -> nn.Module:
        """`model` on the device as `backend` (eager / channels_last / optimized) runs it,
        cast once to `precision`."""
        from ..optimize import optimize_for_inference

        key = (name, backend, precision)
        if key not in self.modules:
            t0 = time.perf_counter()
            if backend == "eager":
                m = model.to(self.device)
            elif backend == "channels_last":
                m = copy.deepcopy(model).to(self.device, memory_format=torch.channels_last)
            else:  # optimized; under AMP or cast, without the fused fp32-only oneDNN ops
                m = optimize_for_inference(
                    copy.deepcopy(model).to(self.device),
                    inplace=True,
                    fuse_mkldnn=False if self.amp or precision != "fp32" else None,
                )
            self.modules[key] = cast_for_inference(m, precision)
            self.setup_s[key] = time.perf_counter() - t0
        return self.modules[key]

    def macs_per_image(
        self, models: Mapping[str, nn.Module], x: torch.Tensor
    ) -> dict[str, float | None]:
        """MACs of one image per model (FlopCounterMode, see wae.cost), counted once."""
        for name, m in models.items():
            if name not in self.macs:
                try:
                    self.macs[name] = count_ops(m, x[:1].to(self.device)).macs
                except Exception:  # informative only: never fail a benchmark over it
                    self.macs[name] = None
        return {name: self.macs[name] for name in models}

    def _file(self, key: tuple[str, str, str], make: Callable[[], Path]) -> Path:
        """The file `make` writes, made once per key; a failure is kept and re-raised as
        BackendUnavailable for every config."""
        if key not in self.files:
            t0 = time.perf_counter()
            try:
                self.files[key] = make()
            except Exception as e:  # recorded as this backend's failure, every config
                self.files[key] = e
            self.setup_s[key] = time.perf_counter() - t0
        out = self.files[key]
        if isinstance(out, BaseException):
            what = "export" if key[2] == "fp32" else f"{key[2]} quantization"
            raise BackendUnavailable(f"{what} failed: {first_line(out, with_type=True)}")
        return out

    def onnx_file(self, name: str, backend: str, model: nn.Module, example: torch.Tensor) -> Path:
        """The ONNX export of `model` (ort, openvino) or of its optimised rewrite
        (ort_optimized)."""
        from ..export import export_onnx
        from ..optimize import optimize_for_inference

        source = _onnx_source(backend)

        def make() -> Path:
            src = copy.deepcopy(model).to("cpu")
            if source == "ort_optimized":
                src = optimize_for_inference(
                    src, inplace=True, fuse_mkldnn=False, channels_last=False
                )
            path = self.workdir / f"{name}-{source}.onnx"
            size = tuple(example.shape[-2:])
            return export_onnx(src, path, size, in_chans=example.shape[1])

        return self._file((name, source, "fp32"), make)

    def int8_file(self, name: str, backend: str, model: nn.Module, example: torch.Tensor) -> Path:
        """`backend`'s int8 model: the ONNX export quantized by ONNX Runtime (QDQ) for ort /
        ort_optimized, by NNCF into OpenVINO IR for openvino; calibrated on
        CALIBRATION_IMAGES seeded random images."""
        from .. import quantize

        onnx = self.onnx_file(name, backend, model, example)

        def make() -> Path:
            gen = torch.Generator().manual_seed(1)
            calib = torch.rand((CALIBRATION_IMAGES, *example.shape[1:]), generator=gen)
            if backend == "openvino":
                dst = self.workdir / f"{name}-openvino-int8.xml"
                return quantize.quantize_openvino_int8(onnx, dst, calib)
            dst = self.workdir / f"{name}-{backend}-int8.onnx"
            return quantize.quantize_onnx_int8(onnx, dst, calib)

        return self._file((name, backend, "int8"), make)

    def setup_of(self, name: str, backend: str, precision: str) -> float:
        """Seconds spent preparing (exporting, quantizing, casting) this candidate's model."""
        keys = [(name, backend, precision), (name, _onnx_source(backend), "fp32")]
        return sum(self.setup_s.get(k, 0.0) for k in dict.fromkeys(keys))


def _onnx_source(backend: str) -> str:
    """Whose ONNX export `backend` runs or quantizes: ort_optimized its own (of the optimised
    rewrite), ort and openvino the plain one."""
    return "ort_optimized" if backend == "ort_optimized" else "ort"


def prepare_backend(
    backend: str,
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int,
    amp: bool,
    cache: BackboneCache,
    precision: str = "fp32",
) -> Prepared:
    """Make `model` ready to run on `backend` at `precision`; raises BackendUnavailable with
    the reason."""
    if backend not in ALL_BACKENDS:
        raise MeasureError(
            f"Unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)} (--backends)."
        )
    if precision not in PRECISIONS[backend]:
        raise BackendUnavailable(f"{backend} does not run {precision}")
    device = cache.device
    if backend in ("eager", "channels_last", "optimized"):
        m = cache.module(name, backend, model, precision)
        fmt = torch.contiguous_format if backend == "eager" else torch.channels_last
        note = ""
        if backend == "optimized":
            note = "oneDNN fusion" if _has_fused(m) else "BN fold + channels_last"
        runner = _torch_runner(m, device, amp, fmt, precision)
        if precision != "fp32":
            _try_once(runner, example, device)
        return Prepared(runner, cache.setup_of(name, backend, precision), note)
    if backend == "compile":
        return _prepare_compile(
            model, example, threads=threads, device=device, amp=amp, precision=precision
        )
    if backend == "openvino":
        return _prepare_openvino(name, model, example, threads, precision, cache)
    return _prepare_ort(backend, name, model, example, threads, amp, precision, cache)


def _try_once(runner: Runner, example: torch.Tensor, device: torch.device) -> None:
    """One untimed call, so that an operator missing at this dtype is recorded, not raised
    in the middle of the timing."""
    try:
        with torch.inference_mode():
            runner(example.to(device))
    except Exception as e:
        raise BackendUnavailable(first_line(e, with_type=True)) from e


def _prepare_ort(
    backend: str,
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    threads: int,
    amp: bool,
    precision: str,
    cache: BackboneCache,
) -> Prepared:
    from ..export import onnx_session

    t0 = time.perf_counter()
    if precision == "int8":
        path = cache.int8_file(name, backend, model, example)
    else:
        path = cache.onnx_file(name, backend, model, example)
    try:
        session = onnx_session(path, threads, device=cache.device)
    except Exception as e:
        raise BackendUnavailable(first_line(e, with_type=True)) from e
    note = "float32 (AMP does not apply to the ONNX model)" if amp else ""
    note = "static QDQ, per-channel, U8/S8" if precision == "int8" else note
    setup = cache.setup_of(name, backend, precision) + time.perf_counter() - t0
    return Prepared(_ort_runner(session, cache.device), setup, note, [session])


def _prepare_openvino(
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    threads: int,
    precision: str,
    cache: BackboneCache,
) -> Prepared:
    """OpenVINO's CPU plugin on the ONNX export (fp32, bf16 hint) or its NNCF int8 IR."""
    if cache.device.type != "cpu":
        raise BackendUnavailable("wae benchmarks OpenVINO on the CPU only")
    t0 = time.perf_counter()
    try:
        from .. import openvino_rt

        openvino_rt.require_openvino()
        if precision == "int8":
            path = cache.int8_file(name, "openvino", model, example)
        else:
            path = cache.onnx_file(name, "openvino", model, example)
        compiled = openvino_rt.ov_compile(path, threads=threads, precision=precision)
        ran = openvino_rt.ov_precision(compiled)
    except BackendUnavailable:
        raise
    except Exception as e:
        raise BackendUnavailable(first_line(e, with_type=True)) from e
    if precision == "bf16" and ran != "bf16":  # timing it as bf16 would mislabel f32 figures
        raise BackendUnavailable(f"OpenVINO runs {ran} here, not bf16 (no bf16 on this CPU)")
    note = f"inference precision {ran}" + (" (NNCF int8 IR)" if precision == "int8" else "")

    def run(x: torch.Tensor) -> Any:
        return openvino_rt.ov_run(compiled, x)

    setup = cache.setup_of(name, "openvino", precision) + time.perf_counter() - t0
    return Prepared(Runner(run), setup, note, [compiled])


def _has_fused(model: nn.Module) -> bool:
    from ..optimize import FusedConv2d

    return any(isinstance(m, FusedConv2d) for m in model.modules())


def _prepare_compile(
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int,
    device: torch.device,
    amp: bool,
    precision: str = "fp32",
) -> Prepared:
    """torch.compile (inductor, freezing) compiled and warmed up at this thread count."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    t0 = time.perf_counter()
    torch._dynamo.reset()  # a fresh compile: inductor bakes thread count and shapes in
    m = copy.deepcopy(model).to(device, memory_format=torch.channels_last)
    compiled = torch.compile(cast_for_inference(m, precision), dynamic=False)
    runner = _torch_runner(compiled, device, amp, torch.channels_last, precision)
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
        msg = f"torch.compile failed: {first_line(e, with_type=True)}"
        raise BackendUnavailable(msg) from e
    finally:
        torch.set_num_threads(old)
    secs = time.perf_counter() - t0
    return Prepared(runner, secs, f"compile + warm-up {secs:.0f} s", [compiled])


def measure_grouped(
    runners: Mapping[str, Runner],
    x: torch.Tensor,
    *,
    threads: int,
    device: torch.device,
    min_run_time: float,
    warmup: int,
    rounds: int,
) -> dict[str, Latency]:
    """Time candidates ("<model>/<backend>/<precision>" -> runner) with the library timer,
    one runtime at a time.

    Within a runtime, models and backends are interleaved over `rounds` (fair against slow
    drift). Runtimes are not interleaved with each other: each has its own worker threads,
    which busy-wait for a while after a call (OpenMP, ONNX Runtime's pool), and with as many
    threads as cores the idle runtime's spinning threads would steal cores from the one
    being timed. A short pause between runtimes lets them go to sleep.
    """
    groups: dict[str, dict[str, Runner]] = {}
    for key, runner in runners.items():
        groups.setdefault(RUNTIME[key.split("/")[-2]], {})[key] = runner
    out: dict[str, Latency] = {}
    for i, group in enumerate(groups.values()):
        if i and threads > 1:
            time.sleep(0.5)
        out.update(
            measure_interleaved(
                group,
                {k: (x,) for k in group},
                threads=threads,
                memory_format=torch.contiguous_format,  # the runners convert where they should
                dtype=torch.float32,
                min_run_time=min_run_time,
                device=device,
                warmup=warmup,
                rounds=rounds,
            )
        )
    return out
