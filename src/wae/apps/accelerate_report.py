"""The results of `wae accelerate` (and `wae demo`) in words: the verdict and the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..stats import se_diff, two_se, verdict

__all__ = ["ROWS", "fastest_fields", "format_results", "verdict_lines"]

ROWS = {"baseline": "original (teacher)", "wae": "WAE + KD", "half": "I_R + KD"}


def verdict_lines(r: dict[str, Any]) -> list[str]:
    """The verdict: what WAE keeps at what speed, and what it adds over plain resizing (2 SE
    of the test set decide; within them it is "inconclusive")."""
    n, bs = r["test_images"], r["latency_batch_size"]
    base, wae = r["baseline"]["top1"], r["wae"]["top1"]
    limit = two_se(se_diff(wae, base, n))
    lines = [
        f"WAE keeps {wae:.2f} % of the original's {base:.2f} % top-1 ({wae - base:+.2f} "
        f"points; 2 SE = {limit:.2f}) at {r['speedup']:.2f}x the speed (batch {bs})."
    ]
    if "half" in r:
        half = r["half"]["top1"]
        margin = wae - half
        v = verdict(margin, se_diff(wae, half, n))
        meaning = {
            "holds": "WAE adds accuracy over plain resizing here.",
            "does not hold": "plain resizing is better on this data: use I_R + KD instead.",
            "inconclusive": "within 2 SE, so on this data WAE adds nothing measurable over "
            "plain resizing.",
        }[v]
        lines.append(
            f"Against half-size input with the same distillation (I_R + KD: {half:.2f} % at "
            f"{r['half']['speedup']:.2f}x): {margin:+.2f} points, {meaning}"
        )
    return lines


def fastest_fields(timing: Mapping[int, Any], batch: int, key: str) -> dict[str, Any]:
    """Row `key`'s deploy-speed keys from :func:`wae.cost.compare_batches`' result at the
    latency batch `batch` and at batch 1: the fastest backend and its median (eager PyTorch
    included), the speed-up of fastest over the teacher's fastest, every backend's entry."""
    main, one = timing[batch], timing[1]
    fb, f1 = main["fastest"][key], one["fastest"][key]
    return {
        "latency_ms_fastest": fb["median_ms"] if fb else None,
        "fastest_backend": fb["backend"] if fb else None,
        "latency_b1_ms_fastest": f1["median_ms"] if f1 else None,
        "fastest_backend_b1": f1["backend"] if f1 else None,
        "speedup_fastest": main["speedup_fastest"][key],
        "speedup_fastest_b1": one["speedup_fastest"][key],
        "backends": {str(batch): main["backends"][key], "1": one["backends"][key]},
    }


def _fastest_cell(ms: float | None, backend: str | None, fmt: str) -> str:
    return "n/a" if ms is None else f"{fmt.format(ms)} ({backend})"


def _deploy_lines(r: dict[str, Any], deploy: list[str]) -> list[str]:
    """The sentence under the table: WAE's speed-up when each model runs on its fastest."""
    sb, s1 = r.get("speedup_fastest"), r.get("speedup_fastest_b1")
    if sb is None or s1 is None:
        return []
    return [
        f"On each model's fastest backend (eager PyTorch or {', '.join(deploy)}), WAE runs at "
        f"{sb:.2f}x the original's speed at batch {r['latency_batch_size']} and {s1:.2f}x at "
        f"batch 1."
    ]


def _epochs_text(seconds: dict[str, float]) -> str:
    names = {"baseline": "original", "wae": "WAE", "half": "I_R"}
    parts = [f"{names.get(k, k)} {v:.0f} s" for k, v in seconds.items()]
    return ", ".join(parts) or "no time (all runs reused)"


def format_results(r: dict[str, Any]) -> str:
    """The table (Markdown) and verdict from results.json's dict; with the fastest-backend
    columns when deploy backends were timed (results of older versions have none)."""
    bs = r["latency_batch_size"]
    s, mach = r["settings"], r["machine"]
    deploy = list(s.get("backends") or [])
    head = (
        f"| model | test top-1 % | top-5 % | MMACs / image | CPU ms (batch {bs}) | speed-up | "
        f"CPU ms (batch 1) |"
    )
    if deploy:
        head += f" fastest backend ms (batch {bs}) | fastest backend ms (batch 1) |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, label in ROWS.items():
        if key not in r:
            continue
        m = r[key]
        row = (
            f"| {label} | {m['top1']:.2f} | {m['top5']:.2f} | {m['macs'] / 1e6:.1f} | "
            f"{m['latency_ms']:.1f} ± {m['latency_iqr_ms']:.1f} | {m['speedup']:.2f}x | "
            f"{m['latency_ms_batch1']:.2f} |"
        )
        if deploy:
            b_cell = _fastest_cell(m.get("latency_ms_fastest"), m.get("fastest_backend"), "{:.1f}")
            one = _fastest_cell(
                m.get("latency_b1_ms_fastest"), m.get("fastest_backend_b1"), "{:.2f}"
            )
            row += f" {b_cell} | {one} |"
        rows.append(row)
    runtimes = f"eager PyTorch {mach.get('torch_version')}"
    if deploy:
        runtimes += f", and {', '.join(deploy)} for the fastest-backend columns"
    return "\n".join(
        [
            *(["**QUICK smoke test: the numbers below mean nothing.**", ""] if r["quick"] else []),
            *rows,
            "",
            *r["verdict"],
            *(_deploy_lines(r, deploy) if deploy else []),
            f"MAC ratio {r['mac_ratio']:.2f}x. Machine: {mach.get('cpu_model')}, "
            f"{s['threads']} threads, {s['dtype']}, {runtimes}; "
            f"training epochs took {_epochs_text(r.get('epoch_seconds', {}))}.",
            *([r["precision_summary"]] if r.get("precision_summary") else []),
        ]
    )
