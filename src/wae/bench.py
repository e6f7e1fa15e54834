"""Deployment benchmark: WAE against the full- and half-resolution network, per backend.

For one backbone, input size, batch size and thread count (a "config"), three models are
timed: ``full`` (the backbone at full resolution), ``half`` (the backbone on the image resized
to half size, the paper's I_R) and ``wae`` (WAENet), each on every backend:

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

Every rewrite is applied to all three models alike. Candidates are timed with the library's
timer (:mod:`wae.cost`: ``torch.utils.benchmark`` blocks, warm-up, fixed threads, interleaved
rounds, median and IQR), one runtime (PyTorch, inductor, ONNX Runtime) at a time with its
models and backends interleaved: runtimes are kept apart because their idle worker threads
busy-wait and would steal cores from each other. The headline ``speedup`` of a config is the
full-resolution network's best backend over WAE's best backend (medians). The machine's
load average is recorded before and after: numbers taken on a loaded machine are noisy.

On CUDA (``device="cuda"``) the timer synchronises; ``amp`` runs PyTorch backends under
autocast (float16 on CUDA, bfloat16 on CPU); ONNX Runtime then uses its CUDA provider with
I/O bound on the device. The oneDNN fusion is CPU-only and is skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import cost
from .errors import WAEError

__all__ = [
    "ALL_BACKENDS",
    "BenchError",
    "MODELS",
    "QUICK_BACKBONE",
    "build_models",
    "format_markdown",
    "format_parts_markdown",
    "run_bench",
    "time_parts",
]

MODELS = ("full", "half", "wae")
ALL_BACKENDS = ("eager", "channels_last", "compile", "optimized", "ort", "ort_optimized")
#: Backends whose best is "PyTorch best of channels_last / torch.compile".
PYTORCH_TUNED = ("channels_last", "compile")
#: The --quick family: the 28x28 SmallVGG models (registered names small_vgg_28_full, ...).
QUICK_BACKBONE = "small_vgg_28"


class BenchError(WAEError, ValueError):
    """A benchmark that cannot be set up as asked."""


class BackendUnavailable(RuntimeError):
    """A backend that could not be prepared for a model (recorded in the results)."""


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def build_models(
    backbone: str,
    *,
    input_size: int | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The full / half / wae trio (fresh weights, eval mode) and their input description.

    A backbone with registered models (``vgg16`` -> vgg16_full, vgg16_half, wae_vgg16;
    ``resnet50``; ``small_vgg_28``; ``small_vgg_32``) uses them; any other name goes through
    PlainNet / WAENet.from_backbone. Returns (models, {"input_size", "in_chans", ...}).
    """
    from .models import PlainNet, WAENet, create_model, is_model, model_cfg

    names = {"full": f"{backbone}_full", "half": f"{backbone}_half", "wae": f"wae_{backbone}"}
    kw: dict[str, Any] = {}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if all(is_model(n) for n in names.values()):
        cfg = model_cfg(names["wae"])
        size = int(input_size or cfg["input_size"])
        chans = int(in_chans or cfg["in_chans"])
        if chans != cfg["in_chans"]:
            kw["in_chans"] = chans
        models = {
            "full": create_model(names["full"], **kw),
            "half": create_model(names["half"], **kw),
            "wae": create_model(names["wae"], input_size=size, **kw),
        }
        k = num_classes or cfg["num_classes"]
    else:
        size, chans = int(input_size or 224), int(in_chans or 3)
        k = num_classes or 1000
        common = dict(num_classes=k, in_chans=chans)
        try:
            models = {
                "full": PlainNet.from_backbone(backbone, **common),
                "half": PlainNet.from_backbone(backbone, half=True, **common),
                "wae": WAENet.from_backbone(backbone, input_size=size, **common),
            }
        except WAEError:
            raise
        except Exception as e:
            raise BenchError(f"Could not build the models for backbone {backbone!r}: {e}") from e
    return {n: m.eval() for n, m in models.items()}, {
        "input_size": size,
        "in_chans": chans,
        "num_classes": k,
    }


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class _Runner(nn.Module):
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

    runner: _Runner
    setup_s: float
    note: str = ""
    keep: list[Any] = field(default_factory=list)  # objects that must outlive the timing


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _torch_runner(model: nn.Module, device: torch.device, amp: bool, fmt: torch.memory_format):
    def run(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, amp):
            return model(x.contiguous(memory_format=fmt))

    return _Runner(run)


def _ort_runner(session: Any, device: torch.device) -> _Runner:
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

        return _Runner(run_cuda)

    def run_cpu(x: torch.Tensor) -> Any:
        return session.run([name_out], {name_in: x.numpy()})[0]

    return _Runner(run_cpu)


class _BackboneCache:
    """Per-backbone cache of what does not depend on thread count or batch size: the
    re-laid-out / optimised PyTorch copies and the exported ONNX files."""

    def __init__(self, workdir: Path, device: torch.device, amp: bool = False) -> None:
        self.workdir = workdir
        self.device = device
        self.amp = amp
        self.macs: dict[str, float | None] = {}
        self.modules: dict[tuple[str, str], nn.Module] = {}
        self.onnx: dict[tuple[str, str], Path | BaseException] = {}
        self.setup_s: dict[tuple[str, str], float] = {}

    def module(self, name: str, backend: str, model: nn.Module) -> nn.Module:
        from .optimize import optimize_for_inference

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
        from .export import export_onnx
        from .optimize import optimize_for_inference

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
            raise BackendUnavailable(f"export failed: {type(out).__name__}: {_first_line(out)}")
        return out


def prepare_backend(
    backend: str,
    name: str,
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int,
    amp: bool,
    cache: _BackboneCache,
) -> Prepared:
    """Make `model` ready to run on `backend`; raises BackendUnavailable with the reason."""
    from .export import onnx_session

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
            raise BackendUnavailable(f"{type(e).__name__}: {_first_line(e)}") from e
        note = "float32 (AMP does not apply to the ONNX model)" if amp else ""
        setup = cache.setup_s[(name, backend)] + time.perf_counter() - t0
        return Prepared(_ort_runner(session, device), setup, note, [session])
    raise BenchError(f"Unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}.")


def _has_fused(model: nn.Module) -> bool:
    from .optimize import FusedConv2d

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
        msg = f"torch.compile failed: {type(e).__name__}: {_first_line(e)}"
        raise BackendUnavailable(msg) from e
    finally:
        torch.set_num_threads(old)
    secs = time.perf_counter() - t0
    return Prepared(runner, secs, f"compile + warm-up {secs:.0f} s", [compiled])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# --------------------------------------------------------------------------------------------
# Running a config
# --------------------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    """One cell of the benchmark matrix."""

    backbone: str
    input_size: int
    in_chans: int
    batch_size: int
    threads: int
    device: str = "cpu"
    amp: bool = False

    @property
    def label(self) -> str:
        amp = ", amp" if self.amp else ""
        return (
            f"{self.backbone} {self.input_size}x{self.input_size}, batch {self.batch_size}, "
            f"threads {self.threads}, {self.device}{amp}"
        )


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _input(cfg: BenchConfig) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.batch_size, cfg.in_chans, cfg.input_size, cfg.input_size)
    return torch.rand(shape, generator=gen)


def run_config(
    cfg: BenchConfig,
    models: Mapping[str, nn.Module],
    backends: Sequence[str],
    *,
    min_run_time: float,
    rounds: int,
    warmup: int,
    cache: _BackboneCache,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Prepare every (model, backend) pair of one config and time them together."""
    device = torch.device(cfg.device)
    x = _input(cfg)
    prepared: dict[str, Prepared] = {}
    entries: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in models}
    for mname, model in models.items():
        for backend in backends:
            key = f"{mname}/{backend}"
            log(f"  preparing {key}")
            try:
                prepared[key] = prepare_backend(
                    backend, mname, model, x, threads=cfg.threads, amp=cfg.amp, cache=cache
                )
            except BackendUnavailable as e:
                entries[mname][backend] = {"status": "failed", "error": str(e)}
                log(f"  {key}: unavailable ({e})")
    load_before = _load()
    log(f"  timing {len(prepared)} candidates (load average {load_before})")
    lats = _measure_grouped(
        {k: p.runner for k, p in prepared.items()},
        x,
        threads=cfg.threads,
        device=device,
        min_run_time=min_run_time,
        warmup=warmup,
        rounds=rounds,
    )
    load_after = _load()
    for key, lat in lats.items():
        mname, backend = key.split("/")
        p = prepared[key]
        entries[mname][backend] = {
            "status": "ok",
            "median_ms": lat.median_ms,
            "iqr_ms": lat.iqr_ms,
            "min_ms": lat.min_ms,
            "max_ms": lat.max_ms,
            "mean_ms": lat.mean_ms,
            "n": lat.n_measurements,
            "runs": lat.runs,
            "setup_s": round(p.setup_s, 2),
            "note": p.note,
        }
    prepared.clear()
    return _summarise(cfg, entries, models, x, cache, load_before, load_after)


#: Backends sharing a runtime (and so a thread pool); see _measure_grouped.
_RUNTIME = {
    "eager": "torch",
    "channels_last": "torch",
    "optimized": "torch",
    "compile": "inductor",
    "ort": "onnxruntime",
    "ort_optimized": "onnxruntime",
}


def _measure_grouped(
    runners: Mapping[str, _Runner],
    x: torch.Tensor,
    *,
    threads: int,
    device: torch.device,
    min_run_time: float,
    warmup: int,
    rounds: int,
) -> dict[str, cost.Latency]:
    """Time candidates with the library timer, one runtime at a time.

    Within a runtime, models and backends are interleaved over `rounds` (fair against slow
    drift). Runtimes are not interleaved with each other: each has its own worker threads,
    which busy-wait for a while after a call (OpenMP, ONNX Runtime's pool), and with as many
    threads as cores the idle runtime's spinning threads would steal cores from the one
    being timed. A short pause between runtimes lets them go to sleep.
    """
    groups: dict[str, dict[str, _Runner]] = {}
    for key, runner in runners.items():
        groups.setdefault(_RUNTIME[key.split("/")[1]], {})[key] = runner
    out: dict[str, cost.Latency] = {}
    for i, group in enumerate(groups.values()):
        if i and threads > 1:
            time.sleep(0.5)
        out.update(
            cost.measure_interleaved(
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


def _best(per_backend: Mapping[str, Mapping[str, Any]], among: Sequence[str] | None = None):
    ok = {
        b: e
        for b, e in per_backend.items()
        if e.get("status") == "ok" and (among is None or b in among)
    }
    if not ok:
        return None
    b = min(ok, key=lambda k: ok[k]["median_ms"])
    return {"backend": b, "median_ms": ok[b]["median_ms"], "iqr_ms": ok[b]["iqr_ms"]}


def _summarise(
    cfg: BenchConfig,
    entries: dict[str, dict[str, dict[str, Any]]],
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    cache: _BackboneCache,
    load_before: list[float] | None,
    load_after: list[float] | None,
) -> dict[str, Any]:
    macs = {
        name: (per_image * cfg.batch_size if per_image else None)
        for name, per_image in cache.macs_per_image(models, x).items()
    }
    best = {name: _best(entries[name]) for name in models}
    tuned = {name: _best(entries[name], PYTORCH_TUNED) for name in models}

    def ratio(a: dict | None, b: dict | None) -> float | None:
        if a is None or b is None or b["median_ms"] <= 0:
            return None
        return a["median_ms"] / b["median_ms"]

    speedups = {name: ratio(best.get("full"), best[name]) for name in models if name != "full"}
    per_backend_speedup = {
        b: ratio(entries["full"][b], entries["wae"][b])
        for b in entries["wae"]
        if _ok(entries["full"], b) and _ok(entries["wae"], b)
    }
    helped = {}
    for name in models:
        eager = entries[name].get("eager", {})
        if eager.get("status") != "ok":
            continue
        helped[name] = {
            b: round(eager["median_ms"] / e["median_ms"], 3)
            for b, e in entries[name].items()
            if b != "eager" and e.get("status") == "ok"
        }
    return {
        "config": dataclasses.asdict(cfg),
        "label": cfg.label,
        "speedup": speedups.get("wae"),
        "half_speedup": speedups.get("half"),
        "best": best,
        "pytorch_tuned_best": tuned,
        "speedup_per_backend": per_backend_speedup,
        "gain_over_eager": helped,
        "macs": macs,
        "mac_ratio": {
            n: (macs["full"] / macs[n]) if macs.get("full") and macs.get(n) else None
            for n in models
        },
        "models": entries,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


def _ok(per_backend: Mapping[str, Mapping[str, Any]], backend: str) -> bool:
    return per_backend.get(backend, {}).get("status") == "ok"


# --------------------------------------------------------------------------------------------
# The whole matrix
# --------------------------------------------------------------------------------------------


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(spec: Sequence[int | str]) -> list[int]:
    """Thread counts from ints and "all" (every usable core), deduplicated, in order."""
    out: list[int] = []
    for t in spec:
        n = _usable_cores() if str(t) == "all" else int(t)
        if n < 1:
            raise BenchError(f"thread counts must be >= 1, got {t!r}")
        if n not in out:
            out.append(n)
    return out


def run_bench(
    backbones: Sequence[str],
    *,
    input_size: int | None = None,
    batch_sizes: Sequence[int] = (1, 16),
    threads: Sequence[int | str] = (1, "all"),
    backends: Sequence[str] = ALL_BACKENDS,
    device: str = "cpu",
    amp: bool = False,
    num_classes: int | None = None,
    min_run_time: float = 2.0,
    rounds: int = 3,
    warmup: int = 2,
    workdir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Time every (backbone, batch size, thread count) config; see the module docstring.

    Returns {"machine", "settings", "configs": [per-config results], "speedup" (of the first
    config), "load_avg_start", "load_avg_end"}.
    """
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        raise BenchError(f"Unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}.")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("device is CUDA but torch.cuda.is_available() is False.")
    thread_list = resolve_threads(threads)
    start_load = _load()
    configs: list[dict[str, Any]] = []
    with _workdir(workdir) as wd:
        for backbone in backbones:
            models, info = build_models(backbone, input_size=input_size, num_classes=num_classes)
            for m in models.values():
                m.to(dev)
            cache = _BackboneCache(wd, dev, amp)
            for bs in batch_sizes:
                for n in thread_list:
                    cfg = BenchConfig(
                        backbone, info["input_size"], info["in_chans"], int(bs), n, device, amp
                    )
                    log(f"{cfg.label}")
                    configs.append(
                        run_config(
                            cfg,
                            models,
                            backends,
                            min_run_time=min_run_time,
                            rounds=rounds,
                            warmup=warmup,
                            cache=cache,
                            log=log,
                        )
                    )
            del models, cache
    import onnxruntime

    return {
        "machine": cost.machine_info(),
        "onnxruntime_version": onnxruntime.__version__,
        "settings": {
            "backbones": list(backbones),
            "batch_sizes": [int(b) for b in batch_sizes],
            "threads": thread_list,
            "backends": list(backends),
            "device": device,
            "amp": amp,
            "min_run_time": min_run_time,
            "rounds": rounds,
            "warmup": warmup,
        },
        "speedup": configs[0]["speedup"] if configs else None,
        "load_avg_start": start_load,
        "load_avg_end": _load(),
        "configs": configs,
    }


@contextlib.contextmanager
def _workdir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    if path is not None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="wae-bench-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _cell(e: Mapping[str, Any] | None) -> str:
    if not e:
        return "-"
    if e.get("status") != "ok":
        return "failed"
    return f"{e['median_ms']:.2f} ± {e['iqr_ms']:.2f}"


def _x(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def format_markdown(result: Mapping[str, Any]) -> str:
    """A Markdown report of :func:`run_bench`'s result: one table per config."""
    mach, settings = result["machine"], result["settings"]
    lines = [
        "# wae bench",
        "",
        f"- CPU: {mach['cpu_model']} ({mach.get('usable_cores')} usable cores); torch "
        f"{mach['torch_version']}, onnxruntime {result.get('onnxruntime_version', '?')}",
        f"- load average (1/5/15 min) at start {result.get('load_avg_start')}, at end "
        f"{result.get('load_avg_end')}"
        + (
            " — the machine was busy; treat the timings as noisy"
            if (result.get("load_avg_start") or [0])[0] > 0.5
            else ""
        ),
        f"- timing: median ± IQR in ms over `torch.utils.benchmark` blocks, one runtime at a "
        f"time, {settings['rounds']} interleaved rounds within it, "
        f"{settings['min_run_time']} s per candidate, "
        f"{settings['warmup']} warm-up calls; device {settings['device']}"
        + (", AMP" if settings.get("amp") else ""),
        "- speed-up = full-resolution network's best backend / WAE's best backend (medians)",
        "",
    ]
    backends = settings["backends"]
    for c in result["configs"]:
        lines += [
            f"## {c['label']}",
            "",
            f"load average before timing {c['load_avg_before']}, after {c['load_avg_after']}",
            "",
            "| model | GMACs | " + " | ".join(backends) + " | best | speed-up (best) | MAC ratio |",
            "|---|---:|" + "---:|" * len(backends) + "---|---:|---:|",
        ]
        for name, per in c["models"].items():
            best = c["best"].get(name)
            sp = 1.0 if name == "full" and best else (
                c["speedup"] if name == "wae" else c.get("half_speedup")
            )  # fmt: skip
            gmacs = c["macs"].get(name)
            lines.append(f"| {name} | {gmacs / 1e9:.2f} | " if gmacs else f"| {name} | - | ")
            lines[-1] += " | ".join(_cell(per.get(b)) for b in backends)
            lines[-1] += (
                f" | {best['backend'] if best else '-'} | {_x(sp)} | "
                f"{_x(c['mac_ratio'].get(name))} |"
            )
        notes = []
        for name, per in c["models"].items():
            for b, e in per.items():
                if e.get("status") != "ok":
                    notes.append(f"{name}/{b}: {e.get('error')}")
                elif b == "compile" and e.get("note"):
                    notes.append(f"{name}/compile: {e['note']}")
        gains = []
        for name, g in c.get("gain_over_eager", {}).items():
            if g:
                gains.append(f"{name}: " + ", ".join(f"{b} {v:.2f}x" for b, v in g.items()))
        per_b = ", ".join(
            f"{b} {_x(v)}" for b, v in c.get("speedup_per_backend", {}).items() if v is not None
        )
        lines += ["", f"- WAE speed-up on the same backend: {per_b}"]
        if gains:
            lines.append("- gain over eager (eager time / backend time): " + "; ".join(gains))
        for name, t in c.get("pytorch_tuned_best", {}).items():
            if t:
                lines.append(
                    f"- {name}: PyTorch best of channels_last / compile is {t['backend']} "
                    f"({t['median_ms']:.2f} ms)"
                )
        lines += [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Where WAE's time goes
# --------------------------------------------------------------------------------------------


def _wae_part_modules(
    model: nn.Module, x: torch.Tensor
) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """WAENet (or its WAEInference) split into timed parts, each with its real input."""
    from .models import WAENet
    from .optimize import WAEInference

    class Encoder(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if isinstance(self.net, WAEInference):
                return self.net.encoder(x)
            parts = self.net.decompose(x)
            high = self.net.norm_high(parts.high) if self.net.norm_high is not None else parts.high
            return self.net.norm_low(parts.low), high

    class Heads(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, f_low: torch.Tensor, f_high: torch.Tensor) -> torch.Tensor:
            if isinstance(self.net, WAEInference):
                return self.net.head(f_low, f_high)
            s_low, s_fused = self.net.forward_head((f_low, f_high))
            return s_low if s_fused is None else (s_low + s_fused) / 2

    if not isinstance(model, (WAENet, WAEInference)):
        raise BenchError(f"time_parts needs a WAENet, got {type(model).__name__}.")
    enc, heads = Encoder(model).eval(), Heads(model).eval()
    with torch.no_grad():
        low, high = enc(x)
        f_low = model.low_net(low)
        f_high = model.high_net(high)
    return {
        "encoder": (enc, (x,)),
        "I_L network": (model.low_net, (low,)),
        "I_H network": (model.high_net, (high,)),
        "heads": (heads, (f_low, f_high)),
        "whole": (model, (x,)),
    }


def _export_part(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer/deprecation chatter, see wae.export
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=17, do_constant_folding=True
        )


def _layout_ms(model: nn.Module, x: torch.Tensor, fmt: torch.memory_format, runs: int) -> float:
    """Time per call spent in layout conversions (copies between memory formats) in PyTorch:
    self time of aten::copy_ under a profiler, divided by the number of calls."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        xin = x.contiguous(memory_format=fmt)
        model(xin)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(xin)
    total_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::copy_")
    return total_us / 1e3 / runs


def _ort_layout_ms(path: Path, x: torch.Tensor, threads: int, runs: int) -> float:
    """Time per run ONNX Runtime spends in its layout reorders (NCHW <-> NCHWc)."""
    import onnxruntime as ort

    from .export import onnx_session

    so_path = path
    sess = onnx_session(so_path, threads)
    del sess
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x.numpy()})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    us = sum(
        e["dur"]
        for e in events
        if e.get("cat") == "Node" and "Reorder" in e.get("args", {}).get("op_name", "")
    )
    return us / 1e3 / runs


def time_parts(
    backbone: str,
    *,
    input_size: int | None = None,
    batch_size: int = 1,
    threads: int | str = "all",
    min_run_time: float = 1.0,
    rounds: int = 3,
    warmup: int = 2,
    workdir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Where WAE's time goes: each part of WAE (encoder, I_L net, I_H net, heads) timed
    alone, before and after optimize_for_inference, in PyTorch (channels_last / optimized)
    and ONNX Runtime (ort / ort_optimized), next to its share of the MACs.

    "layout conversions" is the time spent copying between memory formats inside the whole
    model (PyTorch: aten::copy_; ONNX Runtime: its Reorder nodes), "glue" is whole minus the
    sum of the parts (per-call overhead between parts). CPU only.
    """
    from .export import onnx_session
    from .optimize import optimize_for_inference

    n_threads = resolve_threads([threads])[0]
    models, info = build_models(backbone, input_size=input_size)
    wae = models["wae"]
    del models
    x = torch.rand(batch_size, info["in_chans"], info["input_size"], info["input_size"])
    ops = cost.count_ops(wae, x, parts=wae.cost_parts)
    variants = {
        "channels_last": copy.deepcopy(wae).to(memory_format=torch.channels_last),
        "optimized": optimize_for_inference(wae),
        "ort": wae,
        "ort_optimized": optimize_for_inference(wae, fuse_mkldnn=False, channels_last=False),
    }
    runners: dict[str, _Runner] = {}
    inputs: dict[str, tuple[torch.Tensor, ...]] = {}
    layout: dict[str, float] = {}
    keep: list[Any] = []
    with _workdir(workdir) as wd:
        for vname, model in variants.items():
            parts = _wae_part_modules(model, x)
            for pname, (module, args) in parts.items():
                key = f"{vname}/{pname}"
                if vname.startswith("ort"):
                    path = wd / f"part-{vname}-{pname.replace(' ', '_')}.onnx"
                    _export_part(module, args, path)
                    sess = onnx_session(path, n_threads)
                    keep.append(sess)
                    names = [i.name for i in sess.get_inputs()]

                    def run(*a: torch.Tensor, _s: Any = sess, _n: list[str] = names) -> Any:
                        return _s.run(None, {k: t.numpy() for k, t in zip(_n, a, strict=True)})

                    runners[key] = _Runner(run)
                    inputs[key] = tuple(a.contiguous() for a in args)
                    if pname == "whole":
                        layout[vname] = _ort_layout_ms(path, x, n_threads, 10)
                else:
                    fmt = torch.channels_last

                    def run_t(*a: torch.Tensor, _m: nn.Module = module) -> Any:
                        return _m(*a)

                    runners[key] = _Runner(run_t)
                    inputs[key] = tuple(
                        a.contiguous(memory_format=fmt) if a.dim() == 4 else a for a in args
                    )
                    if pname == "whole":
                        layout[vname] = _layout_ms(model, x, fmt, 10)
        log(f"timing {len(runners)} parts (load average {_load()})")
        load_before = _load()
        lats = cost.measure_interleaved(
            runners,
            inputs,
            threads=n_threads,
            memory_format=torch.contiguous_format,  # inputs are prepared above
            dtype=torch.float32,
            min_run_time=min_run_time,
            rounds=rounds,
            device="cpu",
            warmup=warmup,
        )
        load_after = _load()
    table: dict[str, dict[str, Any]] = {}
    for key, lat in lats.items():
        vname, pname = key.split("/")
        table.setdefault(vname, {})[pname] = {"median_ms": lat.median_ms, "iqr_ms": lat.iqr_ms}
    for vname, parts in table.items():
        summed = sum(v["median_ms"] for k, v in parts.items() if k != "whole")
        parts["glue"] = {"median_ms": parts["whole"]["median_ms"] - summed, "iqr_ms": None}
        parts["layout conversions"] = {"median_ms": layout.get(vname), "iqr_ms": None}
    mac_share = {
        label: p.macs / ops.macs for label, p in ops.parts.items() if p.macs or label != "other"
    }
    return {
        "backbone": backbone,
        "input_size": info["input_size"],
        "batch_size": batch_size,
        "threads": n_threads,
        "machine": cost.machine_info(n_threads),
        "gmacs": ops.macs / 1e9,
        "mac_share": mac_share,
        "parts": table,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


def format_parts_markdown(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`time_parts`: ms per part and variant, and MAC shares."""
    variants = list(result["parts"])
    rows = ["encoder", "I_L network", "I_H network", "heads", "glue", "layout conversions"]
    share_key = {"encoder": "encoder", "I_L network": "I_L network",
                 "I_H network": "I_H network", "heads": "heads"}  # fmt: skip
    lines = [
        f"## Where WAE-{result['backbone']}'s time goes: {result['input_size']}x"
        f"{result['input_size']}, batch {result['batch_size']}, threads {result['threads']}",
        "",
        f"CPU: {result['machine']['cpu_model']}; load average before {result['load_avg_before']},"
        f" after {result['load_avg_after']}; {result['gmacs']:.2f} GMACs in all.",
        "",
        "| part | MAC share | " + " | ".join(variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    for r in rows + ["whole"]:
        share = result["mac_share"].get(share_key.get(r, ""), None)
        cells = []
        for v in variants:
            e = result["parts"][v].get(r, {})
            ms = e.get("median_ms")
            if ms is None:
                cells.append("-")
                continue
            whole = result["parts"][v]["whole"]["median_ms"]
            pct = f" ({100 * ms / whole:.0f}%)" if r != "whole" and whole > 0 else ""
            cells.append(f"{ms:.2f}{pct}")
        share_txt = "" if share is None else f"{100 * share:.1f}%"
        lines.append(f"| {r} | {share_txt} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "ms per call (share of the whole); glue = whole - sum of parts; layout conversions "
        "are inside the whole (PyTorch aten::copy_, ONNX Runtime Reorder nodes).",
        "",
    ]
    return "\n".join(lines)
