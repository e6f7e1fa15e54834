"""Reconstruction PSNR of D(E(x)) on held-out real photos, for each registered encoder (issue 21).

For every encoder of ``wae.encoders.ENCODERS`` (paper, light): build a WaveletAutoEncoder with a
fixed seed, measure it untrained, train stage 1 only (the transform loss
L_t = ||I - I'||^2 + lam ||I_H||^2 with the packaged ``textures`` recipe's stage-1 settings:
adam, lr 1e-3, cosine schedule, batch 64, lam 1, reduction "sum", horizontal flips), measure it
again. Reported per encoder: PSNR of D(E(x)) (dB) at initialisation and after stage 1, the
energy share of I_H (sum ||I_H||^2 / (sum ||I_L||^2 + sum ||I_H||^2) over the test set), the
encoder's MACs at the patch size (the library's counter, wae.cost.count_ops) and the training
seconds. For reference, the non-learned baseline: 2x2 average downsample, then bilinear (and
nearest) upsample back. The light encoder starts as an exact one-level Haar split (I_L = 2x2
average, I_H = HH band), but its decoder, like the paper's, starts from Xavier: so both start
with a poor reconstruction.

**Data, and what is held out.** Patches come from the library's skimage-textures dataset
(wae.data.textures). Its own test split is *not* from held-out photos: every photo is cut into a
checkerboard of 2P x 2P blocks, train windows come from one colour and the test grid from the
other, so train and test are disjoint areas of the same photos. Here the photos themselves are
held out: training uses the train split of the train photos, testing the test split (the fixed,
non-overlapping P-grid of the test blocks) of other photos never seen in training:

- grey (default): train on brick, camera, cell, chelsea, clock, grass, immunohistochemistry,
  text; test on astronaut, coffee, coins, gravel (three photographs and a texture). At the
  default P = 64: the train split of ``skimage-textures-64-raw:brick+camera+...`` (a seeded
  subset of --train windows) and the 100 test patches of
  ``skimage-textures-64-raw:astronaut+coffee+coins+gravel``.
- RGB (--in-chans 3): the dataset is grey (ITU-R 601 luma), so the RGB pixels are read from
  scikit-image at the very positions the dataset cut (its ``positions``). Only four of its
  photos are colour: train on chelsea and immunohistochemistry, test on astronaut and coffee.

A photo too small for a train and a test block at the chosen size is left out (printed).
Pixels: the "-raw" variant, i.e. the photo's own grey levels / 255 in [0, 1], which is what the
data layer delivers for it. The default variant normalises each patch to mean 128, std 40 grey
levels (rounded and clipped: not invertible), so it is not used; PSNR is on [0, 1] pixels,
10 log10(1 / MSE) over all test pixels, the reconstruction clamped to [0, 1].

**Why a short loop, not wae.train.run_training.** The training service trains a WAENet (a
classifier built around the WAE, with a validation hold-out, per-epoch checkpoints in a run
directory and a classifier model tied to one input size) from a dataset named in the recipe;
the RGB option needs colour pixels that no registered dataset delivers. The loop below trains
the bare WaveletAutoEncoder with the same pieces stage 1 uses: the packaged recipe's stage-1
config (load_config("textures").stages[0]), the trainer's optimiser builder (make_optimizer),
its per-step LR schedule (LRSchedule), transform_loss, batches of the recipe's size with
drop_last and random horizontal flips (data.augment). Epochs come from --epochs (the recipe's 3).

Time: the defaults (P = 64, 3072 patches, 3 epochs, 1 thread) take ~3-4 minutes for both
encoders on a 2-core CPU. One thread is the default because two on a machine whose cores are
busy were ~10x slower here (oversubscription); on an idle machine try --threads 2.

    python benchmarks/encoder_psnr.py                          # grey, both encoders
    python benchmarks/encoder_psnr.py --in-chans 3 --json runs/encoder_psnr_rgb.json
    python benchmarks/encoder_psnr.py --epochs 1 --train 256   # a smoke test (~20 s)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wae import WaveletAutoEncoder
from wae.autoencoder import transform_loss
from wae.cost import count_ops
from wae.data.textures import TextureSpec, build_textures
from wae.encoders import encoder_names
from wae.train import StageConfig, load_config
from wae.train.objective import make_optimizer
from wae.train.schedule import LRSchedule

RECIPE = "textures"  # the packaged recipe whose stage 1 is trained
PHOTOS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {
        "train": (
            "brick",
            "camera",
            "cell",
            "chelsea",
            "clock",
            "grass",
            "immunohistochemistry",
            "text",
        ),
        "test": ("astronaut", "coffee", "coins", "gravel"),
    },
    3: {"train": ("chelsea", "immunohistochemistry"), "test": ("astronaut", "coffee")},
}


# ------------------------------------------------------------------------------------- data


def _photo(name: str, in_chans: int) -> np.ndarray:
    """scikit-image's photo `name` as uint8 (H, W) or (H, W, 3)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if in_chans == 3 and (img.ndim != 3 or img.shape[2] < 3):
        raise SystemExit(f"Photo {name!r} is not a colour photo: it cannot be used for RGB.")
    return img[..., :3] if in_chans == 3 else img


def fitting_photos(names: tuple[str, ...], size: int) -> tuple[str, ...]:
    """The photos of `names` that hold a train and a test block (2 * size) of the dataset."""
    b = 2 * size
    keep = []
    for name in names:
        h, w = _photo(name, 1).shape[:2]
        if (h // b) * (w // b) >= 2:
            keep.append(name)
        else:
            print(f"note: photo {name!r} ({h}x{w}) is too small for {size}-px patches; left out")
    return tuple(keep)


def load_patches(
    photos: tuple[str, ...], split: str, size: int, in_chans: int, per_photo: int, seed: int
) -> tuple[torch.Tensor, str]:
    """The `split` of skimage-textures-<size>-raw over `photos`: float32 (N, C, size, size) in
    [0, 1], and the dataset's name. RGB pixels are cut from the colour photos at the
    dataset's own positions."""
    if len(photos) < 2:
        raise SystemExit(
            f"Fewer than two {split} photos fit {size}-px patches ({list(photos)}): use a smaller "
            f"--size."
        )
    spec = TextureSpec(
        patch=size, classes=photos, train_per_class=per_photo, normalize=False, seed=seed
    )
    s = build_textures(spec)[split]
    if in_chans == 1:
        return s.images.float() / 255, spec.name
    colour = {name: _photo(name, 3) for name in s.classes}
    out = np.empty((len(s.targets), size, size, 3), dtype=np.uint8)
    labels, corners = s.targets.tolist(), s.positions.tolist()
    for i, (label, (top, left)) in enumerate(zip(labels, corners, strict=True)):
        out[i] = colour[s.classes[label]][top : top + size, left : left + size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255, spec.name


# -------------------------------------------------------------------------------- measures


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR (dB) of `y` against `x`, both in [0, 1]: 10 log10(1 / MSE) over all pixels."""
    mse = float(((x.double() - y.double().clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@torch.no_grad()
def evaluate(model: WaveletAutoEncoder, x: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """PSNR of D(E(x)) (dB) and the energy share of I_H over the patches `x`."""
    model.eval()
    sq = e_low = e_high = 0.0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        out = model(xb)
        sq += float(((xb.double() - out.recon.double().clamp(0, 1)) ** 2).sum())
        e_low += float((out.low.double() ** 2).sum())
        e_high += float((out.high.double() ** 2).sum())
    mse = sq / x.numel()
    return {
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse),
        "high_energy_share": e_high / (e_low + e_high),
    }


def baselines(x: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) of 2x2 average downsampling, then bilinear / nearest upsampling back."""
    low = F.avg_pool2d(x, 2, ceil_mode=True)
    size = x.shape[-2:]
    return {
        "avg2x2_bilinear": psnr(x, F.interpolate(low, size, mode="bilinear", align_corners=False)),
        "avg2x2_nearest": psnr(x, F.interpolate(low, size, mode="nearest")),
    }


def macs(model: WaveletAutoEncoder, in_chans: int, size: int) -> dict[str, float]:
    """MACs of the encoder and of the whole auto-encoder for one (in_chans, size, size) image."""
    x = torch.zeros(1, in_chans, size, size)
    return {
        "encoder_macs": count_ops(model.encoder, x).macs,
        "autoencoder_macs": count_ops(model, x).macs,
    }


# -------------------------------------------------------------------------------- training


def train_stage1(
    model: nn.Module, x: torch.Tensor, stage: StageConfig, epochs: int, flip: bool, seed: int
) -> list[float]:
    """Stage 1 on the patches `x`: the transform loss, `stage`'s optimiser, LR schedule, batch
    size, lam and reduction; returns the mean training loss of each epoch."""
    bs = stage.batch_size
    steps = len(x) // bs  # drop_last, as the trainer does
    if steps == 0:
        raise SystemExit(f"--train must be at least the batch size {bs}, got {len(x)}.")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(stage, params)
    sched = LRSchedule(stage.schedule, stage.lr, epochs, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for step in range(steps):
            xb = x[order[step * bs : (step + 1) * bs]]
            if flip:  # the recipe's augmentation: a horizontal flip with probability 1/2
                mask = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(mask[:, None, None, None], xb.flip(-1), xb)
            for g in opt.param_groups:
                g["lr"] = sched.lr(epoch, step)
            loss = transform_loss(xb, model(xb), stage.lam, stage.reduction)
            if not torch.isfinite(loss):
                raise SystemExit(f"The loss diverged (epoch {epoch + 1}, step {step}): {loss}.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if stage.grad_clip:
                nn.utils.clip_grad_norm_(params, stage.grad_clip)
            opt.step()
            total += float(loss.detach())
        losses.append(total / steps)
    return losses


# ------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and measure every encoder; returns the results (what --json writes)."""
    torch.set_num_threads(args.threads)
    cfg = load_config(RECIPE)
    stage = cfg.stages[0]
    if set(stage.losses) != {"transform"}:
        raise SystemExit(f"Stage 1 of the {RECIPE!r} recipe is not the transform loss alone.")
    photos = {k: fitting_photos(v, args.size) for k, v in PHOTOS[args.in_chans].items()}
    per_photo = -(-args.train // len(photos["train"]))
    x_train, train_name = load_patches(
        photos["train"], "train", args.size, args.in_chans, per_photo, args.seed
    )
    keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))
    x_train = x_train[keep[: args.train]]
    x_test, test_name = load_patches(photos["test"], "test", args.size, args.in_chans, 1, 0)
    print(
        f"train: {len(x_train)} patches of {train_name} (train split); test: {len(x_test)} "
        f"patches of {test_name} (test split); {args.in_chans} channel(s), {args.threads} "
        f"thread(s); stage 1 of {RECIPE!r}: {stage.optimizer} lr {stage.lr}, "
        f"{stage.schedule.name}, batch {stage.batch_size}, lam {stage.lam}, {stage.reduction}, "
        f"{args.epochs} epoch(s)",
        flush=True,
    )
    base = baselines(x_test)
    results: dict[str, Any] = {}
    for name in encoder_names():
        torch.manual_seed(args.seed)
        model = WaveletAutoEncoder(args.in_chans, args.width, encoder=name)
        row: dict[str, Any] = {**macs(model, args.in_chans, args.size)}
        row["init"] = evaluate(model, x_test)
        t0 = time.perf_counter()
        row["train_loss"] = train_stage1(
            model, x_train, stage, args.epochs, cfg.data.augment, args.seed
        )
        row["train_s"] = time.perf_counter() - t0
        row["trained"] = evaluate(model, x_test)
        results[name] = row
        print(
            f"{name}: PSNR {row['init']['psnr_db']:.2f} -> {row['trained']['psnr_db']:.2f} dB, "
            f"I_H energy share {row['init']['high_energy_share']:.2e} -> "
            f"{row['trained']['high_energy_share']:.2e}, train loss per epoch "
            f"{', '.join(f'{v:.4g}' for v in row['train_loss'])}, {row['train_s']:.1f} s",
            flush=True,
        )
    return {
        "config": {
            **{k: v for k, v in vars(args).items() if k != "json"},
            "recipe": RECIPE,
            "stage1": {
                "optimizer": stage.optimizer,
                "lr": stage.lr,
                "schedule": stage.schedule.name,
                "batch_size": stage.batch_size,
                "lam": stage.lam,
                "reduction": stage.reduction,
                "flip": cfg.data.augment,
            },
            "train_photos": list(photos["train"]),
            "test_photos": list(photos["test"]),
            "train_dataset": train_name,
            "test_dataset": test_name,
            "n_train": len(x_train),
            "n_test": len(x_test),
            "torch": torch.__version__,
        },
        "baselines_psnr_db": base,
        "encoders": results,
    }


def markdown(res: dict[str, Any]) -> str:
    """The results as a small markdown table, with the baselines below it."""
    c = res["config"]
    lines = [
        f"PSNR of D(E(x)) on {c['n_test']} held-out {c['size']}x{c['size']} patches "
        f"({', '.join(c['test_photos'])}), stage 1 only ({c['epochs']} epoch(s) on "
        f"{c['n_train']} patches of {', '.join(c['train_photos'])}), in_chans {c['in_chans']}.",
        "",
        "| encoder | encoder MMACs | PSNR init (dB) | PSNR stage 1 (dB) | I_H energy init | "
        "I_H energy stage 1 | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["encoders"].items():
        lines.append(
            f"| {name} | {r['encoder_macs'] / 1e6:.3f} | {r['init']['psnr_db']:.2f} | "
            f"{r['trained']['psnr_db']:.2f} | {r['init']['high_energy_share']:.2e} | "
            f"{r['trained']['high_energy_share']:.2e} | {r['train_s']:.1f} |"
        )
    b = res["baselines_psnr_db"]
    lines += [
        "",
        f"Non-learned baseline (2x2 average, then upsample): bilinear {b['avg2x2_bilinear']:.2f}"
        f" dB, nearest {b['avg2x2_nearest']:.2f} dB.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="stage-1 epochs (default 3)")
    ap.add_argument("--train", type=int, default=3072, help="training patches (default 3072)")
    ap.add_argument(
        "--size",
        type=int,
        default=64,
        choices=range(32, 129, 16),
        metavar="P",
        help="patch side, a multiple of 16 from 32 to 128 (default 64)",
    )
    ap.add_argument("--in-chans", type=int, default=1, choices=(1, 3), help="1 grey, 3 RGB")
    ap.add_argument("--width", type=int, default=16, help="the WAE's width (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.train < 1 or args.threads < 1:
        ap.error("--epochs, --train and --threads must be positive")
    res = run(args)
    print()
    print(markdown(res))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
