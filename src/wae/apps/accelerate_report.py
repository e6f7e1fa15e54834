"""The results of `wae accelerate` (and `wae demo`) in words: the verdict and the table."""

from __future__ import annotations

from typing import Any

from ..stats import se_diff, two_se, verdict

__all__ = ["ROWS", "format_results", "verdict_lines"]

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


def _epochs_text(seconds: dict[str, float]) -> str:
    names = {"baseline": "original", "wae": "WAE", "half": "I_R"}
    parts = [f"{names.get(k, k)} {v:.0f} s" for k, v in seconds.items()]
    return ", ".join(parts) or "no time (all runs reused)"


def format_results(r: dict[str, Any]) -> str:
    """The table (Markdown) and verdict from results.json's dict."""
    bs = r["latency_batch_size"]
    rows = [
        f"| model | test top-1 % | top-5 % | MMACs / image | CPU ms (batch {bs}) | speed-up | "
        f"CPU ms (batch 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in ROWS.items():
        if key not in r:
            continue
        m = r[key]
        rows.append(
            f"| {label} | {m['top1']:.2f} | {m['top5']:.2f} | {m['macs'] / 1e6:.1f} | "
            f"{m['latency_ms']:.1f} ± {m['latency_iqr_ms']:.1f} | {m['speedup']:.2f}x | "
            f"{m['latency_ms_batch1']:.2f} |"
        )
    s, mach = r["settings"], r["machine"]
    return "\n".join(
        [
            *(["**QUICK smoke test: the numbers below mean nothing.**", ""] if r["quick"] else []),
            *rows,
            "",
            *r["verdict"],
            f"MAC ratio {r['mac_ratio']:.2f}x. Machine: {mach.get('cpu_model')}, "
            f"{s['threads']} threads, {s['dtype']}, eager PyTorch {mach.get('torch_version')}; "
            f"training epochs took {_epochs_text(r.get('epoch_seconds', {}))}.",
            *([r["precision_summary"]] if r.get("precision_summary") else []),
        ]
    )
