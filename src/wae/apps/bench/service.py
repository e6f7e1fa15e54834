"""The service behind `wae bench`: presets, the whole benchmark (or the per-part timing) with
every setting checked first, its result files and the JSON headline.

    from wae.apps.bench import run_benchmark

    result = run_benchmark(quick=True, output_dir="runs/bench", name="quick")
    print(result.markdown)          # the tables; result.doc is the JSON document
    result.paths                    # [runs/bench/quick.md, runs/bench/quick.json]
    result.headline()               # what `wae bench --json` prints

A setting left None takes the preset's value (:data:`QUICK_SETTINGS` with ``quick``, else
:data:`DEFAULT_SETTINGS`). The result files are ``<output_dir>/<name>.md`` and ``.json``
(name: ``bench-<time>``, or ``quick`` with ``quick``; ``-parts`` appended with ``parts``),
checked writable before any model is built and written atomically once measured.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...encoders import DEFAULT_ENCODER
from .backends import ALL_BACKENDS
from .matrix import check_settings, run_bench
from .models import QUICK_BACKBONE
from .parts import format_parts_markdown, part_precision, time_parts
from .report import format_markdown

__all__ = [
    "DEFAULT_SETTINGS",
    "QUICK_SETTINGS",
    "BenchResult",
    "bench_settings",
    "headline",
    "result_stem",
    "run_benchmark",
]

#: quick: tiny models, one thread, very short timing (a smoke run for CI, < 1 min).
QUICK_SETTINGS: Mapping[str, Any] = {
    "backbone": [QUICK_BACKBONE],
    "batch_size": [1],
    "threads": ["1"],
    "backends": ["eager", "channels_last", "optimized", "ort", "ort_optimized"],
    "precision": ["fp32"],
    "min_run_time": 0.05,
    "rounds": 1,
    "warmup": 1,
}
DEFAULT_SETTINGS: Mapping[str, Any] = {
    "backbone": ["vgg16", "resnet50"],
    "batch_size": [1, 16],
    "threads": ["all", "1"],  # the first config (all cores, batch 1) is the headline
    "backends": list(ALL_BACKENDS),
    "precision": ["fp32"],
    "min_run_time": 2.0,
    "rounds": 3,
    "warmup": 2,
}


@dataclass
class BenchResult:
    """What :func:`run_benchmark` measured: the JSON document, its Markdown tables and the
    files written (none when not saved)."""

    doc: dict[str, Any]
    markdown: str
    paths: list[Path] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        """See :func:`headline`."""
        return headline(self.doc)


def bench_settings(quick: bool = False, **given: Any) -> dict[str, Any]:
    """The preset's settings (quick or default), each replaced by `given`'s value unless that
    is None. Keys: those of :data:`DEFAULT_SETTINGS`; any other key is refused."""
    base = QUICK_SETTINGS if quick else DEFAULT_SETTINGS
    unknown = set(given) - set(base)
    if unknown:
        raise TypeError(f"Unknown bench setting(s) {sorted(unknown)}; known: {list(base)}.")
    chosen = {k: given[k] if given.get(k) is not None else v for k, v in base.items()}
    return {k: list(v) if isinstance(v, list) else v for k, v in chosen.items()}


def result_stem(name: str | None = None, *, quick: bool = False, parts: bool = False) -> str:
    """The result files' name without extension: `name`, or ``quick`` / ``bench-<time>``;
    with ``-parts`` appended for the per-part timing."""
    stem = name or ("quick" if quick else f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    return f"{stem}-parts" if parts else stem


def run_benchmark(
    *,
    quick: bool = False,
    parts: bool = False,
    backbone: Sequence[str] | None = None,
    input_size: int | None = None,
    batch_size: Sequence[int] | None = None,
    threads: Sequence[int | str] | None = None,
    backends: Sequence[str] | None = None,
    device: str = "cpu",
    amp: bool = False,
    precision: Sequence[str] | None = None,
    num_classes: int | None = None,
    encoder: str = DEFAULT_ENCODER,
    min_run_time: float | None = None,
    rounds: int | None = None,
    warmup: int | None = None,
    output_dir: str | os.PathLike[str] = "runs/bench",
    name: str | None = None,
    save: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> BenchResult:
    """Benchmark as `wae bench` does (see the module docstring): every setting and the result
    files are checked before any model is built; then the matrix (:func:`run_bench`) or, with
    `parts`, where WAE's time goes (:func:`time_parts`) is timed and, when `save`, written to
    `output_dir`. `log` receives the progress lines."""
    s = bench_settings(
        quick,
        backbone=backbone,
        batch_size=batch_size,
        threads=threads,
        backends=backends,
        precision=precision,
        min_run_time=min_run_time,
        rounds=rounds,
        warmup=warmup,
    )
    common = dict(input_size=input_size, device=device, num_classes=num_classes, encoder=encoder)
    stem = result_stem(name, quick=quick, parts=parts)
    files = [Path(output_dir) / f"{stem}{ext}" for ext in (".md", ".json")] if save else []
    paths = _check(s, common, parts, files)
    if parts:
        doc, text = _measure_parts(s, input_size=input_size, encoder=encoder, log=log)
    else:
        doc = run_bench(
            s["backbone"],
            batch_sizes=s["batch_size"],
            threads=s["threads"],
            backends=s["backends"],
            amp=amp,
            precisions=s["precision"],
            min_run_time=s["min_run_time"],
            rounds=s["rounds"],
            warmup=s["warmup"],
            log=log,
            **common,
        )
        text = format_markdown(doc)
    if paths:  # not saved: none
        _write(paths, doc, text)
        log(f"wrote {Path(output_dir) / stem}.md and .json")
    return BenchResult(doc, text, paths)


def _check(
    s: Mapping[str, Any], common: Mapping[str, Any], parts: bool, files: Sequence[Path]
) -> list[Path]:
    """Every setting and the result files' paths (none: not saved), checked before any model
    is built: a bad value or an unwritable output folder must not cost a whole benchmark.
    Returns the paths."""
    from ...outputs import check_output_file

    check_settings(
        backbones=s["backbone"],
        backends=s["backends"],
        batch_sizes=s["batch_size"],
        threads=s["threads"],
        min_run_time=s["min_run_time"],
        rounds=s["rounds"],
        warmup=s["warmup"],
        precisions=s["precision"],
        **common,
    )
    if parts:
        part_precision(s["precision"])
    return [check_output_file(f, "The bench result file") for f in files]


def _measure_parts(
    s: Mapping[str, Any], *, input_size: int | None, encoder: str, log: Callable[[str], None]
) -> tuple[dict[str, Any], str]:
    """The per-part timing of every (backbone, batch size, thread count): (JSON, Markdown)."""
    results = [
        time_parts(
            backbone,
            input_size=input_size,
            batch_size=bs,
            threads=t,
            min_run_time=s["min_run_time"],
            rounds=s["rounds"],
            warmup=s["warmup"],
            precision=part_precision(s["precision"]),
            encoder=encoder,
            log=log,
        )
        for backbone in s["backbone"]
        for bs in s["batch_size"]
        for t in s["threads"]
    ]
    return {"parts": results}, "\n".join(format_parts_markdown(r) for r in results)


def _write(paths: Sequence[Path], doc: Mapping[str, Any], text: str) -> None:
    """The Markdown and the JSON document, each written atomically (a crash never leaves a
    half-written one)."""
    from ...checkpoint import atomic_write_bytes

    texts = (text + "\n", json.dumps(doc, indent=2) + "\n")
    for path, data in zip(paths, texts, strict=True):
        atomic_write_bytes(path, data.encode())


def headline(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON printed by ``wae bench --json``: the first config's figures at the top level
    (speedup = full network's best backend / WAE's best backend, every backend's numbers
    beside it), then machine, settings and every config. A per-part document is returned
    as it is."""
    if "configs" not in doc or not doc["configs"]:
        return dict(doc)
    first = doc["configs"][0]
    out = {
        "speedup": first["speedup"],
        "backbone": first["config"]["backbone"],
        "input_size": first["config"]["input_size"],
        "batch_size": first["config"]["batch_size"],
        "threads": first["config"]["threads"],
        "best": first["best"],
        "half_speedup": first["half_speedup"],
        "speedup_per_backend": first["speedup_per_backend"],
        "mac_ratio": first["mac_ratio"]["wae"],
        "backends": first["models"],
        # per precision and model: best backend, median_ms, speedup_same_precision,
        # speedup_vs_fp32
        "by_precision": {p: v["best"] for p, v in first.get("precisions", {}).items()},
        "fastest": first.get("fastest"),
    }
    out.update({k: v for k, v in doc.items() if k not in ("speedup",)})
    return out
