"""Evaluation: top-1/top-5, per-class accuracy, and accuracy under additive Gaussian noise.

Noise follows the paper's robustness test (CACD, Fig. 5): zero-mean Gaussian noise of variance
V added to the test images on the [0, 1] pixel scale the data layer produces. Like the paper
we do not clamp the noisy images back to [0, 1]. The noise is seeded per image: image i of the
dataset always gets ``sqrt(V) * z_i`` with ``z_i`` drawn from a generator seeded by
(seed, i), so the numbers do not depend on the batch size or the number of processes, and every
model (and every V) sees the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import DataError
from ..runtime import autocast
from .distributed import DistEnv

__all__ = [
    "check_eval_options",
    "evaluate",
    "format_eval",
    "noise_for",
    "shard_loader",
    "topk_hits",
]


class _Indexed(Dataset):
    """(image, label) -> (image, label, index): the index seeds the image's noise."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.ds[i]
        return x, y, i


def noise_for(indices: torch.Tensor, shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Standard normal noise (B, *shape) for dataset indices (B,), one seeded draw per image."""
    g = torch.Generator()
    out = torch.empty(len(indices), *shape)
    for k, i in enumerate(indices.tolist()):
        g.manual_seed(seed * 1_000_003 + int(i))  # distinct streams per (seed, image)
        out[k] = torch.randn(*shape, generator=g)
    return out


def check_eval_options(batch_size: int, noise_vars: Sequence[float]) -> list[float]:
    """The noise variances as floats, after refusing what would mislead or fail mid-run: a
    batch size below 1, a variance that is negative, nan or inf (an accuracy row for "nan"
    noise is a silent wrong result). Raises DataError naming the option."""
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1):
        raise DataError(f"--batch-size must be an integer >= 1, got {batch_size!r}.")
    if any(not (isinstance(v, (int, float)) and 0 <= v < math.inf) for v in noise_vars):
        raise DataError(
            f"--noise-var takes finite variances >= 0 (e.g. 0.01 0.05), got {list(noise_vars)}."
        )
    return [float(v) for v in noise_vars]


def topk_hits(
    logits: torch.Tensor, y: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-1 hit, top-k hit), bools (N,), for scores (N, K) and labels (N,); k is capped at K."""
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return topk[:, 0] == y, (topk == y[:, None]).any(1)


def shard_loader(
    dataset: Dataset, env: DistEnv, *, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """In-order batches of this rank's strided shard of `dataset` (items rank, rank + world,
    ...): every item is counted once over the ranks, nothing is padded."""
    shard = list(range(env.rank, len(dataset), env.world_size))  # type: ignore[arg-type]
    return DataLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


class _Tally:
    """The counts of one evaluation: (top-1, top-k) hits clean (row 0) and per noise variance
    (row 1 + j), the summed clean loss, and per-class (correct, total) clean top-1."""

    def __init__(self, n_noise: int, k_classes: int | None) -> None:
        self.counts = torch.zeros(1 + n_noise, 2, dtype=torch.float64)
        self.loss_sum = torch.zeros(1, dtype=torch.float64)
        self.per_class: torch.Tensor | None = None  # (K, 2), once K is known
        self.k_classes = k_classes

    def add(self, j: int, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count scores (N, K) float32 against labels (N,) in row `j` (0: clean)."""
        self.k_classes = self.k_classes or logits.shape[1]
        hit1, hitk = topk_hits(logits, y)
        self.counts[j, 0] += hit1.sum().item()
        self.counts[j, 1] += hitk.sum().item()
        if j == 0:
            self.loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            k = logits.shape[1]
            if self.per_class is None:
                self.per_class = torch.zeros(k, 2, dtype=torch.float64)
            self.per_class[:, 0] += torch.bincount(y[hit1].cpu(), minlength=k).double()
            self.per_class[:, 1] += torch.bincount(y.cpu(), minlength=k).double()

    def summary(
        self, env: DistEnv, n_total: int, classes: list[str], noise_vars: list[float], seed: int
    ) -> dict[str, Any]:
        """The counts summed over the ranks, as :func:`evaluate`'s result."""
        per_class = self.per_class
        if per_class is None:
            per_class = torch.zeros(self.k_classes or 1, 2, dtype=torch.float64)
        counts = env.all_reduce_sum(self.counts)
        loss_sum = env.all_reduce_sum(self.loss_sum)
        per_class = env.all_reduce_sum(per_class)
        n = max(1, n_total)
        names = (
            classes if len(classes) == len(per_class) else [str(i) for i in range(len(per_class))]
        )
        return {
            "num_images": n_total,
            "num_classes": len(per_class),
            "top1": 100.0 * float(counts[0, 0]) / n,
            "top5": 100.0 * float(counts[0, 1]) / n,
            "topk": min(5, len(per_class)),
            "loss": float(loss_sum) / n,
            "per_class": {
                name: (100.0 * float(c) / float(t) if t > 0 else None)
                for name, (c, t) in zip(names, per_class.tolist(), strict=True)
            },
            "noise": [
                {
                    "var": v,
                    "std": math.sqrt(v),
                    "top1": 100.0 * float(counts[1 + j, 0]) / n,
                    "top5": 100.0 * float(counts[1 + j, 1]) / n,
                }
                for j, v in enumerate(noise_vars)
            ],
            "noise_seed": seed,
            "noise_clamped": False,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    noise_vars: Sequence[float] = (),
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    amp: str | None = None,
    env: DistEnv | None = None,
    classes: Sequence[str] | None = None,
    progress: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, Any]:
    """Accuracy of `model` ((N, C, H, W) -> logits (N, K)) on `dataset` ((image, label) items).

    Returns percentages: ``top1``, ``top5`` (top-min(5, K)), ``per_class`` {class: top-1},
    ``loss`` (mean cross-entropy), ``noise``: one ``{"var", "std", "top1", "top5"}`` per
    variance in `noise_vars` (a variance of 0 gives the clean numbers), and ``precision``.
    With `env` of several processes, each evaluates a strided shard and the counts are summed
    (exact, no padding). The model's train/eval mode is restored afterwards.
    ``memory_format``: that of the batches (channels_last for a model trained so).

    ``amp`` ("bf16", or "fp16" on CUDA) runs the model under autocast; by default it runs in
    float32, as the trainer's final evaluation always does, so that the accuracies of models
    trained in different precisions compare (per-epoch validation uses the run's autocast).
    """
    noise_vars = check_eval_options(batch_size, noise_vars)
    env = env or DistEnv()
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    classes = list(classes if classes is not None else getattr(dataset, "classes", []))
    loader = shard_loader(
        _Indexed(dataset),
        env,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    tally = _Tally(len(noise_vars), len(classes) if classes else None)
    it = loader
    if progress and env.is_main:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
    was_training = model.training
    model.eval()
    try:
        for x, y, idx in it:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            z = noise_for(idx, x.shape[1:], seed).to(device) if noise_vars else None
            for j, var in enumerate([None, *noise_vars]):
                xin = x if var is None else x + math.sqrt(var) * z
                with autocast(device, amp):
                    logits = model(xin)
                tally.add(j, logits.float(), y)
    finally:
        model.train(was_training)
    result = tally.summary(env, len(dataset), classes, noise_vars, seed)  # type: ignore[arg-type]
    result["precision"] = amp or "fp32"
    return result


def format_eval(result: dict[str, Any], header: Sequence[tuple[str, str]] = ()) -> str:
    """A plain-text report of an :func:`evaluate` result."""
    lines = [f"{k:<12}{v}" for k, v in header]
    k = result.get("topk", 5)
    lines.append(
        f"{'accuracy':<12}top-1 {result['top1']:.2f} %   top-{k} {result['top5']:.2f} %   "
        f"({result['num_images']} images, {result['num_classes']} classes, "
        f"loss {result['loss']:.4f})"
    )
    lines.append("")
    lines.append("per class (top-1 %)")
    width = max((len(c) for c in result["per_class"]), default=5)
    for name, acc in result["per_class"].items():
        lines.append(f"  {name:<{width}}  " + ("   n/a" if acc is None else f"{acc:6.2f}"))
    if result["noise"]:
        lines.append("")
        lines.append(f"Gaussian noise on [0, 1] images (not clamped), seed {result['noise_seed']}")
        lines.append(f"  {'variance':>10}  {'std':>7}  {'top-1 %':>8}  {'top-' + str(k) + ' %':>8}")
        lines.append(f"  {'0 (clean)':>10}  {0:7.3f}  {result['top1']:8.2f}  {result['top5']:8.2f}")
        for r in result["noise"]:
            lines.append(f"  {r['var']:>10g}  {r['std']:7.3f}  {r['top1']:8.2f}  {r['top5']:8.2f}")
    return "\n".join(lines)
