"""Time several models at the batch sizes a job reports, in eager PyTorch and on the
backends a deployment would use, and name each model's fastest.

:func:`compare_batches` is "time at batch B and at batch 1" for every app that reports both
(`wae accelerate`, `wae demo`, `wae reproduce`). Per batch size it runs one :func:`compare`
(counts, and eager PyTorch latency with the models interleaved), then makes every model
ready on each deploy backend (:mod:`.backends`: ``optimized`` is
:func:`wae.optimize.optimize_for_inference`, ``ort`` and ``ort_optimized`` ONNX Runtime on
the export, ...) and times those with the same thread count, warm-up, rounds and run time,
interleaved within each runtime (:func:`.backends.measure_grouped`). Eager PyTorch pays a
per-operator overhead that dominates a small network at batch 1; a model's fastest backend is
closer to what a deployment sees.

A backend that cannot run a model (no onnxruntime, an export or rewrite that fails, a call
that raises) is recorded as ``{"status": "unavailable", "error": reason}``, never raised.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import first_line
from ._common import MeasureError, check_timing, resolve_device
from .backends import ALL_BACKENDS, BackboneCache, Prepared, measure_grouped, prepare_backend
from .profiling import Comparison, compare

__all__ = [
    "DEPLOY_BACKENDS",
    "QUICK_DEPLOY_BACKENDS",
    "compare_batches",
    "fastest_of",
    "resolve_backends",
]

#: The backends timed besides eager by default: the library's inference rewrite and ONNX
#: Runtime on the plain and on the rewritten export. ``compile`` is left out (minutes of
#: warm-up per model and batch size); name it to time it.
DEPLOY_BACKENDS = ("optimized", "ort", "ort_optimized")
#: A smoke test's: one backend besides eager.
QUICK_DEPLOY_BACKENDS = ("ort",)


def resolve_backends(
    backends: str | Sequence[str] | None, *, quick: bool = False
) -> tuple[str, ...]:
    """The deploy backends to time besides eager PyTorch (which is always timed).

    None gives the default (:data:`DEPLOY_BACKENDS`; :data:`QUICK_DEPLOY_BACKENDS` when
    `quick`); otherwise every name must be one of ``ALL_BACKENDS`` (:class:`MeasureError`
    naming the choices), and ``["eager"]`` alone means no deploy timing."""
    if backends is None:
        return QUICK_DEPLOY_BACKENDS if quick else DEPLOY_BACKENDS
    names = [backends] if isinstance(backends, str) else list(backends)
    unknown = [b for b in names if not isinstance(b, str) or b not in ALL_BACKENDS]
    if unknown or not names:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
        raise MeasureError(
            f"backends (--backends): {what}. Choose from {', '.join(ALL_BACKENDS)}; eager is "
            f"always timed, so `--backends eager` alone switches the deploy timing off."
        )
    return tuple(dict.fromkeys(b for b in names if b != "eager"))


def compare_batches(
    models: Mapping[str, nn.Module],
    input_size: int | Sequence[int],
    *,
    batches: Sequence[int] = (256, 1),
    in_chans: int = 3,
    reference: str = "baseline",
    latency: bool = True,
    threads: int | None = None,
    min_run_time: float = 1.0,
    rounds: int = 3,
    warmup: int = 3,
    memory_format: str | torch.memory_format = "best",
    device: str | torch.device | None = None,
    backends: str | Sequence[str] | None = DEPLOY_BACKENDS,
    log: Callable[[str], None] | None = None,
) -> dict[int, Comparison]:
    """:func:`compare` of `models` at each batch size of `batches` (repeats dropped), plus
    each model timed on the deploy `backends` (see the module docstring; None: the default,
    ``["eager"]``: none). Returns ``{batch: Comparison}``; each comparison also has

    * ``"backends"``: ``{model: {backend: entry}}``, "eager" first (the compare's latency),
      an entry ``{"status": "ok", "median_ms", "iqr_ms", "note"}`` or
      ``{"status": "unavailable", "error"}``;
    * ``"fastest"``: ``{model: {"backend", "median_ms", "iqr_ms"}}`` (None without latency);
    * ``"speedup_fastest"``: ``{model: reference's fastest / model's fastest median}``;
    * ``"settings"]["backends"]``: the deploy backends timed (empty without latency).

    Every setting is checked before anything is timed. `log` gets a line per backend that
    cannot run a model."""
    deploy = resolve_backends(backends)
    sizes = list(dict.fromkeys(batches))
    if not sizes:
        raise MeasureError("batches: name at least one batch size to time.")
    for b in sizes:
        check_timing(batch_size=b)
    say = log or (lambda s: None)
    out: dict[int, Comparison] = {}
    with tempfile.TemporaryDirectory(prefix="wae-backends-") as tmp:
        cache: BackboneCache | None = None
        for b in sizes:
            res = compare(
                models,
                input_size,
                batch_size=b,
                in_chans=in_chans,
                latency=latency,
                threads=threads,
                memory_format=memory_format,
                min_run_time=min_run_time,
                rounds=rounds,
                device=device,
                warmup=warmup,
                reference=reference,
            )
            entries = {name: _eager_entry(p) for name, p in res["profiles"].items()}
            timed = deploy if latency else ()
            if timed:
                if cache is None:
                    cache = BackboneCache(Path(tmp), resolve_device(_first(models), device))
                settings = dict(min_run_time=min_run_time, rounds=rounds, warmup=warmup)
                x = _input(res["settings"]["input_shape"])
                more = _time_backends(
                    models, x, timed, cache, res["settings"]["threads"], say, **settings
                )
                for name, per in more.items():
                    entries[name].update(per)
            _add_fastest(res, entries, reference, timed)
            out[b] = res
    return out


def fastest_of(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """``{"backend", "median_ms", "iqr_ms"}`` of the fastest timed entry (the first listed of
    equal ones), None when none ran."""
    ok = {b: e for b, e in entries.items() if e.get("status") == "ok"}
    if not ok:
        return None
    best = min(ok, key=lambda b: ok[b]["median_ms"])
    return {"backend": best, "median_ms": ok[best]["median_ms"], "iqr_ms": ok[best]["iqr_ms"]}


def _first(models: Mapping[str, nn.Module]) -> nn.Module:
    return next(iter(models.values()))


def _input(shape: Sequence[int]) -> torch.Tensor:
    """The deploy backends' input: float32 images of `shape`, seeded (they take float32)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _eager_entry(profile: Any) -> dict[str, dict[str, Any]]:
    lat = profile.latency
    if lat is None:
        return {}
    note = f"eager PyTorch, {lat.memory_format}"
    return {
        "eager": {"status": "ok", "median_ms": lat.median_ms, "iqr_ms": lat.iqr_ms, "note": note}
    }


def _add_fastest(
    res: Comparison, entries: dict[str, dict[str, Any]], reference: str, timed: Sequence[str]
) -> None:
    """The comparison's "backends", "fastest" and "speedup_fastest" keys and its settings'
    "backends" (see :func:`compare_batches`)."""
    fastest = {name: fastest_of(per) for name, per in entries.items()}
    ref = fastest.get(reference)
    res["backends"] = entries
    res["fastest"] = fastest
    res["speedup_fastest"] = {
        name: ref["median_ms"] / f["median_ms"] if ref and f and f["median_ms"] > 0 else None
        for name, f in fastest.items()
    }
    res["settings"]["backends"] = list(timed)


def _time_backends(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    backends: Sequence[str],
    cache: BackboneCache,
    threads: int,
    log: Callable[[str], None],
    **settings: Any,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every model made ready on every backend and timed: {model: {backend: entry}}, the
    backends in the order given."""
    found: dict[str, dict[str, Any]] = {}
    prepared: dict[str, Prepared] = {}
    for name, model in models.items():
        for backend in backends:
            key = f"{name}/{backend}/fp32"
            reason, p = _prepare(backend, name, model, x, threads, cache)
            if p is None:
                found[key] = {"status": "unavailable", "error": reason}
            else:
                prepared[key] = p
    runners = {k: p.runner for k, p in prepared.items()}
    lats, failed = _time_prepared(runners, x, threads=threads, device=cache.device, **settings)
    for key, reason in failed.items():
        found[key] = {"status": "unavailable", "error": reason}
    for key, lat in lats.items():
        found[key] = {
            "status": "ok",
            "median_ms": lat.median_ms,
            "iqr_ms": lat.iqr_ms,
            "note": prepared[key].note,
        }
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for name in models:
        entries[name] = {b: found[f"{name}/{b}/fp32"] for b in backends}
        for b, e in entries[name].items():
            if e["status"] != "ok":
                log(f"{name} on {b} (batch {x.shape[0]}): unavailable ({e['error']})")
    return entries


def _prepare(
    backend: str,
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    threads: int,
    cache: BackboneCache,
) -> tuple[str, Prepared | None]:
    """("", the model ready on `backend`, one untimed call made) or (why not, None).

    Warnings are silenced here: they are about the exported or rewritten copy (tracer
    warnings, a pay-off notice), not about the caller's model or the timing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = prepare_backend(backend, name, model, x, threads=threads, amp=False, cache=cache)
            with torch.inference_mode():
                p.runner(x.to(cache.device))  # a call that fails here would fail the timing
    except Exception as e:  # any failure is this backend's, recorded and reported
        return first_line(e, with_type=True), None
    return "", p


def _time_prepared(
    runners: Mapping[str, nn.Module], x: torch.Tensor, **settings: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """(latencies, {key: why it failed}): all interleaved per runtime; should that fail
    midway, each candidate alone, so that one failing candidate costs only itself."""
    if not runners:
        return {}, {}
    try:
        return measure_grouped(runners, x, **settings), {}
    except Exception:
        pass
    lats: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for key, runner in runners.items():
        try:
            lats.update(measure_grouped({key: runner}, x, **settings))
        except Exception as e:
            failed[key] = first_line(e, with_type=True)
    return lats, failed
