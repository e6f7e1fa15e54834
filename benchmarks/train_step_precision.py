"""One training step of the demo's two networks in float32 and under bf16 (or fp16) autocast.

What `runtime.precision = "bf16"` buys a training run, per step: forward, cross-entropy,
backward and an Adam update of the full-resolution SmallVGG (``small_vgg_28_full``) and of
WAE (``wae_small_vgg_28``, its classification path), both at the Fashion-MNIST recipes' width,
on seeded random 28x28 images (the step's time does not depend on the pixels), channels_last,
with :func:`wae.runtime.autocast` as the training engine uses it (float32 master weights).
The median of `--steps` timed steps after `--warmup` untimed ones; precisions alternate step
by step, so slow drift of the machine hits both alike.

    python benchmarks/train_step_precision.py --threads 2 --out step.json
    python benchmarks/train_step_precision.py --device cuda --precision bf16 fp16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from wae.cost import machine_info
from wae.models import create_model
from wae.runtime import autocast

NETWORKS = {"full": ("small_vgg_28_full", 128), "wae": ("wae_small_vgg_28", 64)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(name: str, batch: int, device: torch.device):
    """A closure running one training step of `name` at `batch` under a given precision."""
    model = create_model(name, num_classes=10, in_chans=1, width=48).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    loss_fn = nn.CrossEntropyLoss()

    def step(precision: str) -> float:
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, None if precision == "fp32" else precision):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    return step


def measure(device: torch.device, precisions: list[str], steps: int, warmup: int) -> dict:
    """{network: {precision: median ms per step, ..., "speedup_<p>": fp32 / p}}."""
    out: dict[str, dict] = {}
    for net, (name, batch) in NETWORKS.items():
        step = _step_fn(name, batch, device)
        times: dict[str, list[float]] = {p: [] for p in precisions}
        for i in range(warmup + steps):
            for p in precisions if i % 2 == 0 else precisions[::-1]:
                t = step(p)
                if i >= warmup:
                    times[p].append(t)
        res: dict = {"model": name, "batch": batch}
        for p, ts in times.items():
            res[f"{p}_ms"] = round(1000 * statistics.median(ts), 2)
        for p in precisions[1:]:
            res[f"speedup_{p}"] = round(res["fp32_ms"] / res[f"{p}_ms"], 2)
        out[net] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--precision", nargs="+", default=["bf16"], choices=["bf16", "fp16"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    doc = {
        "machine": machine_info(torch.get_num_threads()),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "networks": measure(device, ["fp32", *args.precision], args.steps, args.warmup),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
