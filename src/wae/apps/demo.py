"""`wae demo`: the README's main job, end to end on the embedded Fashion-MNIST.

The story a user brings: train the full-resolution SmallVGG (the packaged recipe
``fashion_mnist_baseline``, standing for the user's own trained model), then accelerate it
(:mod:`wae.apps.accelerate`): a WAE started from its weights and taught by it, and the same network
on the half-size image (I_R) with the same teaching, all measured in one run. Writes

    OUT/results.json   {"baseline": {top1, top5, macs, latency_ms, ...}, "wae": {...},
                        "half": {...}, "speedup", "mac_ratio", "verdict", settings, machine,
                        "precision": {run: the training precision used}, "precision_summary"}
    OUT/results.md     the table the command prints, and the training precision
    OUT/decomposition.png   test images, I_L, I_H and the reconstruction
    OUT/baseline/, OUT/wae/, OUT/half/   the training runs (checkpoints, metrics, config)

Every run trains with the teacher recipe's ``runtime.precision`` (the students inherit it:
:func:`wae.apps.accelerate.student_configs`). The packaged recipe's is "auto": bf16 autocast where
the device runs it fast, else fp32 with a note saying why. Test accuracies are computed in
float32 either way.

Re-running reuses finished runs (same config) and continues unfinished ones. The demo owns OUT
while it runs (``OUT/.wae.lock``, :mod:`wae.runlock`): a second command writing there is
refused, naming the first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import cost
from ..checkpoint import load_model
from ..errors import WAEError
from ..progress import TIMED_BASIS, JobProgress, timed_runs
from ..runlock import RunLock
from .accelerate import (
    QUICK_DATA,
    QUICK_OVERRIDES,
    add_precision,
    epoch_seconds,
    format_results,
    run_acceleration,
    student_configs,
    teacher_doc_from_config,
    write_results,
)

__all__ = ["BASELINE_RECIPE", "format_results", "run_demo"]

BASELINE_RECIPE = "fashion_mnist_baseline"
# The teacher's part of the smoke test (the students get accelerate's QUICK_OVERRIDES).
_QUICK_BASELINE = (
    *QUICK_DATA,
    "model.kwargs.width=8",
    "stages.1.epochs=1",
    "stages.1.schedule.warmup_epochs=0",
)


def run_demo(
    output: str | os.PathLike[str],
    *,
    recipe: str | os.PathLike[str] = BASELINE_RECIPE,
    quick: bool = False,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    student_overrides: Sequence[str] = (),
    latency_batch: int = 256,
    threads: int | None = None,
    min_run_time: float = 2.0,
    log: Any = print,
    backends: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train the full-resolution network of `recipe`, accelerate it, write the results.

    `overrides` apply to every run (e.g. "data.subset=20000"), `student_overrides` to the
    students only (e.g. "stages.classifier.epochs=20"); `backends` as `wae accelerate`'s.
    Everything is checked, and `output` taken, before any training. Returns results.json's dict."""
    from ..train import load_config, run_training

    t0 = time.perf_counter()
    backends = _checked_timing(latency_batch, threads, min_run_time, backends, quick)
    lock = RunLock(output, "wae demo")  # checks the path
    out = lock.dir
    base_over = [*(_QUICK_BASELINE if quick else ()), *overrides]
    stud_over = [*(QUICK_OVERRIDES if quick else ()), *overrides, *student_overrides]
    base_cfg = load_config(recipe, base_over)
    tdir = out / "baseline" / "final"
    students = student_configs(tdir, stud_over, doc=teacher_doc_from_config(base_cfg))  # checked
    lock.check()
    job = JobProgress(  # the whole job: the three runs, their steps timed on this machine
        timed_runs({"baseline": base_cfg, **students}, out, teacher=base_cfg, overwrite=overwrite),
        log=log,
        basis=TIMED_BASIS,
    )
    with lock, job:
        log(
            f"[demo] training the full-resolution network ({Path(str(recipe)).name}) into "
            f"{out / 'baseline'}"
        )
        teacher = run_training(
            base_cfg,
            out / "baseline",
            resume=not overwrite,
            overwrite=overwrite,
            hooks=job.hooks("baseline"),
        )
        job.run_done("baseline")
        if not teacher.get("complete"):
            raise WAEError(f"The run in {out / 'baseline'} did not complete; rerun `wae demo`.")
        teacher_s = time.perf_counter() - t0
        log("[demo] accelerating it: WAE + KD and I_R + KD, started from its weights")
        results = run_acceleration(
            out,
            tdir,
            student_configs(tdir, stud_over),
            overwrite=overwrite,
            quick=quick,
            latency_batch=latency_batch,
            threads=threads,
            min_run_time=min_run_time,
            log=log,
            progress=job,
            backends=backends,
        )
        results["teacher_seconds"] = round(teacher_s, 1)
        results["epoch_seconds"] = {
            "baseline": epoch_seconds(out / "baseline"),
            **results["epoch_seconds"],
        }
        results["train_seconds"] = round(teacher_s + results["train_seconds"], 1)
        results["total_seconds"] = round(time.perf_counter() - t0, 1)
        add_precision(results, out, baseline=teacher)
        log(f"[demo] {results['precision_summary']}")
        write_results(out, results)
        wae_model = load_model(results["wae"]["checkpoint"])[0]
        _decomposition_figure(wae_model, results["configs"]["wae"], out / "decomposition.png")
    return results


def _checked_timing(
    latency_batch: int,
    threads: int | None,
    min_run_time: float,
    backends: Sequence[str] | None,
    quick: bool,
) -> tuple[str, ...]:
    """The timing options checked before any work; the deploy backends resolved
    (:func:`wae.cost.resolve_backends`)."""
    cost.check_timing(batch_size=latency_batch, threads=threads, min_run_time=min_run_time)
    return cost.resolve_backends(backends, quick=quick)


def _decomposition_figure(model: torch.nn.Module, config: dict[str, Any], path: Path) -> None:
    """Test images with the WAE's I_L, I_H and reconstruction (:mod:`wae.figures`, shared
    with `wae reproduce`: every channel shown, stretched panels captioned)."""
    from ..figures import draw_decomposition
    from ..train import build_datasets

    ds = build_datasets(config, ["test"])["test"]  # the images the run was tested on
    images = [ds[i][0] for i in range(6)]
    title = f"WAE decomposition of {config['data']['dataset']} test images (WAE + KD)"
    draw_decomposition(model, images, path, title)
