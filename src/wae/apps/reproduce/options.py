"""What `wae reproduce` is asked to do, and how it talks while doing it.

The options are read once, by :func:`wae.apps.reproduce.plan.prepare`; every later step works on
the plan and configs derived from them (options -> plan -> configs -> results).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NOISE_VARS", "QUICK_OVERRIDES", "Log", "ReproduceOptions"]

NOISE_VARS = [0.01, 0.02, 0.05, 0.1]  # the paper's Table 7 (V = 0 is the clean accuracy)
QUICK_OVERRIDES = [
    "model.kwargs.width=8",
    "data.subset=600",
    "eval.subset=500",
]


@dataclass
class ReproduceOptions:
    """What `wae reproduce` was asked to do (see the CLI for the meaning of each)."""

    output: str = "runs/reproduce"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    quick: bool = False
    seeds: list[int] | None = None  # default: [0] quick, [0, 1] otherwise
    subset: int | str | None = None  # int, "all", or None (the recipe's, else auto)
    recipe: str | None = None
    baseline_recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    retrain_changed: bool = False
    threads: int | None = 1  # the budget estimate assumes one thread (see the CLI)
    budget_minutes: float = 50.0
    plan_only: bool = False
    verbose: bool = True
    latency: bool = True
    backends: list[str] | None = None  # timed besides eager (None: wae.cost's default by mode)
    photo_steps: int | None = None  # colour-WAE steps for the photo figure (default by mode)
    jobs: int | None = None  # seeds trained side by side (default: cores // threads)
    train_only: bool = False  # train the runs, then stop: no measurements, figures or report
    methods: list[str] | None = None  # the rows to run (None: all; their needs are added)


class Log:
    """Prints progress lines (flushed, so a seed process's log file is current) unless quiet."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __call__(self, msg: str = "") -> None:
        if self.verbose:
            print(msg, flush=True)
