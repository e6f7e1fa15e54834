"""Markdown report of :func:`wae.apps.bench.run_bench`'s result: one table per config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_markdown"]


def _features_line(feats: dict | None) -> str:
    """What the CPU offers low-precision inference (bench results before this have none)."""
    if not feats:
        return "- CPU features: not recorded"
    flags = ", ".join(feats["flags"]) or "none of AMX, AVX-512 BF16, AVX-512 VNNI"
    return f"- CPU features: {flags}; PyTorch CPU kernels: {feats['capability']}"


def _cell(e: Mapping[str, Any] | None) -> str:
    if not e:
        return "-"
    if e.get("status") != "ok":
        return "failed"
    return f"{e['median_ms']:.2f} ± {e['iqr_ms']:.2f}"


def _x(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}x"


def format_markdown(result: Mapping[str, Any]) -> str:
    """A Markdown report of :func:`run_bench`'s result: one table per config."""
    mach, settings = result["machine"], result["settings"]
    lines = [
        "# wae bench",
        "",
        f"- CPU: {mach['cpu_model']} ({mach.get('usable_cores')} usable cores); torch "
        f"{mach['torch_version']}, onnxruntime {result.get('onnxruntime_version', '?')}"
        + (f", openvino {result['openvino_version']}" if result.get("openvino_version") else ""),
        _features_line(mach.get("cpu_features")),
        f"- load average (1/5/15 min) at start {result.get('load_avg_start')}, at end "
        f"{result.get('load_avg_end')}"
        + (
            " — the machine was busy; treat the timings as noisy"
            if (result.get("load_avg_start") or [0])[0] > 0.5
            else ""
        ),
        f"- timing: median ± IQR in ms over `torch.utils.benchmark` blocks, one runtime at a "
        f"time, {settings['rounds']} interleaved rounds within it, "
        f"{settings['min_run_time']} s per candidate, "
        f"{settings['warmup']} warm-up calls; device {settings['device']}"
        + (", AMP" if settings.get("amp") else "")
        + f"; precisions {', '.join(settings.get('precisions', ['fp32']))}",
        f"- WAE's encoder: {settings.get('encoder', 'paper')}",
        "- speed-up = full-resolution network's best backend / WAE's best backend (medians)",
        "",
    ]
    for prec, note in (settings.get("precision_notes") or {}).items():
        if note:
            lines.insert(-1, f"- {prec}: {note}")
    backends = settings["backends"]
    for c in result["configs"]:
        lines += [
            f"## {c['label']}",
            "",
            f"load average before timing {c['load_avg_before']}, after {c['load_avg_after']}",
            "",
            "| model | GMACs | " + " | ".join(backends) + " | best | speed-up (best) | MAC ratio |",
            "|---|---:|" + "---:|" * len(backends) + "---|---:|---:|",
        ]
        for name, per in c["models"].items():
            best = c["best"].get(name)
            sp = 1.0 if name == "full" and best else (
                c["speedup"] if name == "wae" else c.get("half_speedup")
            )  # fmt: skip
            gmacs = c["macs"].get(name)
            lines.append(f"| {name} | {gmacs / 1e9:.2f} | " if gmacs else f"| {name} | - | ")
            lines[-1] += " | ".join(_cell(per.get(b)) for b in backends)
            lines[-1] += (
                f" | {best['backend'] if best else '-'} | {_x(sp)} | "
                f"{_x(c['mac_ratio'].get(name))} |"
            )
        notes = []
        for name, per in c["models"].items():
            for b, e in per.items():
                if e.get("status") != "ok":
                    notes.append(f"{name}/{b}: {e.get('error')}")
                elif b == "compile" and e.get("note"):
                    notes.append(f"{name}/compile: {e['note']}")
        gains = []
        for name, g in c.get("gain_over_eager", {}).items():
            if g:
                gains.append(f"{name}: " + ", ".join(f"{b} {v:.2f}x" for b, v in g.items()))
        per_b = ", ".join(
            f"{b} {_x(v)}" for b, v in c.get("speedup_per_backend", {}).items() if v is not None
        )
        lines += ["", f"- WAE speed-up on the same backend: {per_b}"]
        if gains:
            lines.append("- gain over eager (eager time / backend time): " + "; ".join(gains))
        for name, t in c.get("pytorch_tuned_best", {}).items():
            if t:
                lines.append(
                    f"- {name}: PyTorch best of channels_last / compile is {t['backend']} "
                    f"({t['median_ms']:.2f} ms)"
                )
        lines += [f"- {n}" for n in notes]
        lines.append("")
        lines += _precision_lines(c, backends)
    return "\n".join(lines)


def _precision_lines(c: Mapping[str, Any], backends: list[str]) -> list[str]:
    """Each reduced precision's per-backend table, then every precision's best backend per
    model with its speed-up at the same precision and against the float32 full network."""
    precs = c.get("precisions") or {}
    if len(precs) < 2:
        return []
    lines: list[str] = []
    for prec, v in precs.items():
        if prec == "fp32":
            continue
        cols = [b for b in backends if any(b in per for per in v["models"].values())]
        lines += [
            f"### {prec}: per backend (median ± IQR, ms)",
            "",
            "| model | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for name, per in v["models"].items():
            lines.append(f"| {name} | " + " | ".join(_cell(per.get(b)) for b in cols) + " |")
        lines += [""] + [
            f"- {name}/{b}: {e.get('error') or e.get('note')}"
            for name, per in v["models"].items()
            for b, e in per.items()
            if e.get("status") != "ok" or (b == "openvino" and e.get("note"))
        ]
        lines.append("")
    lines += [
        "### Every precision: best backend per model",
        "",
        "| model | precision | best backend | median ms | speed-up, same precision | "
        "speed-up vs fp32 full |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name in c["models"]:
        for prec, v in precs.items():
            b = v["best"].get(name)
            if b:
                lines.append(
                    f"| {name} | {prec} | {b['backend']} | {b['median_ms']:.2f} | "
                    f"{_x(b['speedup_same_precision'])} | {_x(b['speedup_vs_fp32'])} |"
                )
    fastest = c.get("fastest", {}).get("wae")
    if fastest:
        lines += [
            "",
            f"- WAE's fastest: {fastest['precision']} on {fastest['backend']}, "
            f"{_x(fastest['speedup_vs_fp32'])} against the float32 full-resolution network "
            f"at its fastest backend",
        ]
    return lines + [""]
