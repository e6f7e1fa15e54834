"""`wae demo`: the README's main job, end to end on the embedded Fashion-MNIST.

Trains WAE + SmallVGG through the paper's three stages and the full-resolution SmallVGG with
the same engine (the packaged recipes ``fashion_mnist`` and ``fashion_mnist_baseline``, or the
files of those names in ``recipe_dir`` / $WAE_RECIPES), then measures both in one run and
writes:

    OUT/results.json   {"wae": {top1, top5, macs, latency_ms, ...}, "baseline": {...},
                        "speedup", "mac_ratio", settings, machine, ...}
    OUT/results.md     the table the command prints
    OUT/decomposition.png   test images, I_L, I_H and the reconstruction
    OUT/wae/, OUT/baseline/  the training runs (checkpoints, metrics.csv, config.json)

Re-running reuses finished runs (same config) and continues unfinished ones. The demo owns OUT
while it runs (``OUT/.wae.lock``, :mod:`wae.runlock`): a second command writing there is
refused, naming the first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from . import cost
from .checkpoint import atomic_write_bytes, atomic_write_json, load_model
from .errors import WAEError
from .runlock import RunLock

__all__ = ["QUICK_OVERRIDES", "default_recipe_dir", "run_demo", "format_results"]

WAE_RECIPE = "fashion_mnist.toml"
BASELINE_RECIPE = "fashion_mnist_baseline.toml"
# A smoke test of the whole path in well under a minute; its numbers mean nothing.
QUICK_OVERRIDES = (
    "data.subset=600",
    "data.val_subset=200",
    "model.kwargs.width=8",
    "eval.noise_vars=[0.05]",
)
QUICK_STAGE_EPOCHS = 1


def _user_recipe_dir(recipe_dir: str | os.PathLike[str] | None) -> Path | None:
    """The folder of the user's own demo recipes (`recipe_dir`, else $WAE_RECIPES), if any."""
    folder = recipe_dir if recipe_dir is not None else os.environ.get("WAE_RECIPES") or None
    return None if folder is None else Path(folder)


def default_recipe_dir() -> Path:
    """The folder the demo's recipes come from: $WAE_RECIPES if set, else the packaged one."""
    return _user_recipe_dir(None) or Path(str(resources.files("wae") / "recipes"))


def _recipes(recipe_dir: str | os.PathLike[str] | None) -> dict[str, str | Path]:
    """{"wae": recipe, "baseline": recipe}: the packaged recipes by name, or the two files in
    the user's folder (see _user_recipe_dir) when there is one."""
    folder = _user_recipe_dir(recipe_dir)
    if folder is None:
        return {"wae": Path(WAE_RECIPE).stem, "baseline": Path(BASELINE_RECIPE).stem}
    return {"wae": _recipe(folder, WAE_RECIPE), "baseline": _recipe(folder, BASELINE_RECIPE)}


def _recipe(recipe_dir: Path, name: str) -> Path:
    path = recipe_dir / name
    if not path.is_file():
        raise WAEError(
            f"The demo recipe {path} does not exist. Point --recipes or WAE_RECIPES at a folder "
            f"holding {WAE_RECIPE} and {BASELINE_RECIPE} (e.g. `wae recipes fashion_mnist > "
            f"DIR/{WAE_RECIPE}`), or drop both to use the packaged recipes."
        )
    return path


def _quick(recipe: str | Path) -> list[str]:
    from .train import load_config

    n = len(load_config(recipe).stages)
    epochs = [f"stages.{i + 1}.epochs={QUICK_STAGE_EPOCHS}" for i in range(n)]
    warmup = [f"stages.{i + 1}.schedule.warmup_epochs=0" for i in range(n)]
    return [*QUICK_OVERRIDES, *epochs, *warmup]


def run_demo(
    output: str | os.PathLike[str],
    *,
    recipe_dir: str | os.PathLike[str] | None = None,
    quick: bool = False,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    latency_batch: int = 256,
    threads: int | None = None,
    min_run_time: float = 2.0,
    log: Any = print,
) -> dict[str, Any]:
    """Train WAE and the full-resolution baseline, measure both, write the results.

    `overrides` apply to both recipes (e.g. "data.subset=20000"). Returns results.json's dict.
    The demo owns `output` while it runs (:mod:`wae.runlock`): another command writing there
    is refused, as are an unwritable `output` and bad overrides, before any training.
    """
    from .train import load_config

    t0 = time.perf_counter()
    lock = RunLock(output, "wae demo")  # checks the path
    out = lock.dir
    runs = _recipes(recipe_dir)
    run_overrides = {k: [*(_quick(r) if quick else []), *overrides] for k, r in runs.items()}
    for key, recipe in runs.items():
        load_config(recipe, run_overrides[key])  # both configs checked before either trains
    lock.check()
    with lock:
        trained = _train(out, runs, run_overrides, overwrite, log)
        train_s = time.perf_counter() - t0
        models = {k: load_model(r["final_checkpoint"])[0] for k, r in trained.items()}
        log(f"[demo] timing both models (batch {latency_batch} and batch 1) in one run")
        timing = {
            bs: cost.compare(
                models,
                models["wae"].input_size[0],
                batch_size=bs,
                in_chans=models["wae"].in_chans,
                threads=threads,
                min_run_time=min_run_time,
                reference="baseline",
            )
            for bs in (latency_batch, 1)
        }
        results = _results(out, trained, timing, quick, latency_batch)
        results["train_seconds"] = round(train_s, 1)
        results["total_seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(out / "results.json", results)
        atomic_write_bytes(out / "results.md", (format_results(results) + "\n").encode())
        _decomposition_figure(models["wae"], trained["wae"]["config"], out / "decomposition.png")
    return results


def _train(
    out: Path,
    runs: dict[str, str | Path],
    run_overrides: dict[str, list[str]],
    overwrite: bool,
    log: Any,
) -> dict[str, dict[str, Any]]:
    """Train (or reuse) both runs into OUT/<key>; each is a run_training result."""
    from .train import run_training

    trained: dict[str, dict[str, Any]] = {}
    for key, recipe in runs.items():
        log(f"[demo] training {key} ({Path(recipe).name}) into {out / key}")
        trained[key] = run_training(
            recipe,
            out / key,
            resume=not overwrite,
            overwrite=overwrite,
            overrides=run_overrides[key],
        )
        if not trained[key].get("complete"):
            raise WAEError(f"The {key} run in {out / key} did not complete; rerun `wae demo`.")
    return trained


def _results(
    out: Path,
    trained: dict[str, dict[str, Any]],
    timing: dict[int, dict[str, Any]],
    quick: bool,
    latency_batch: int,
) -> dict[str, Any]:
    """results.json's dict (without the durations) from the runs and `cost.compare` per batch
    size."""
    main = timing[latency_batch]
    results: dict[str, Any] = {"quick": quick}
    for key in ("wae", "baseline"):
        prof = main["profiles"][key]
        test = trained[key]["test"]
        results[key] = {
            "top1": test["top1"],
            "top5": test["top5"],
            "macs": prof.macs / latency_batch,  # per image (timing ran whole batches)
            "params": prof.params,
            "latency_ms": prof.latency.median_ms,
            "latency_iqr_ms": prof.latency.iqr_ms,
            "memory_format": prof.latency.memory_format,
            "latency_ms_batch1": timing[1]["profiles"][key].latency.median_ms,
            "noise": test.get("noise", []),
            "run_dir": str(out / key),
            "checkpoint": trained[key]["final_checkpoint"],
        }
    results["speedup"] = main["speedup"]["wae"]
    results["speedup_batch1"] = timing[1]["speedup"]["wae"]
    results["mac_ratio"] = main["mac_ratio"]["wae"]
    results["latency_batch_size"] = latency_batch
    results["settings"] = main["settings"]
    results["machine"] = main["machine"]
    results["wae_parts_macs"] = {
        k: v.macs / latency_batch for k, v in main["profiles"]["wae"].ops.parts.items()
    }
    results["configs"] = {k: r["config"] for k, r in trained.items()}
    return results


def format_results(r: dict[str, Any]) -> str:
    """The demo's table (Markdown) from results.json's dict."""
    bs = r["latency_batch_size"]
    rows = [
        f"| model | test top-1 % | top-5 % | MMACs / image | CPU ms (batch {bs}) | speed-up | "
        f"CPU ms (batch 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("baseline", "full resolution"), ("wae", "WAE")):
        m = r[key]
        sp = 1.0 if key == "baseline" else r["speedup"]
        rows.append(
            f"| {label} | {m['top1']:.2f} | {m['top5']:.2f} | {m['macs'] / 1e6:.1f} | "
            f"{m['latency_ms']:.1f} ± {m['latency_iqr_ms']:.1f} | {sp:.2f}x | "
            f"{m['latency_ms_batch1']:.2f} |"
        )
    s = r["settings"]
    mach = r["machine"]
    lines = [
        *(["**QUICK smoke test: the numbers below mean nothing.**", ""] if r["quick"] else []),
        *rows,
        "",
        f"WAE vs full resolution: {r['wae']['top1'] - r['baseline']['top1']:+.2f} points "
        f"top-1, MAC ratio {r['mac_ratio']:.2f}x, measured speed-up {r['speedup']:.2f}x at "
        f"batch {bs} ({r['speedup_batch1']:.2f}x at batch 1).",
        f"Machine: {mach.get('cpu_model')}, {s['threads']} threads, {s['dtype']}, eager "
        f"PyTorch {mach.get('torch_version')}; training took {r['train_seconds']:.0f} s.",
    ]
    return "\n".join(lines)


@torch.no_grad()
def _decomposition_figure(model: torch.nn.Module, config: dict[str, Any], path: Path) -> None:
    """Test images, I_L, I_H (each min-max scaled for display) and the reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .train import build_datasets

    ds = build_datasets(config, ["test"])["test"]  # the images the run was tested on
    x = torch.stack([ds[i][0] for i in range(6)])
    parts = model.decompose(x, decode=True)
    rows = [("input", x), ("I_L", parts.low), ("I_H", parts.high)]
    if parts.recon is not None:
        rows.append(("reconstruction", parts.recon))
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.6 * len(x), 1.7 * len(rows)))
    for r, (name, t) in enumerate(rows):
        for c in range(len(x)):
            img = t[c, 0]
            lo, hi = float(img.min()), float(img.max())
            axes[r, c].imshow(((img - lo) / max(hi - lo, 1e-12)).numpy(), cmap="gray")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    fig.suptitle("WAE decomposition of Fashion-MNIST test images (each panel min-max scaled)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
