"""`wae accelerate`: a trained full-resolution classifier in; a WAE started from its weights and
taught by it out, beside the plain half-size alternative, both measured against it.

The trained network (the teacher) is a checkpoint of ours, or a backbone name with a
safetensors state_dict (imported once into ``OUT/teacher`` so that everything after reads
data only). Two students train through the engine with the teacher's distillation loss, from
the same start (the teacher's weights), for the same epochs (the stage template
``recipes/templates/accelerate.toml``, changeable with overrides):

    OUT/wae/     WAE: the three stages, I_L network and s_L head copied from the teacher
    OUT/half/    I_R + KD: the teacher's network on the half-size image
    OUT/results.json, OUT/results.md   the table: accuracy, MACs, latency, speed-up, verdict

Before any training the WAE's MAC ratio is computed: below
:data:`wae.models.payoff.PAYOFF_MIN_RATIO` the command stops (``force`` goes on).
"""

from __future__ import annotations

import os
import time
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from .. import cost
from ..checkpoint import (
    META,
    CheckpointError,
    CheckpointMeta,
    atomic_write_bytes,
    atomic_write_json,
    load_model,
    read_checkpoint_meta,
    read_meta,
)
from ..encoders import DEFAULT_ENCODER, check_encoder
from ..errors import WAEError, first_line
from ..models import WAE_ONLY_KWARGS, PlainNet, build_named, is_model
from ..models.trained import spec_backbone
from ..progress import JobProgress, job_progress
from ..runlock import RunLock
from ..runtime import describe_precision
from ..train.setup import recipe_code
from .accelerate_report import ROWS, fastest_fields, format_results, verdict_lines

__all__ = [
    "AccelerateError",
    "QUICK_DATA",
    "QUICK_OVERRIDES",
    "accelerate",
    "check_payoff",
    "add_precision",
    "format_results",
    "kd_settings",
    "run_acceleration",
    "student_configs",
    "teacher_doc_from_config",
    "write_results",
]

# A smoke test of the whole path in well under a minute; its numbers mean nothing.
QUICK_DATA = ("data.subset=600", "data.val_subset=200", "eval.subset=500", "eval.noise_vars=[]")
QUICK_OVERRIDES = (
    *QUICK_DATA,
    "stages.1.epochs=1",
    "stages.2.epochs=1",
    "stages.2.schedule.warmup_epochs=0",
    "stages.3.epochs=1",
)


class AccelerateError(WAEError, ValueError):
    """A trained network or option `wae accelerate` cannot work from; the message says why."""


def _template() -> dict[str, Any]:
    text = (resources.files("wae") / "recipes" / "templates" / "accelerate.toml").read_text()
    return tomllib.loads(text)


def kd_settings() -> tuple[dict[str, float], dict[str, Any]]:
    """(the classifier stage's losses, the [teacher] table without its checkpoint) of the
    stage template: how this command distils, for others that distil the same way."""
    raw = _template()
    stage = next(s for s in raw["stages"] if s["name"] == "classifier")
    return dict(stage["losses"]), dict(raw.get("teacher", {}))


def _teacher_doc(checkpoint: Path) -> dict[str, Any]:
    """The teacher checkpoint's model.json, checked to hold a full-resolution network built
    by name (so its students can be built, and rebuilt from their checkpoints)."""
    try:
        m = read_checkpoint_meta(checkpoint)
    except CheckpointError as e:
        raise AccelerateError(f"--checkpoint: {e}") from None
    _backbone(m.doc, str(checkpoint))
    for key in ("input_size", "in_chans", "dataset"):
        if getattr(m, key) is None:
            raise AccelerateError(
                f"{checkpoint}'s metadata lacks {key!r}: use a checkpoint written by `wae train` "
                f"or imported by `wae accelerate --model ... --weights ...`."
            )
    return m.doc


def _backbone(doc: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(backbone name, builder kwargs) of the trained network in `doc`; an error unless it is
    a full-resolution network built from a named backbone (so students can be built)."""
    name, kwargs = spec_backbone(doc["spec"])
    if name is None:
        spec = doc["spec"]
        raise AccelerateError(
            f"{where} does not hold a full-resolution network built from a named backbone (it "
            f"holds {spec.get('name') or spec.get('backbone')!r}, built by "
            f"{spec['builder']!r}). Accelerate the trained full-resolution network, e.g. the "
            f"final checkpoint of a fashion_mnist_baseline run, or one trained with model.name "
            f"= 'timm:resnet18' and model.arch = 'full'."
        )
    return name, kwargs


def teacher_doc_from_config(cfg: Any) -> dict[str, Any]:
    """The model.json document a full-resolution run of `cfg` (a TrainConfig) will write, as
    far as :func:`student_configs` reads it: to check the students' configs before the
    teacher is trained (the demo)."""
    from ..train import resolve_image
    from ..train.config import config_to_dict

    size, chans = resolve_image(cfg)
    m = cfg.model
    spec = (
        {"builder": "registry", "name": m.name, "kwargs": dict(m.kwargs)}
        if is_model(m.name)
        else {"builder": "plain", "backbone": m.name, "kwargs": dict(m.kwargs)}
    )
    meta = {"dataset": cfg.data.dataset, "input_size": size, "in_chans": chans}
    return {"spec": spec, "meta": meta, "config": config_to_dict(cfg)}


def student_configs(
    checkpoint: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    half: bool = True,
    doc: dict[str, Any] | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> dict[str, Any]:
    """{"wae": TrainConfig[, "half": TrainConfig]} of the two students of the teacher in
    `checkpoint`: its backbone and data, the stage template, `overrides` on top; the WAE
    with the encoder `encoder` (:mod:`wae.encoders`).

    I_R + KD gets one stage with the classifier stage's optimiser, schedule and losses (no
    transform loss), for the classifying stages' epochs together: same start, same epochs,
    same distillation.
    """
    from ..train import load_config

    checkpoint = Path(checkpoint)
    doc = doc if doc is not None else _teacher_doc(checkpoint)
    name, kwargs = _backbone(doc, str(checkpoint))
    m = CheckpointMeta.from_doc(doc, checkpoint)
    tcfg = m.config
    raw = _template()
    raw["name"] = f"accelerate-{name}"
    raw["seed"] = tcfg.get("seed", 0)
    if check_encoder(encoder) != DEFAULT_ENCODER:  # the default is left out: configs (and
        kwargs = {**kwargs, "encoder": encoder}  # so reused runs) stay as they were
    raw["model"] = {"name": name, "arch": "wae", "kwargs": kwargs, "init": str(checkpoint)}
    data = dict(m.data_config or {"dataset": m.dataset, "val_fraction": 0.1})
    raw["data"] = {**data, "input_size": m.input_size, "in_chans": m.in_chans}
    if tcfg.get("eval"):
        raw["eval"] = dict(tcfg["eval"])
    raw["teacher"] = {**raw.get("teacher", {}), "checkpoint": str(checkpoint)}
    raw["runtime"] = {**raw.get("runtime", {}), **_teacher_precision(tcfg, overrides)}
    wae_cfg = load_config(raw, overrides)
    out = {"wae": wae_cfg}
    if half:
        out["half"] = _half_config(wae_cfg, load_config)
    return out


def _teacher_precision(tcfg: dict[str, Any], overrides: Sequence[str]) -> dict[str, str]:
    """The students' runtime.precision: the teacher's, or "auto" (bf16 where the device runs
    it fast, else fp32) for a teacher that recorded none; nothing when `overrides` use the
    older runtime.amp, which would contradict it. The stage template has no [runtime]."""
    if any(o.strip().startswith("runtime.amp") for o in overrides):
        return {}
    rt = tcfg.get("runtime") if isinstance(tcfg.get("runtime"), dict) else {}
    return {"precision": rt.get("precision") or "auto"}


def add_precision(results: dict[str, Any], out: Path, **runs: dict[str, Any]) -> None:
    """results["precision"] ({run: the training precision it used}) and
    results["precision_summary"] (the sentence saying it) from the students' results.json in
    OUT/<key> and `runs` (more runs' results, e.g. the demo's teacher)."""
    from ..train import rundir

    found = {**runs, **{k: rundir.read_results(out / k) or {} for k in results["configs"]}}
    results["precision"] = {k: r.get("precision") for k, r in found.items()}
    results["precision_summary"] = describe_precision(found)


def _half_config(wae_cfg: Any, load_config: Any) -> Any:
    """I_R + KD from the WAE's resolved config (see :func:`student_configs`)."""
    classifying = [s for s in wae_cfg.stages if s.classify]
    first = classifying[0]
    stage = replace(
        first,
        name="classifier",
        epochs=sum(s.epochs for s in classifying),
        freeze=[],
        calibrate_norms=False,
        losses={k: w for k, w in first.losses.items() if k != "transform"},
    )
    kwargs = {k: v for k, v in wae_cfg.model.kwargs.items() if k not in WAE_ONLY_KWARGS}
    model = replace(wae_cfg.model, arch="half", kwargs=kwargs)
    return load_config(replace(wae_cfg, name=f"{wae_cfg.name}-half", model=model, stages=[stage]))


# --------------------------------------------------------------------------------------------
# The teacher given as a backbone name + safetensors weights
# --------------------------------------------------------------------------------------------


def _imported_teacher(
    model: str,
    weights: Path,
    data: str,
    data_dir: str | None,
    input_size: int,
    in_chans: int | None,
) -> tuple[PlainNet, dict[str, Any]]:
    """(the trained network, its checkpoint document) from a backbone name, a safetensors
    state_dict of it and the data it was trained on; nothing is written."""
    from safetensors.torch import load_file

    from ..checkpoint import model_spec
    from ..data import build_dataset

    if weights.suffix != ".safetensors" or not weights.is_file():
        raise AccelerateError(
            f"--weights {weights} is not a .safetensors file. Save your model's weights with "
            f"safetensors.torch.save_file(model.state_dict(), 'model.safetensors') (wae never "
            f"unpickles a .pt file), or pass a wae checkpoint directory with --checkpoint."
        )
    ds = build_dataset(
        data,
        "train",
        data_dir=data_dir,
        input_size=input_size,
        in_chans=in_chans,
        train_transforms=False,
    )
    net = PlainNet.from_backbone(model, num_classes=ds.num_classes, in_chans=ds.in_chans)
    try:
        state = load_file(weights)
        net.net.load_state_dict(state)
    except Exception as e:  # a corrupt file, other keys or other shapes
        raise AccelerateError(
            f"The weights in {weights} do not fit {model!r} with {ds.num_classes} classes and "
            f"{ds.in_chans} channels ({first_line(e)}). Pass the state_dict of that "
            f"very network, trained on {data}."
        ) from None
    meta = {
        "dataset": str(data),
        "classes": list(ds.classes),
        "num_classes": ds.num_classes,
        "in_chans": ds.in_chans,
        "input_size": input_size,
        "mean": list(ds.mean),
        "std": list(ds.std),
        "imported_from": str(weights),
    }
    config = {"seed": 0, "data": {"dataset": str(data), "data_dir": data_dir, "val_fraction": 0.1}}
    return net, {"spec": model_spec(net), "meta": meta, "config": config}


# --------------------------------------------------------------------------------------------
# The command's work
# --------------------------------------------------------------------------------------------


def _check_options(checkpoint: Any, model: Any, weights: Any, data: Any, input_size: Any) -> None:
    if (checkpoint is None) == (model is None):
        raise AccelerateError(
            "Name the trained network once: --checkpoint DIR (a wae checkpoint, e.g. "
            "runs/full/final) or --model NAME --weights FILE.safetensors --data DATA "
            "--input-size N."
        )
    if model is not None and (weights is None or data is None or input_size is None):
        raise AccelerateError(
            "--model needs --weights (its trained state_dict, .safetensors), --data (the "
            "dataset or ImageFolder it was trained on) and --input-size (the image size it "
            "takes)."
        )
    if checkpoint is not None and (weights or data or input_size):
        raise AccelerateError(
            "--weights, --data and --input-size go with --model; a --checkpoint carries its "
            "data and size."
        )


def check_payoff(
    cfg: Any, teacher: Any, num_classes: int, force: bool = False, log: Any = print
) -> dict[str, Any]:
    """The WAE's MAC ratio against the teacher before any training; stops below the
    threshold unless `force`."""
    d = cfg.data
    student = build_named(
        cfg.model.name,
        "wae",
        num_classes=num_classes,
        in_chans=d.in_chans,
        input_size=d.input_size,
        check_payoff=False,  # reported below, with the trained network's own MACs
        **cfg.model.kwargs,
    )
    p = cost.mac_payoff(student, teacher, input_size=d.input_size, in_chans=d.in_chans)
    if not p.pays_off:
        if not force:
            raise AccelerateError(f"{p.message()} Pass --force to train it anyway.")
        log(f"Warning: {p.message()} Going on (--force).")
    return {
        "full_macs": p.full_macs,
        "wae_macs": p.wae_macs,
        "ratio": p.ratio,
        "encoder": p.encoder,
    }


def accelerate(
    output: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    input_size: int | None = None,
    in_chans: int | None = None,
    overrides: Sequence[str] = (),
    allow_code: Sequence[str] = (),
    half: bool = True,
    force: bool = False,
    overwrite: bool = False,
    quick: bool = False,
    latency_batch: int = 256,
    threads: int | None = None,
    min_run_time: float = 2.0,
    encoder: str = DEFAULT_ENCODER,
    log: Any = print,
    lock: RunLock | None = None,
    backends: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accelerate a trained full-resolution classifier; returns results.json's dict.

    The trained network is `checkpoint` (a wae checkpoint), or `model` (a backbone name) with
    `weights` (a safetensors state_dict), `data` and `input_size`. `allow_code`: your own
    backbone factory ("pkg.module:function") a checkpoint may be built with. `encoder`: the
    WAE's encoder by name (:mod:`wae.encoders`). Every option, the students' configs (with
    `overrides`) and the MAC ratio are checked before anything is written.
    Re-running reuses finished runs (same config) and continues unfinished ones.
    `lock`: a RunLock on `output` the caller holds already (it wrote the teacher and data
    there, :mod:`.accelerate_module`); released when this returns. `backends`: timed besides
    eager for the fastest-backend columns (:func:`wae.cost.resolve_backends`).
    """
    _check_options(checkpoint, model, weights, data, input_size)
    check_encoder(encoder)
    cost.check_timing(batch_size=latency_batch, threads=threads, min_run_time=min_run_time)
    backends = cost.resolve_backends(backends, quick=quick)
    lock = RunLock(output, "wae accelerate") if lock is None else lock  # checks the path
    overrides = [*(QUICK_OVERRIDES if quick else ()), *overrides]
    if checkpoint is not None:
        tdir = Path(checkpoint)
        doc = _teacher_doc(tdir)
        try:
            teacher = load_model(tdir, allow_code=allow_code)[0]
        except CheckpointError as e:
            raise AccelerateError(f"--checkpoint: {e}") from None
    else:
        tdir = lock.dir / "teacher"
        teacher, doc = _imported_teacher(model, Path(weights), data, data_dir, input_size, in_chans)
    configs = student_configs(tdir, overrides, half=half, doc=doc, encoder=encoder)
    num_classes = CheckpointMeta.from_doc(doc, tdir).num_classes
    payoff = check_payoff(configs["wae"], teacher, num_classes, force, log)
    lock.check()
    with lock:
        if checkpoint is None:
            _save_teacher(tdir, teacher, doc)
        results = run_acceleration(
            lock.dir,
            tdir,
            configs,
            overwrite=overwrite,
            quick=quick,
            payoff=payoff,
            teacher=teacher,
            latency_batch=latency_batch,
            threads=threads,
            min_run_time=min_run_time,
            log=log,
            backends=backends,
        )
        write_results(lock.dir, results)
    return results


def run_acceleration(
    out: Path,
    tdir: Path,
    configs: dict[str, Any],
    *,
    overwrite: bool = False,
    quick: bool = False,
    payoff: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    latency_batch: int = 256,
    threads: int | None = None,
    min_run_time: float = 2.0,
    log: Any = print,
    progress: JobProgress | None = None,
    backends: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The work once everything is checked and `out` is held: score the teacher in `tdir`
    (`teacher`: it, loaded already), train the students of `configs`
    (:func:`student_configs`) into OUT/<key>, time all in one run; returns results.json's
    dict, for :func:`write_results`. `progress`: the whole job's, when the students are
    part of a larger one (the demo); else their own, with an estimate timed first.
    `backends`: timed besides eager (:func:`wae.cost.resolve_backends`)."""
    t0 = time.perf_counter()
    log(f"[accelerate] scoring the trained network {tdir} on the test set")
    code = recipe_code(configs["wae"])  # the backbone the teacher was accepted with
    base = _evaluate(tdir, configs["wae"], code)
    with warnings.catch_warnings():  # the pay-off was reported (or waived) before any work
        warnings.simplefilter("ignore", cost.PayoffWarning)
        trained = _train(out, configs, overwrite, log, progress, teacher)
        train_s = time.perf_counter() - t0
        models = {
            "baseline": teacher if teacher is not None else load_model(tdir, allow_code=code)[0],
            **{
                k: load_model(r["final_checkpoint"], allow_code=code)[0] for k, r in trained.items()
            },
        }
    backends = cost.resolve_backends(backends, quick=quick)
    timing = _time(models, configs["wae"], latency_batch, threads, min_run_time, log, backends)
    results = _results(out, tdir, base, trained, timing, latency_batch)
    results.update(quick=quick, payoff=payoff, train_seconds=round(train_s, 1))
    results["epoch_seconds"] = {k: epoch_seconds(out / k) for k in trained}
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    add_precision(results, out)
    return results


def write_results(out: Path, results: dict[str, Any]) -> None:
    """OUT/results.json and OUT/results.md (the table), each written atomically."""
    atomic_write_json(out / "results.json", results)
    atomic_write_bytes(out / "results.md", (format_results(results) + "\n").encode())


def _save_teacher(tdir: Path, teacher: Any, doc: dict[str, Any]) -> None:
    from ..checkpoint import save_checkpoint

    if (tdir / META).is_file() and read_meta(tdir)["meta"] == doc["meta"]:
        return  # imported by an earlier run of this command
    save_checkpoint(tdir, teacher, meta=doc["meta"], config=doc["config"])


def _evaluate(tdir: Path, cfg: Any, allow_code: Sequence[str]) -> dict[str, Any]:
    """The teacher's test scores on the students' test set (the same images and settings)."""
    from ..train import evaluate_checkpoint

    e = cfg.eval
    return evaluate_checkpoint(
        tdir,
        data=cfg.data.dataset,
        data_dir=cfg.data.data_dir,
        split=e.split,
        subset=e.subset,
        noise_vars=e.noise_vars,
        batch_size=e.batch_size,
        device=cfg.runtime.device,
        seed=cfg.seed,
        allow_code=allow_code,
    )


def _train(
    out: Path,
    configs: dict[str, Any],
    overwrite: bool,
    log: Any,
    progress: JobProgress | None = None,
    teacher: nn.Module | None = None,
) -> dict[str, Any]:
    """Train (or reuse) each student into OUT/<key>; each is a run_training result. The
    job's progress is `progress`, else the students' own (timed first, with `teacher`)."""
    from ..train import run_training

    trained: dict[str, Any] = {}
    with job_progress(progress, configs, out, teacher=teacher, overwrite=overwrite, log=log) as job:
        for key, cfg in configs.items():
            log(f"[accelerate] training {ROWS[key]} into {out / key}")
            with job.run(key) as hooks:
                trained[key] = run_training(
                    cfg, out / key, resume=not overwrite, overwrite=overwrite, hooks=hooks
                )
            if not trained[key].get("complete"):
                raise AccelerateError(
                    f"The {key} run in {out / key} did not complete; run the command again to "
                    f"continue it."
                )
    return trained


def _time(
    models: dict[str, Any],
    cfg: Any,
    latency_batch: int,
    threads: int | None,
    min_run: float,
    log: Any,
    backends: Sequence[str] = (),
) -> dict[int, Any]:
    """`cost.compare_batches` of the models at the latency batch and at batch 1, eager and
    on `backends`, interleaved."""
    on = f"eager and {', '.join(backends)}" if backends else "eager"
    log(f"[accelerate] timing {', '.join(models)} (batch {latency_batch} and batch 1; {on})")
    return cost.compare_batches(
        models,
        cfg.data.input_size,
        batches=(latency_batch, 1),
        in_chans=cfg.data.in_chans,
        reference="baseline",
        threads=threads,
        min_run_time=min_run,
        backends=["eager", *backends],
        log=lambda line: log(f"[accelerate] {line}"),
    )


def _results(
    out: Path,
    tdir: Path,
    base: dict[str, Any],
    trained: dict[str, Any],
    timing: dict[int, Any],
    latency_batch: int,
) -> dict[str, Any]:
    """results.json's dict (without durations and pay-off) from the scores and timings."""
    main = timing[latency_batch]
    tests = {"baseline": base, **{k: r["test"] for k, r in trained.items()}}
    results: dict[str, Any] = {"teacher_checkpoint": str(tdir)}
    for key, test in tests.items():
        prof = main["profiles"][key]
        results[key] = {
            "top1": test["top1"],
            "top5": test["top5"],
            "macs": prof.macs / latency_batch,  # per image (timing ran whole batches)
            "params": prof.params,
            "latency_ms": prof.latency.median_ms,
            "latency_iqr_ms": prof.latency.iqr_ms,
            "memory_format": prof.latency.memory_format,
            "latency_ms_batch1": timing[1]["profiles"][key].latency.median_ms,
            "speedup": main["speedup"][key],
            "speedup_batch1": timing[1]["speedup"][key],
            **fastest_fields(timing, latency_batch, key),
            "mac_ratio": main["mac_ratio"][key],
            "noise": test.get("noise", []),
            "checkpoint": str(tdir) if key == "baseline" else trained[key]["final_checkpoint"],
        }
    results["speedup"] = results["wae"]["speedup"]
    results["speedup_batch1"] = results["wae"]["speedup_batch1"]
    results.update({k: results["wae"][k] for k in ("speedup_fastest", "speedup_fastest_b1")})
    results["mac_ratio"] = results["wae"]["mac_ratio"]
    results["test_images"] = base["num_images"]
    results["latency_batch_size"] = latency_batch
    results["settings"] = main["settings"]
    results["machine"] = main["machine"]
    results["wae_parts_macs"] = {
        k: v.macs / latency_batch for k, v in main["profiles"]["wae"].ops.parts.items()
    }
    results["configs"] = {k: r["config"] for k, r in trained.items()}
    results["verdict"] = verdict_lines(results)
    return results


def epoch_seconds(run_dir: Path) -> float:
    """The seconds a finished run's epochs took, from its metrics.csv (what training cost,
    also when this command reused the run)."""
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        return round(sum(float(r["epoch_time_s"] or 0) for r in csv.DictReader(f)), 1)
