"""Where `wae reproduce` keeps each method's run, and what is already there.

Layout of the output directory::

    OUT/runs/<method>/seed<s>/   one engine run per method and seed (config.json, stage*/,
                                 final/, results.json, ...); I_L alone and the pruned network
                                 also keep the checkpoint they start from (init-*/, pruned-*/),
                                 the full run a copy of its final/ that starts and teaches the
                                 distillation rows (teacher-*/)
    OUT/runs/wae/seed<s>/eval_stage2.json   the evaluation of WAE without stage 3
    OUT/logs/seed<s>.log         a seed trained in its own process (--jobs > 1)
    OUT/config.json              the options, both recipes resolved, every method's config
    OUT/results.json             every number of the report
    OUT/report.md                the paper's tables with our numbers beside them, verdicts
    OUT/figures/*.png
    OUT/.wae.lock                the lock held by the `wae reproduce` writing OUT (each run
                                 directory has its own, held while that run trains)

Reuse: a method's run is reused when its directory holds a run of the same config fingerprint
(the engine's ``resume=True``: a complete run is read back, a partial one continues). A
directory holding a run of a *different* config (the recipe changed) is refused before
anything trains, unless ``retrain_changed``: then that run starts over and the engine moves the
old files to ``replaced-<time>/`` (nothing is deleted). I_L alone, the pruned network and the
distillation rows start from checkpoints named by what made them (``model.init`` and
``teacher.checkpoint``, absolute paths, are part of their fingerprint): a moved output
directory makes those runs count as changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...checkpoint import META
from ...train import rundir
from ...train.config import config_diff, fingerprint

__all__ = ["run_dir", "run_status"]


def run_dir(out: Path, key: str, seed: int) -> Path:
    """The run directory of method `key` and `seed` under the output directory `out`."""
    return out / "runs" / key / f"seed{seed}"


def run_status(run_dir: Path, cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """("train" | "resume" | "reuse" | "changed", config differences) of a method's run dir."""
    st = rundir.inspect(run_dir)
    if st.empty:
        return "train", []
    if st.config is not None and fingerprint(st.config) != fingerprint(cfg):
        return "changed", config_diff(st.config, cfg)
    final = run_dir / rundir.FINAL / META
    done = (run_dir / rundir.RESULTS).is_file() and final.is_file()
    return ("reuse" if done else "resume"), []
