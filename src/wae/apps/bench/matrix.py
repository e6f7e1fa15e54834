"""The timing matrix: WAE against the full- and half-resolution network, per backend.

For one backbone, input size, batch size and thread count (a "config"), three models are
timed: ``full`` (the backbone at full resolution), ``half`` (the backbone on the image resized
to half size, the paper's I_R) and ``wae`` (WAENet), each on every backend (see
:mod:`wae.cost.backends`: eager, channels_last, compile, optimized, ort, ort_optimized).

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
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import cost
from ...data.transforms import check_input_size
from ...encoders import DEFAULT_ENCODER, check_encoder
from ...precision import check_precisions, cpu_precision_note
from ...runtime import check_device, usable_cores
from .backends import (
    ALL_BACKENDS,
    PRECISIONS,
    PYTORCH_TUNED,
    BackboneCache,
    BackendUnavailable,
    Prepared,
    measure_grouped,
    prepare_backend,
)
from .models import BenchError, build_models

__all__ = [
    "BenchConfig",
    "check_settings",
    "load_average",
    "measure_grouped",
    "resolve_threads",
    "run_bench",
    "run_config",
    "scratch_dir",
]


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


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average, rounded (None where the OS has none)."""
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
    cache: BackboneCache,
    precisions: Sequence[str] = ("fp32",),
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Prepare every (model, backend, precision) candidate of one config and time them
    together; a backend that does not run a precision (PRECISIONS) is left out."""
    device = torch.device(cfg.device)
    x = _input(cfg)
    prepared: dict[str, Prepared] = {}
    entries: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        p: {m: {} for m in models} for p in precisions
    }
    for prec in precisions:
        for mname, model in models.items():
            for backend in (b for b in backends if prec in PRECISIONS[b]):
                key = f"{mname}/{backend}/{prec}"
                log(f"  preparing {key}")
                try:
                    prepared[key] = prepare_backend(
                        backend,
                        mname,
                        model,
                        x,
                        threads=cfg.threads,
                        amp=cfg.amp,
                        cache=cache,
                        precision=prec,
                    )
                except BackendUnavailable as e:
                    entries[prec][mname][backend] = {"status": "failed", "error": str(e)}
                    log(f"  {key}: unavailable ({e})")
    load_before = load_average()
    log(f"  timing {len(prepared)} candidates (load average {load_before})")
    lats = measure_grouped(
        {k: p.runner for k, p in prepared.items()},
        x,
        threads=cfg.threads,
        device=device,
        min_run_time=min_run_time,
        warmup=warmup,
        rounds=rounds,
    )
    load_after = load_average()
    for key, lat in lats.items():
        mname, backend, prec = key.split("/")
        entries[prec][mname][backend] = _entry(lat, prepared[key])
    prepared.clear()
    return _summarise(cfg, entries, models, x, cache, load_before, load_after)


def _entry(lat: cost.Latency, p: Prepared) -> dict[str, Any]:
    return {
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


def _ratio(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> float | None:
    """a's median over b's (how many times faster b is), None when either is missing."""
    if a is None or b is None or b["median_ms"] <= 0:
        return None
    return a["median_ms"] / b["median_ms"]


def _summarise(
    cfg: BenchConfig,
    per_precision: dict[str, dict[str, dict[str, dict[str, Any]]]],
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    cache: BackboneCache,
    load_before: list[float] | None,
    load_after: list[float] | None,
) -> dict[str, Any]:
    """One config's results. The fp32 figures keep their keys (``best``, ``speedup``,
    ``models``...); ``precisions`` holds every precision's per-backend entries, best backends
    and the two speed-ups of each model, ``fastest`` each model's fastest precision."""
    entries = per_precision["fp32"]
    macs = {
        name: (per_image * cfg.batch_size if per_image else None)
        for name, per_image in cache.macs_per_image(models, x).items()
    }
    best = {name: _best(entries[name]) for name in models}
    tuned = {name: _best(entries[name], PYTORCH_TUNED) for name in models}
    speedups = {name: _ratio(best.get("full"), best[name]) for name in models if name != "full"}
    per_backend_speedup = {
        b: _ratio(entries["full"][b], entries["wae"][b])
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
    precisions = {p: _precision_summary(e, best.get("full")) for p, e in per_precision.items()}
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
        "precisions": precisions,
        "fastest": _fastest(precisions, models),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


def _precision_summary(
    entries: Mapping[str, Mapping[str, Mapping[str, Any]]], fp32_full: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One precision: its per-backend entries, and per model the best backend with
    ``speedup_same_precision`` (the full-resolution network's best at this precision over
    this model's best) and ``speedup_vs_fp32`` (the float32 full-resolution network's best
    over this model's best)."""
    best = {name: _best(per) for name, per in entries.items()}
    summary = {}
    for name, b in best.items():
        if b is None:
            summary[name] = None
            continue
        summary[name] = {
            **b,
            "speedup_same_precision": _ratio(best.get("full"), b),
            "speedup_vs_fp32": _ratio(fp32_full, b),
        }
    return {"models": entries, "best": summary}


def _fastest(precisions: Mapping[str, Any], models: Mapping[str, nn.Module]) -> dict[str, Any]:
    """Per model, its fastest (precision, backend) and that one's speed-up over the float32
    full-resolution network's best backend (what users run today)."""
    out: dict[str, Any] = {}
    for name in models:
        runs = [(p, v["best"][name]) for p, v in precisions.items() if v["best"].get(name)]
        if runs:
            p, b = min(runs, key=lambda r: r[1]["median_ms"])
            out[name] = {"precision": p, **b}
    return out


def _ok(per_backend: Mapping[str, Mapping[str, Any]], backend: str) -> bool:
    return per_backend.get(backend, {}).get("status") == "ok"


def resolve_threads(spec: Sequence[int | str]) -> list[int]:
    """Thread counts from ints and "all" (every usable core), deduplicated, in order."""
    out: list[int] = []
    for t in spec:
        try:
            n = usable_cores() if str(t) == "all" else int(t)
        except (TypeError, ValueError):
            n = 0
        if n < 1 or isinstance(t, (bool, float)):
            raise BenchError(
                f"Thread counts (--threads) are integers >= 1 or 'all', got {t!r}. Fix --threads."
            )
        if n not in out:
            out.append(n)
    return out


def check_settings(
    *,
    backbones: Sequence[str] | None = None,
    backends: Sequence[str] = ALL_BACKENDS,
    input_size: int | None,
    batch_sizes: Sequence[int],
    threads: Sequence[int | str],
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    min_run_time: float,
    rounds: int,
    warmup: int,
    precisions: Sequence[str] = ("fp32",),
    encoder: str = DEFAULT_ENCODER,
) -> tuple[list[int], torch.device]:
    """Refuse, before any model is built, settings that would time nothing or mislead (an
    empty batch, a size of 0, no threads, no time, a precision no chosen backend runs, an
    unknown encoder); returns (thread counts, device)."""
    check_encoder(encoder)
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown or not backends:
        what = f"Unknown backend(s) {unknown}" if unknown else "No backend given"
        raise BenchError(f"{what}; choose from {', '.join(ALL_BACKENDS)} (--backends).")
    for prec in check_precisions(
        precisions, check_device(device, "device (--device)", available=False)
    ):
        runs = [b for b in ALL_BACKENDS if prec in PRECISIONS[b]]
        if not set(runs) & set(backends):
            raise BenchError(
                f"No chosen backend runs {prec}: it runs on {', '.join(runs)}. Add one of "
                f"them to --backends, or drop {prec} from --precision."
            )
    if backbones is not None and not backbones:
        raise BenchError("No backbone to benchmark: name at least one (--backbone).")
    if input_size is not None:
        check_input_size(input_size, "input_size (--input-size)")
    if not batch_sizes or not all(type(b) is int and b >= 1 for b in batch_sizes):
        raise BenchError(
            f"Batch sizes (--batch-size) must be integers >= 1, got {list(batch_sizes)}: a "
            f"batch of 0 images times nothing."
        )
    if num_classes is not None and not (type(num_classes) is int and num_classes >= 1):
        raise BenchError(f"num_classes (--num-classes) must be >= 1, got {num_classes!r}.")
    cost.check_timing(min_run_time=min_run_time, rounds=rounds, warmup=warmup)
    thread_list = resolve_threads(threads)
    if not thread_list:
        raise BenchError("No thread counts given (--threads): name at least one, or 'all'.")
    return thread_list, check_device(device, "device (--device)")


def run_bench(
    backbones: Sequence[str],
    *,
    input_size: int | None = None,
    batch_sizes: Sequence[int] = (1, 16),
    threads: Sequence[int | str] = (1, "all"),
    backends: Sequence[str] = ALL_BACKENDS,
    device: str = "cpu",
    amp: bool = False,
    precisions: Sequence[str] = ("fp32",),
    num_classes: int | None = None,
    min_run_time: float = 2.0,
    rounds: int = 3,
    warmup: int = 2,
    workdir: str | os.PathLike[str] | None = None,
    encoder: str = DEFAULT_ENCODER,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Time every (backbone, batch size, thread count) config; see the module docstring.
    The WAE has the encoder `encoder` (:mod:`wae.encoders`).

    `precisions`: fp32 (always timed: the reference), bf16, fp16 (CUDA), int8 (CPU); each
    model runs at each precision on every chosen backend that runs it (PRECISIONS).
    Returns {"machine", "settings", "configs": [per-config results], "speedup" (of the first
    config, fp32), "load_avg_start", "load_avg_end"}.
    """
    thread_list, dev = check_settings(
        backbones=backbones,
        backends=backends,
        input_size=input_size,
        batch_sizes=batch_sizes,
        threads=threads,
        device=device,
        num_classes=num_classes,
        min_run_time=min_run_time,
        rounds=rounds,
        warmup=warmup,
        precisions=precisions,
        encoder=encoder,
    )
    precisions = check_precisions(precisions, dev)
    start_load = load_average()
    timing: dict[str, Any] = dict(
        min_run_time=min_run_time, rounds=rounds, warmup=warmup, precisions=precisions
    )
    configs: list[dict[str, Any]] = []
    with scratch_dir(workdir) as wd:
        for backbone in backbones:
            models, info = build_models(
                backbone, input_size=input_size, num_classes=num_classes, encoder=encoder
            )
            cells = [
                BenchConfig(backbone, info["input_size"], info["in_chans"], int(bs), n, device, amp)
                for bs in batch_sizes
                for n in thread_list
            ]
            cache = BackboneCache(wd, dev, amp)
            configs += _time_backbone(models, cells, backends, dev, cache, log, **timing)
            del models, cache
    import onnxruntime

    return {
        "machine": cost.machine_info(),
        "onnxruntime_version": onnxruntime.__version__,
        "openvino_version": _version("openvino"),
        "settings": {
            "backbones": list(backbones),
            "batch_sizes": [int(b) for b in batch_sizes],
            "threads": thread_list,
            "backends": list(backends),
            "encoder": encoder,
            "device": device,
            "amp": amp,
            **_timing_settings(dev, **timing),
        },
        "speedup": configs[0]["speedup"] if configs else None,
        "load_avg_start": start_load,
        "load_avg_end": load_average(),
        "configs": configs,
    }


def _timing_settings(
    dev: torch.device, *, precisions: list[str], min_run_time: float, rounds: int, warmup: int
) -> dict[str, Any]:
    """The settings document's precisions (with what this CPU offers each) and timing."""
    return {
        "precisions": precisions,
        "precision_notes": {p: cpu_precision_note(p) for p in precisions}
        if dev.type == "cpu"
        else {},
        "min_run_time": min_run_time,
        "rounds": rounds,
        "warmup": warmup,
    }


def _time_backbone(
    models: dict[str, nn.Module],
    cells: Sequence[BenchConfig],
    backends: Sequence[str],
    dev: torch.device,
    cache: BackboneCache,
    log: Callable[[str], None],
    **timing: Any,
) -> list[dict[str, Any]]:
    """One backbone's trio, moved to `dev`, timed at every cell (batch size x threads)."""
    for m in models.values():
        m.to(dev)
    results = []
    for cfg in cells:
        log(f"{cfg.label}")
        results.append(run_config(cfg, models, backends, cache=cache, log=log, **timing))
    return results


def _version(package: str) -> str | None:
    """An installed distribution's version, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def scratch_dir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    """Where the exported ONNX files go: `path` (created, kept), or by default a temporary
    directory removed on exit (never the working or source directory)."""
    if path is not None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="wae-bench-") as tmp:
        yield Path(tmp)
