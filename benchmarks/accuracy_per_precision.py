"""Test top-1 of trained checkpoints at every inference precision: fp32, bf16, int8.

Each checkpoint is scored by :func:`wae.train.eval_checkpoint.evaluate_checkpoint` (what
`wae eval --precision` runs) on its dataset's whole test split: fp32 as trained, bf16 with
the model cast once, int8 through ONNX Runtime's QDQ quantization calibrated on 512 seeded
images of the training split. The difference to fp32 is reported next to an upper bound of
its standard error (two independent binomial proportions; the paired one, from the images
the two precisions disagree on, is smaller), so a gap can be read against the test set's
noise.

    python benchmarks/accuracy_per_precision.py runs/demo/baseline/final runs/demo/wae/final \
        --out benchmarks/results/accuracy-precision-fashion-mnist.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from wae.cost import machine_info
from wae.train.eval_checkpoint import evaluate_checkpoint

PRECISIONS = ("fp32", "bf16", "int8")


def score(checkpoint: str, data: str | None, precisions: list[str]) -> dict:
    """{precision: {"top1", "seconds"}, plus "delta_vs_fp32"} for one checkpoint."""
    out: dict = {}
    for p in ["fp32", *[q for q in precisions if q != "fp32"]]:
        t0 = time.perf_counter()
        r = evaluate_checkpoint(checkpoint, data=data, precision=p)
        out[p] = {"top1": r["top1"], "seconds": round(time.perf_counter() - t0, 1)}
        if "calibration" in r:
            out[p]["calibration"] = r["calibration"]
        out[p]["images"] = r["num_images"]
    for p in list(out)[1:]:
        d = out[p]["top1"] - out["fp32"]["top1"]
        # Unpaired binomial SE of a difference: an upper bound of the paired one.
        acc = out["fp32"]["top1"] / 100
        se = 100 * math.sqrt(2 * acc * (1 - acc) / out["fp32"]["images"])
        out[p]["delta_vs_fp32"] = round(d, 2)
        out[p]["se_bound"] = round(se, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default=None, help="default: each checkpoint's own dataset")
    ap.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    doc = {
        "machine": machine_info(torch.get_num_threads()),
        "results": {c: score(c, args.data, args.precision) for c in args.checkpoints},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
