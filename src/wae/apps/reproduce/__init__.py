"""Reproduce the paper's comparison on a small dataset: `wae reproduce`.

    from wae.apps.reproduce import ReproduceOptions, run_reproduce

    results = run_reproduce(ReproduceOptions(output="runs/reproduce", quick=True))

Trains (or reuses) every method of the paper's tables with the same backbone, data and
budget, measures accuracy, noise robustness, MACs and CPU latency, and writes report.md,
results.json, config.json and figures. Importing this package also registers the
``pruned_net`` model builder, so checkpoints of the pruned peer load with
``wae.checkpoint.load_model``.
"""

from ...models.pruned import pruned_net
from .methods import METHODS, Method, ReproduceError
from .pruning import taylor_prune
from .report import PAPER, claims, format_report, write_report
from .runner import ReproduceOptions, run_reproduce

__all__ = [
    "METHODS",
    "Method",
    "PAPER",
    "ReproduceError",
    "ReproduceOptions",
    "claims",
    "format_report",
    "pruned_net",
    "run_reproduce",
    "taylor_prune",
    "write_report",
]
