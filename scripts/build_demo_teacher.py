"""Build the trained network `wae demo` ships with (wae.pretrained.DEMO_TEACHER).

    python scripts/build_demo_teacher.py                  # train (or reuse) runs/demo-teacher
    python scripts/build_demo_teacher.py --retrain        # train it again from scratch

Trains the packaged recipe `fashion_mnist_baseline` (SmallVGG width 48 on 28x28
Fashion-MNIST, what `wae demo --full` trains as its teacher) through `wae train`'s engine,
then writes its final checkpoint to src/wae/weights/<name>/ with card.json: the recipe, this
command, the test metrics, the training time and machine, the SHA-256 of each file. Commit
the three files; `wae demo` checks the hashes before it uses them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from wae.apps.accelerate import epoch_seconds
from wae.host import cpu_model
from wae.pretrained import DEMO_TEACHER, write_pretrained
from wae.train import load_config, run_training

RECIPE = "fashion_mnist_baseline"
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo-teacher", help="the training run's directory")
    p.add_argument("--retrain", action="store_true", help="train again (old run moved aside)")
    args = p.parse_args()
    cfg = load_config(RECIPE)
    result = run_training(cfg, Path(args.run), resume=not args.retrain, overwrite=args.retrain)
    if not result.get("complete"):
        print(f"The run in {args.run} did not complete; run this script again.", file=sys.stderr)
        return 1
    run = json.loads((Path(args.run) / "results.json").read_text())
    card = {
        "name": DEMO_TEACHER,
        "recipe": RECIPE,
        "command": "python scripts/build_demo_teacher.py" + (" --retrain" if args.retrain else ""),
        "test": {k: run["test"][k] for k in ("top1", "top5", "num_images")},
        "train_seconds": epoch_seconds(Path(args.run)),
        "training": {k: run.get(k) for k in ("precision", "precision_requested", "precision_note")},
        "machine": {
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    root = ROOT / "src" / "wae" / "weights"
    dest = write_pretrained(result["final_checkpoint"], DEMO_TEACHER, card, root=root)
    print(f"Wrote {dest}: test top-1 {card['test']['top1']:.2f} %.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
