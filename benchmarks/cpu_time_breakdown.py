"""Single-thread CPU-time breakdown of WAE vs the full / half-resolution network, per backend
and per WAE part: a measurement that survives a busy shared machine.

`wae bench` reports wall-clock latency (what a user sees). On a machine shared with other
CPU-heavy jobs, wall-clock medians move by 30-50 % from minute to minute, which hides the
few-percent effects of individual rewrites. With one intra-op thread, every backend here
(PyTorch eager, oneDNN, ONNX Runtime with intra_op_num_threads=1) computes on the calling
thread, so `time.thread_time()` around a call counts the work done and not the time spent
descheduled. It still includes cache and memory-bandwidth contention, so it is a diagnostic,
not a replacement for `wae bench` on a quiet machine.

    python benchmarks/cpu_time_breakdown.py --backbone resnet50 --seconds 60 \
        --out benchmarks/results/cpu-time-resnet50.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wae import cost
from wae.apps.bench import build_models, wae_parts
from wae.export import export_module, export_onnx, onnx_session
from wae.optimize import optimize_for_inference


def _ort(path: Path) -> Callable[..., Any]:
    sess = onnx_session(path, threads=1)
    names = [i.name for i in sess.get_inputs()]

    def run(*args: torch.Tensor) -> Any:
        return sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})

    return run


def _torch(module: torch.nn.Module, cl: bool) -> Callable[..., Any]:
    fmt = torch.channels_last if cl else torch.contiguous_format

    def run(*args: torch.Tensor) -> Any:
        return module(*(a.contiguous(memory_format=fmt) if a.dim() == 4 else a for a in args))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0, help="total timing budget")
    ap.add_argument("--no-parts", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    models, info = build_models(args.backbone)
    size = info["input_size"]
    x = torch.rand(args.batch_size, info["in_chans"], size, size)
    cands: dict[str, tuple[Callable[..., Any], tuple[torch.Tensor, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        for name, m in models.items():
            opt = optimize_for_inference(m)
            opt_export = optimize_for_inference(m, fuse_mkldnn=False, channels_last=False)
            cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
            cands[f"{name}/eager"] = (_torch(m, False), (x,))
            cands[f"{name}/channels_last"] = (_torch(cl, True), (x,))
            cands[f"{name}/optimized"] = (_torch(opt, True), (x,))
            chans = info["in_chans"]
            p = export_onnx(m, wd / f"{name}.onnx", size, in_chans=chans)
            cands[f"{name}/ort"] = (_ort(p), (x,))
            p = export_onnx(opt_export, wd / f"{name}-opt.onnx", size, in_chans=chans)
            cands[f"{name}/ort_optimized"] = (_ort(p), (x,))
            if name == "wae" and not args.no_parts:
                variants = {
                    "channels_last": cl,
                    "optimized": opt,
                    "ort": m,
                    "ort_optimized": opt_export,
                }
                for vname, model in variants.items():
                    for pname, (mod, pargs) in wae_parts(model, x).items():
                        if pname == "whole":
                            continue
                        key = f"wae:{pname}/{vname}"
                        if vname.startswith("ort"):
                            path = wd / f"part-{vname}-{pname.replace(' ', '_')}.onnx"
                            export_module(mod, pargs, path)
                            cands[key] = (_ort(path), tuple(a.contiguous() for a in pargs))
                        else:
                            cl_args = tuple(
                                a.contiguous(memory_format=torch.channels_last) for a in pargs
                            )
                            cands[key] = (_torch(mod, True), cl_args)
        times: dict[str, list[float]] = {k: [] for k in cands}
        load0 = os.getloadavg()
        with torch.inference_mode():
            for f, a in cands.values():
                f(*a)
                f(*a)
            t_end = time.perf_counter() + args.seconds
            rnd = 0
            while time.perf_counter() < t_end:
                order = list(cands) if rnd % 2 == 0 else list(cands)[::-1]
                for k in order:
                    f, a = cands[k]
                    t0 = time.thread_time()
                    f(*a)
                    times[k].append(time.thread_time() - t0)
                rnd += 1
        load1 = os.getloadavg()
    res = {
        k: {"median_ms": statistics.median(v) * 1e3, "min_ms": min(v) * 1e3, "n": len(v)}
        for k, v in times.items()
    }
    doc = {
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "threads": 1,
        "metric": "thread CPU time per call (time.thread_time), interleaved rounds",
        "machine": cost.machine_info(1),
        "load_avg_before": load0,
        "load_avg_after": load1,
        "results": res,
    }
    for k, v in res.items():
        print(f"{k:40s} median {v['median_ms']:8.2f}  min {v['min_ms']:8.2f}  n {v['n']}")
    print("load average", load0, "->", load1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
