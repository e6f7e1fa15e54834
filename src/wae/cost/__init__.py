"""Honest cost measurement: operation counts, parameters and wall-clock latency.

The paper's claim is "about 1/4 of the FLOPs"; this package is how the library checks that
claim and whether it turns into real speed. Everything here is a library function so that
scripts, tests and the CLI report the same numbers, measured the same way.

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

Modules, one concern each: :mod:`.ops` (counting), :mod:`.latency` (timing),
:mod:`.machine` (the machine description), :mod:`.profiling` (:func:`profile` and
:func:`compare`), :mod:`.baselines` (full / half resolution / WAE, what ``wae profile`` runs),
:mod:`.backends` (one model made ready on one deploy backend: optimize_for_inference, ONNX
Runtime, torch.compile, OpenVINO), :mod:`.deploy` (:func:`compare_batches`: several batch
sizes, eager and on the deploy backends, each model's fastest named) and :mod:`.report` (the
table and JSON renderings). The pay-off check (the MAC ratio and
:class:`PayoffWarning`) lives in :mod:`wae.models.payoff`, as WAENet.from_backbone runs it and
models import no service; it is re-exported here, as are the CPU facts of :mod:`wae.host`.

Quick look::

    print(wae.profile(net, 224))                   # one model: parts, MACs, params, latency
    print(wae.profile(net, 224, baselines=True))   # vs its backbone at full and half size
"""

from ..models.payoff import PAYOFF_MIN_RATIO, Payoff, PayoffWarning, check_payoff, mac_payoff
from ..runtime import check_device
from ._common import ExampleInput, MeasureError, check_timing
from .backends import ALL_BACKENDS, BackendUnavailable, prepare_backend
from .baselines import PAPER_BOUND, BaselineComparison, build_baselines, compare_baselines
from .deploy import (
    DEPLOY_BACKENDS,
    QUICK_DEPLOY_BACKENDS,
    compare_batches,
    fastest_of,
    resolve_backends,
)
from .latency import Latency, measure_interleaved, measure_latency
from .machine import (
    FAST_PRECISION_FLAGS,
    LOW_PRECISION_FLAGS,
    cpu_features,
    machine_info,
    runs_fast,
)
from .ops import OTHER, OpCount, PartCount, PartsSpec, count_ops
from .profiling import Comparison, ModelProfile, compare, profile
from .report import comparison_to_dict, format_profile, format_table

__all__ = [
    "ALL_BACKENDS",
    "DEPLOY_BACKENDS",
    "OTHER",
    "QUICK_DEPLOY_BACKENDS",
    "PAPER_BOUND",
    "PAYOFF_MIN_RATIO",
    "BackendUnavailable",
    "BaselineComparison",
    "Comparison",
    "ExampleInput",
    "Latency",
    "MeasureError",
    "ModelProfile",
    "OpCount",
    "PartCount",
    "PartsSpec",
    "Payoff",
    "PayoffWarning",
    "build_baselines",
    "check_device",
    "check_payoff",
    "check_timing",
    "compare",
    "compare_baselines",
    "compare_batches",
    "comparison_to_dict",
    "count_ops",
    "fastest_of",
    "format_profile",
    "format_table",
    "mac_payoff",
    "machine_info",
    "cpu_features",
    "runs_fast",
    "FAST_PRECISION_FLAGS",
    "LOW_PRECISION_FLAGS",
    "measure_interleaved",
    "measure_latency",
    "prepare_backend",
    "profile",
    "resolve_backends",
]
