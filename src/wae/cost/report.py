"""Text and JSON renderings of profiles and comparisons: one table formatter for both."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .ops import OTHER

__all__ = ["comparison_to_dict", "format_profile", "format_table"]


def comparison_to_dict(result: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-serialisable copy of a :func:`compare` result (profiles turned into dicts)."""
    out = dict(result)
    out["profiles"] = {
        name: dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p
        for name, p in result["profiles"].items()
    }
    return out


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def _header(res: Mapping[str, Any]) -> list[str]:
    """The two comment lines above the table; settings that are None are left out."""
    machine, settings = res["machine"], res["settings"]
    shape = settings["input_shape"]
    fields = [
        f"CPU: {machine['cpu_model']} ({machine.get('usable_cores')} usable cores)",
        f"threads: {settings['threads']}",
        f"batch: {shape[0]}",
        f"input: {'x'.join(str(s) for s in shape[1:])}",
        f"dtype: {settings['dtype']}" if settings.get("dtype") is not None else None,
        f"device: {settings['device'] or 'model'}",
        f"torch {machine['torch_version']}",
    ]
    note = "MACs = FlopCounterMode FLOPs / 2 (conv/matmul only)"
    if res.get("reference") is not None:
        note += f"; reference: {res['reference']}"
    note += "; latency = median ± IQR over timed blocks"
    if settings.get("rounds") is not None:
        note += f", rounds: {settings['rounds']}"
    return ["# " + " | ".join(f for f in fields if f is not None), "# " + note]


def _row(name: str, p: Mapping[str, Any], res: Mapping[str, Any]) -> list[str]:
    lat = p["latency"]
    row = [
        name,
        f"{p['ops']['macs'] / 1e9:.3f}",
        f"{p['ops']['params'] / 1e6:.3f}",
        f"{lat['median_ms']:.3f} ± {lat['iqr_ms']:.3f}" if lat else "-",
        str(lat["n_measurements"]) if lat else "-",
        lat["memory_format"] if lat else "-",
    ]
    if res.get("reference") is not None:
        row += [_fmt_ratio(res["speedup"].get(name)), _fmt_ratio(res["mac_ratio"].get(name))]
    return row


def _parts_lines(res: Mapping[str, Any]) -> list[str]:
    out = ["", "# per part: GMACs / params (M)"]
    for name, p in res["profiles"].items():
        items = [
            f"{label} {part['macs'] / 1e9:.3f} / {part['params'] / 1e6:.3f}"
            for label, part in p["ops"]["parts"].items()
            if part["flops"] or part["params"] or label != OTHER
        ]
        out.append(f"{name}: " + " | ".join(items))
    return out


def format_table(result: Mapping[str, Any], *, parts: bool = True) -> str:
    """Readable side-by-side table of a :func:`compare` result (or its JSON round-trip).

    Columns: model, GMACs, params (M), latency median ± IQR (ms), number of measurements,
    memory format, and (when the result has a reference) speed-up and MAC ratio vs the
    reference. The header line states the CPU, threads, batch size, input shape, dtype, device
    and torch version. With ``parts``, per-part GMACs and parameters follow.
    """
    res = comparison_to_dict(result)
    cols = ["model", "GMACs", "params (M)", "latency (ms)", "n", "mem format"]
    if res.get("reference") is not None:
        cols += ["speed-up", "MAC ratio"]
    rows = [_row(name, p, res) for name, p in res["profiles"].items()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [*_header(res), line(cols), line(["-" * w for w in widths]), *map(line, rows)]
    if parts:
        out += _parts_lines(res)
    return "\n".join(out)


def format_profile(profile: Any, *, parts: bool = True) -> str:
    """The table of one :class:`ModelProfile` (or its dict): :func:`format_table` without a
    reference, so without the speed-up and MAC-ratio columns."""
    p = dataclasses.asdict(profile) if dataclasses.is_dataclass(profile) else dict(profile)
    lat = p["latency"] or {}
    settings = {
        "input_shape": p["input_shape"],
        "threads": lat.get("threads", p["machine"].get("threads")),
        "dtype": lat.get("dtype"),  # counting runs in the model's own dtype: not stated
        "device": lat.get("device"),
        "rounds": lat.get("rounds"),
    }
    result = {
        "reference": None,
        "machine": p["machine"],
        "settings": settings,
        "profiles": {p["name"] or "model": p},
    }
    return format_table(result, parts=parts)
