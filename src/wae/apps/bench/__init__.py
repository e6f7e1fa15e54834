"""Deployment benchmark: WAE against the full- and half-resolution network, per backend.

    from wae.apps.bench import run_bench, format_markdown
    doc = run_bench(["small_vgg_28"], batch_sizes=[1], threads=[1], backends=["eager", "ort"])
    print(format_markdown(doc))

One concern per module:

* :mod:`~wae.apps.bench.models`: the full / half / wae trio of a backbone (``build_models``);
* :mod:`~wae.apps.bench.backends`: one model made ready on one backend (eager, channels_last,
  compile, optimized, ort, ort_optimized) and the per-backbone cache of exports (the
  service :mod:`wae.cost.backends`, re-exported);
* :mod:`~wae.apps.bench.matrix`: the (backbone, batch size, thread count) matrix, timed with the
  library's timer one runtime at a time (``run_bench``);
* :mod:`~wae.apps.bench.report`: its Markdown tables (``format_markdown``);
* :mod:`~wae.apps.bench.parts`: where WAE's time goes, part by part (``time_parts``);
* :mod:`~wae.apps.bench.service`: what ``wae bench`` does, for Python callers too: the presets,
  every setting checked first, the result files and the JSON headline (``run_benchmark``).

Scratch files (the ONNX exports) go to a temporary directory unless a ``workdir`` is given;
``wae bench`` writes its results under ``--output-dir`` (default ``runs/bench``).
"""

from .backends import (
    ALL_BACKENDS,
    PYTORCH_TUNED,
    BackboneCache,
    BackendUnavailable,
    Prepared,
    prepare_backend,
)
from .matrix import BenchConfig, check_settings, resolve_threads, run_bench, run_config
from .models import MODELS, QUICK_BACKBONE, BenchError, build_models
from .parts import (
    PART_PRECISIONS,
    PARTS,
    format_parts_markdown,
    part_precision,
    time_parts,
    wae_parts,
)
from .report import format_markdown
from .service import (
    DEFAULT_SETTINGS,
    QUICK_SETTINGS,
    BenchResult,
    bench_settings,
    headline,
    result_stem,
    run_benchmark,
)

__all__ = [
    "ALL_BACKENDS",
    "DEFAULT_SETTINGS",
    "MODELS",
    "PARTS",
    "PART_PRECISIONS",
    "PYTORCH_TUNED",
    "QUICK_BACKBONE",
    "QUICK_SETTINGS",
    "BackboneCache",
    "BackendUnavailable",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "Prepared",
    "bench_settings",
    "build_models",
    "check_settings",
    "format_markdown",
    "format_parts_markdown",
    "headline",
    "part_precision",
    "prepare_backend",
    "resolve_threads",
    "result_stem",
    "run_bench",
    "run_benchmark",
    "run_config",
    "time_parts",
    "wae_parts",
]
