"""Results -> the comparison's numbers: accuracy over seeds (mean and spread), then the cost
of the first seed's models (MACs, parameters, CPU latency at batch 256 and 1, interleaved,
in eager PyTorch and on each model's fastest deploy backend)."""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ...autoencoder import WaveletAutoEncoder
from ...checkpoint import load_model
from ...cost import compare_batches, comparison_to_dict, resolve_backends
from ...train import rundir
from .methods import METHODS, budget_text
from .rundirs import run_dir
from .training import SeedResult

__all__ = ["add_cost", "aggregate", "load_models", "method_table", "time_models"]


def _mean_std(xs: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def aggregate(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of top-1, top-5 and each noise level."""
    runs = list(per_seed.values())
    out: dict[str, Any] = {}
    for k in ("top1", "top5"):
        out[k], out[f"{k}_std"] = _mean_std([r[k] for r in runs])
    noise = []
    for i, r0 in enumerate(runs[0]["noise"]):
        m1, s1 = _mean_std([r["noise"][i]["top1"] for r in runs])
        m5, s5 = _mean_std([r["noise"][i]["top5"] for r in runs])
        noise.append({"var": r0["var"], "top1": m1, "top1_std": s1, "top5": m5, "top5_std": s5})
    out["noise"] = noise
    return out


def method_table(seeds: Mapping[int, SeedResult]) -> dict[str, dict[str, Any]]:
    """Per method (in the report's order): label, the paper's name, budget in words, every
    seed's summary, and the mean and spread over seeds (:func:`aggregate`)."""
    first = next(iter(seeds.values()))
    methods: dict[str, dict[str, Any]] = {}
    for m in METHODS:
        per_seed = {str(s): r.summaries[m.key] for s, r in seeds.items() if m.key in r.summaries}
        if not per_seed:
            continue
        methods[m.key] = {
            "label": m.label,
            "paper": m.paper,
            "budget": budget_text(m.key, first.configs.get(m.key)),
            "per_seed": per_seed,
            **aggregate(per_seed),
        }
    return methods


def load_models(out: Path, keys: Sequence[str], seed: int) -> dict[str, nn.Module]:
    """The final models of `seed`'s runs of the methods `keys` (WAE w/o stage 3 has none)."""
    return {k: load_model(run_dir(out, k, seed) / rundir.FINAL)[0] for k in keys if k != "wae_noft"}


def time_models(
    models: dict[str, nn.Module],
    size: int,
    in_chans: int,
    *,
    latency: bool,
    quick: bool,
    log: Callable[[str], None],
    backends: Sequence[str] | None = None,
) -> dict[str, Any]:
    """MACs, params and (with `latency`) CPU latency of every model, at batch 256 and 1,
    interleaved in one comparison per batch size, relative to "full": in eager PyTorch and
    on `backends` (:func:`wae.cost.compare_batches`; None: the default for the mode), each
    model's fastest named."""
    deploy = resolve_backends(backends, quick=quick)
    on = f"eager and {', '.join(deploy)}" if deploy and latency else "eager"
    log(f"== measuring latency at batch 256 and 1 ({len(models)} models, interleaved; {on})")
    with warnings.catch_warnings():
        # WAENet's cost groups name the I_H branch, which the I_L-alone models lack.
        warnings.filterwarnings("ignore", "parts prefixes match no child module")
        res = compare_batches(
            models,
            size,
            batches=(256, 1),
            in_chans=in_chans,
            latency=latency,
            reference="full",
            min_run_time=0.05 if quick else 1.0,
            rounds=1 if quick else 3,
            memory_format="contiguous" if quick else "best",
            warmup=1 if quick else 3,
            backends=["eager", *deploy],
            log=lambda line: log(f"   {line}"),
        )
    return {f"b{b}": comparison_to_dict(c) for b, c in res.items()}


def add_cost(
    methods: dict[str, dict[str, Any]], cost: Mapping[str, Any], models: Mapping[str, nn.Module]
) -> None:
    """Copy each method's MACs, params, latency and speed-up into its row (WAE w/o stage 3
    has the WAE's: the same network); "latency_fastest" ({"backend", "median_ms",
    "iqr_ms"} per batch) and "speedup_fastest" are those of its fastest backend."""
    for key, m in methods.items():
        src = "wae" if key == "wae_noft" else key
        p1 = cost["b1"]["profiles"][src]
        m["macs"] = p1["ops"]["macs"]
        m["params"] = p1["ops"]["params"]
        m["params_inference"] = _inference_params(models[src])
        m["mac_ratio"] = cost["b1"]["mac_ratio"][src]
        m["latency"] = {}
        m["speedup"] = {}
        m["latency_fastest"] = {}
        m["speedup_fastest"] = {}
        for b in ("b256", "b1"):
            lat = cost[b]["profiles"][src]["latency"]
            m["latency"][b] = (
                {"median_ms": lat["median_ms"], "iqr_ms": lat["iqr_ms"]} if lat else None
            )
            m["speedup"][b] = cost[b]["speedup"][src]
            m["latency_fastest"][b] = cost[b]["fastest"][src]
            m["speedup_fastest"][b] = cost[b]["speedup_fastest"][src]


def _inference_params(model: nn.Module) -> int:
    """Parameters used at inference: a WAENet's decoder only serves the transform loss."""
    n = sum(p.numel() for p in model.parameters())
    wae = getattr(model, "wae", None)
    if isinstance(wae, WaveletAutoEncoder) and wae.has_decoder:
        for dec in (wae.decoder_low, wae.decoder_high):
            n -= sum(p.numel() for p in dec.parameters())
    return n
