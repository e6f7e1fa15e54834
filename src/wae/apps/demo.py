"""`wae demo`: the README's main job, end to end on the embedded Fashion-MNIST.

The story a user brings: a trained full-resolution SmallVGG (standing for the user's own
trained model), accelerated as :mod:`wae.apps.accelerate` does: a WAE started from its weights
and taught by it, and the same network on the half-size image (I_R) with the same teaching,
all measured in one run.

By default the trained network is the one wae ships (:data:`wae.pretrained.DEMO_TEACHER`,
made from the recipe ``fashion_mnist_baseline`` by ``scripts/build_demo_teacher.py``) and the
students train a short budget with the light encoder (:data:`FAST_STUDENTS`): minutes on a
2-core CPU. ``full`` (`wae demo --full`) trains the network here from the recipe first and
the students the stage template's whole budget with the paper's encoder: about an hour.
Writes

    OUT/results.json   {"baseline": {top1, top5, macs, latency_ms, ...}, "wae": {...},
                        "half": {...}, "speedup", "mac_ratio", "verdict", settings, machine,
                        "precision": {run: the training precision used}, "precision_summary",
                        "demo": "fast" | "full", "teacher_source": where the network came from}
    OUT/results.md     the table the command prints, and the training precision
    OUT/decomposition.png   test images, I_L, I_H and the reconstruction
    OUT/baseline/final   the trained network (copied from the package, or trained: --full)
    OUT/wae/, OUT/half/   the students' training runs (checkpoints, metrics, config)

Every run trains with the teacher's ``runtime.precision`` (the students inherit it:
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
from ..checkpoint import load_model, read_meta
from ..encoders import DEFAULT_ENCODER
from ..errors import WAEError
from ..pretrained import DEMO_TEACHER, copy_pretrained, pretrained_card, pretrained_dir
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

__all__ = ["BASELINE_RECIPE", "FAST_ENCODER", "FAST_STUDENTS", "format_results", "run_demo"]

BASELINE_RECIPE = "fashion_mnist_baseline"
# The teacher's part of the smoke test (the students get accelerate's QUICK_OVERRIDES).
_QUICK_BASELINE = (
    *QUICK_DATA,
    "model.kwargs.width=8",
    "stages.1.epochs=1",
    "stages.1.schedule.warmup_epochs=0",
)
# The default demo's students: the short budget on top of recipes/templates/accelerate.toml
# (`--full` trains the template's whole budget), and the light encoder (`--full`: the paper's).
# The teacher's logits are computed once (teacher.cache), which needs the same images every
# epoch (no augmentation): a distilling step then costs the student's alone. Chosen so that
# the demo ends within ten minutes on a 2-core CPU (docs/reproduce.md).
FAST_STUDENTS = (
    "data.augment=false",
    "teacher.cache=true",
    "data.subset=16000",
    "stages.1.epochs=1",
    "stages.2.epochs=8",
    "stages.3.epochs=1",
    "eval.noise_vars=[]",
)
FAST_ENCODER = "light"


def run_demo(
    output: str | os.PathLike[str],
    *,
    full: bool = False,
    recipe: str | os.PathLike[str] | None = None,
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
    """Accelerate the demo's trained network, write the results; returns results.json's dict.

    By default the network is the packaged one (:data:`wae.pretrained.DEMO_TEACHER`) and the
    students train the short budget :data:`FAST_STUDENTS` with the light encoder; `full`
    trains the network here from `recipe` (default :data:`BASELINE_RECIPE`) and the students
    the stage template's whole budget with the paper's encoder. `overrides` apply to every
    run trained here (e.g. "data.subset=20000"), `student_overrides` to the students only;
    `backends` as `wae accelerate`'s. Everything is checked, and `output` taken, before any
    training."""
    from ..train import load_config

    t0 = time.perf_counter()
    if recipe is not None and not full:
        raise WAEError(
            f"--recipe {recipe} names the network to train, and only `wae demo --full` trains "
            f"it (the default demo accelerates the packaged trained network). Add --full."
        )
    backends = _checked_timing(latency_batch, threads, min_run_time, backends, quick)
    lock = RunLock(output, "wae demo")  # checks the path
    out = lock.dir
    tdir = out / "baseline" / "final"
    budget = () if full else FAST_STUDENTS
    budget = [*budget, *QUICK_OVERRIDES] if quick else budget
    stud_over = [*budget, *overrides, *student_overrides]
    encoder = DEFAULT_ENCODER if full else FAST_ENCODER
    if full:
        base_over = [*(_QUICK_BASELINE if quick else ()), *overrides]
        base_cfg = load_config(recipe or BASELINE_RECIPE, base_over)
        doc = teacher_doc_from_config(base_cfg)
    else:
        base_cfg, doc = None, read_meta(pretrained_dir(DEMO_TEACHER))
    students = student_configs(tdir, stud_over, doc=doc, encoder=encoder)  # checked
    lock.check()
    common = dict(
        overwrite=overwrite,
        quick=quick,
        latency_batch=latency_batch,
        threads=threads,
        min_run_time=min_run_time,
        log=log,
        backends=backends,
    )
    with lock:
        if base_cfg is None:
            results = _accelerate_packaged(out, tdir, students, **common)
        else:
            results = _train_and_accelerate(out, tdir, base_cfg, students, **common)
        results["demo"] = "full" if full else "fast"
        results["total_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"[demo] {results['precision_summary']}")
        write_results(out, results)
        wae_model = load_model(results["wae"]["checkpoint"])[0]
        _decomposition_figure(wae_model, results["configs"]["wae"], out / "decomposition.png")
    return results


def _accelerate_packaged(
    out: Path, tdir: Path, students: dict[str, Any], **common: Any
) -> dict[str, Any]:
    """The students of the packaged network, copied (hashes checked) to `tdir`."""
    card = pretrained_card(DEMO_TEACHER)
    copy_pretrained(DEMO_TEACHER, tdir)
    common["log"](
        f"[demo] the trained network: the packaged {DEMO_TEACHER} (recipe {card['recipe']}, "
        f"test top-1 {card['test']['top1']:.2f} %, made by `{card['command']}`), copied to {tdir}"
    )
    common["log"]("[demo] accelerating it: WAE + KD and I_R + KD, started from its weights")
    results = run_acceleration(out, tdir, students, **common)
    results["teacher_seconds"] = 0.0
    results["teacher_source"] = {"packaged": DEMO_TEACHER, **card}
    results["epoch_seconds"] = {"baseline": card["train_seconds"], **results["epoch_seconds"]}
    add_precision(results, out, baseline=card["training"])
    return results


def _train_and_accelerate(
    out: Path, tdir: Path, base_cfg: Any, students: dict[str, Any], **common: Any
) -> dict[str, Any]:
    """Train the network of `base_cfg` into OUT/baseline (its final checkpoint `tdir`), then
    its students; one job."""
    from ..train import run_training

    t0 = time.perf_counter()
    log, overwrite = common["log"], common["overwrite"]
    job = JobProgress(  # the whole job: the three runs, their steps timed on this machine
        timed_runs({"baseline": base_cfg, **students}, out, teacher=base_cfg, overwrite=overwrite),
        log=log,
        basis=TIMED_BASIS,
    )
    with job:
        log(
            f"[demo] training the full-resolution network ({base_cfg.name}) into {out / 'baseline'}"
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
        results = run_acceleration(out, tdir, students, progress=job, **common)
    results["teacher_seconds"] = round(teacher_s, 1)
    results["teacher_source"] = {"trained": str(out / "baseline"), "recipe": base_cfg.name}
    results["epoch_seconds"] = {
        "baseline": epoch_seconds(out / "baseline"),
        **results["epoch_seconds"],
    }
    results["train_seconds"] = round(teacher_s + results["train_seconds"], 1)
    add_precision(results, out, baseline=teacher)
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
