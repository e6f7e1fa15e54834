"""Training throughput of every `wae reproduce` method, for its time estimate.

`wae reproduce` picks the largest training subset whose *estimated* time fits its budget; the
estimate uses nominal images-per-second figures (``wae.apps.reproduce.budget._TRAIN_RATE`` and
``_EVAL_RATE``). This script measures them on the current machine with the real engine: each
method's stages, built from the repository's recipes, train for one short epoch on a
Fashion-MNIST subset (the first epoch of each stage is discarded as warm-up), one thread.

    .venv/bin/python benchmarks/train_rates.py [--width 48] [--images 2000] [--threads 1]

Prints one JSON object: per stage ("full", "wae/1", ...) training images per second, and
per method evaluation images per second (batch 500, no gradients).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import tempfile
import time
from pathlib import Path

import torch

from wae.apps.reproduce.methods import derive_configs, recipe_source
from wae.cost import machine_info
from wae.data import build_dataset
from wae.models import create_model
from wae.train import load_config, run_training


def _train_rates(cfg: dict, images: int, out: Path) -> list[float]:
    """Images per second of each stage's second epoch (the first warms up)."""
    cfg = copy.deepcopy(cfg)
    cfg["data"].update(subset=images, val_subset=50)
    cfg["eval"].update(subset=50, noise_vars=[])
    cfg["runtime"].update(verbose=False, progress="off")
    for s in cfg["stages"]:
        s["epochs"] = 2
        s.pop("early_stop_patience", None)
    run_training(cfg, out)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [float(r["images_per_s"]) for r in rows if r["epoch"] == "2"]


def _eval_rate(cfg: dict, batch: int = 500, repeats: int = 6) -> float:
    m = cfg["model"]
    model = create_model(m["name"], num_classes=10, in_chans=1, input_size=28, **m["kwargs"])
    model.eval()
    x = torch.randn(batch, 1, 28, 28)
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return batch * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=None, help="backbone width (default: recipe's)")
    ap.add_argument("--images", type=int, default=2000, help="training images per epoch")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = [f"model.kwargs.width={args.width}"] if args.width else []
    wae_cfg = load_config(recipe_source(None, "fashion_mnist.toml"), sets)
    base_cfg = load_config(recipe_source(None, "fashion_mnist_baseline.toml"))
    build_dataset("fashion-mnist", "train")  # fail early, with the data layer's message
    cfgs = derive_configs(wae_cfg, base_cfg, seed=0)
    cfgs.pop("il", None)  # I_L alone trains like WAE's stage 2 (frozen WAE, same network)
    train: dict[str, float] = {}
    evals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, cfg in cfgs.items():
            rates = _train_rates(cfg, args.images, Path(tmp) / key)
            if len(rates) == 1:
                train[key] = round(rates[0], 1)
            else:
                train.update({f"{key}/{i}": round(r, 1) for i, r in enumerate(rates, 1)})
            evals[key] = round(_eval_rate(cfg), 1)
    print(
        json.dumps(
            {
                "width": cfgs["full"]["model"]["kwargs"].get("width"),
                "images": args.images,
                "machine": machine_info(args.threads),
                "train_images_per_s": train,
                "eval_images_per_s": evals,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
