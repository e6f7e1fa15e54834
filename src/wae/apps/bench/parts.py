"""Where WAE's time goes: each part of WAENet (encoder, I_L network, I_H network, heads)
timed alone, before and after :func:`wae.optimize.optimize_for_inference`, in PyTorch and in
ONNX Runtime, next to its share of the MACs.

The parts are WAENet's own: :meth:`wae.optimize.WAEInference.from_wae_net` splits a WAENet
into its decompose + norms, its two branches and its heads (forward_head + combine_heads),
sharing its modules; an optimised model already is a WAEInference. ONNX parts are exported
with :func:`wae.export.export_module`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import cost
from ...encoders import DEFAULT_ENCODER
from ...export import export_module, onnx_session
from ...models import WAENet
from ...optimize import WAEInference, optimize_for_inference
from ...precision import cast_for_inference
from .backends import Runner
from .matrix import check_settings, load_average, scratch_dir
from .models import BenchError, build_models

__all__ = [
    "PARTS",
    "PART_PRECISIONS",
    "format_parts_markdown",
    "part_precision",
    "time_parts",
    "wae_parts",
]

#: The parts of WAENet, in forward order ("whole" is the model itself).
PARTS = ("encoder", "I_L network", "I_H network", "heads")
#: The variants time_parts compares: PyTorch before / after optimize_for_inference, then
#: ONNX Runtime on the export of each.
VARIANTS = ("channels_last", "optimized", "ort", "ort_optimized")
#: The precisions time_parts takes (bf16 adds the PyTorch variants cast once).
PART_PRECISIONS = ("fp32", "bf16")


def part_precision(precisions: Sequence[str]) -> str:
    """The precision :func:`time_parts` runs for the asked `precisions` (``--precision``):
    bf16 when asked, else fp32; BenchError for one of no per-part form (int8)."""
    extra = sorted(set(precisions) - set(PART_PRECISIONS))
    if extra:
        raise BenchError(
            f"--parts times {' and '.join(PART_PRECISIONS)} only, not {', '.join(extra)}: an "
            f"int8 model exists only as a whole quantized graph. Drop it from --precision."
        )
    return "bf16" if "bf16" in precisions else "fp32"


def wae_parts(
    model: nn.Module, x: torch.Tensor
) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """A WAENet (or its optimised WAEInference) split into parts, each with its real input.

    x (N, C, H, W) -> {"encoder": (module, (x,)), "I_L network": (low_net, (I_L,)),
    "I_H network": (high_net, (I_H,)), "heads": (module, (f_L, f_H)), "whole": (model, (x,))};
    I_L, I_H are the normalised sub-images (N, C, H/2, W/2), f_L, f_H the branches' maps.
    """
    if isinstance(model, WAENet):
        net = WAEInference.from_wae_net(model)
    elif isinstance(model, WAEInference):
        net = model
    else:
        raise BenchError(f"time_parts needs a WAENet, got {type(model).__name__}.")
    if net.high_net is None:
        raise BenchError("time_parts needs a WAENet with an I_H branch.")
    net.eval()
    with torch.no_grad():
        low, high = net.encoder(x)
        f_low, f_high = net.low_net(low), net.high_net(high)
    return {
        "encoder": (net.encoder, (x,)),
        "I_L network": (net.low_net, (low,)),
        "I_H network": (net.high_net, (high,)),
        "heads": (net.head, (f_low, f_high)),
        "whole": (model, (x,)),
    }


def _variants(wae: nn.Module, precision: str = "fp32") -> dict[str, nn.Module]:
    """The model each variant times (ONNX ones are exported from it); at bf16, the two
    PyTorch variants again with the weights cast once (``channels_last_bf16``,
    ``optimized_bf16``: without the fp32-only oneDNN fusion)."""
    out = {
        "channels_last": copy.deepcopy(wae).to(memory_format=torch.channels_last),
        "optimized": optimize_for_inference(wae),
        "ort": wae,
        "ort_optimized": optimize_for_inference(wae, fuse_mkldnn=False, channels_last=False),
    }
    if precision != "fp32":
        out[f"channels_last_{precision}"] = cast_for_inference(out["channels_last"], precision)
        optimized = optimize_for_inference(wae, fuse_mkldnn=False)
        out[f"optimized_{precision}"] = cast_for_inference(optimized, precision)
    return out


def _ort_part(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, threads: int
) -> tuple[Runner, tuple[torch.Tensor, ...], Any]:
    """One part exported to ONNX and run by ONNX Runtime: (runner, its inputs, session)."""
    sess = onnx_session(export_module(module, args, path), threads)
    names = [i.name for i in sess.get_inputs()]

    def run(*a: torch.Tensor) -> Any:
        return sess.run(None, {k: t.numpy() for k, t in zip(names, a, strict=True)})

    return Runner(run), tuple(a.contiguous() for a in args), sess


def _torch_part(
    module: nn.Module, args: tuple[torch.Tensor, ...]
) -> tuple[Runner, tuple[torch.Tensor, ...]]:
    """One part run by PyTorch on channels_last inputs (prepared here, outside the timing)."""
    fmt = torch.channels_last
    return Runner(module), tuple(
        a.contiguous(memory_format=fmt) if a.dim() == 4 else a for a in args
    )


def _layout_ms(model: nn.Module, x: torch.Tensor, fmt: torch.memory_format, runs: int) -> float:
    """Time per call spent in layout conversions (copies between memory formats) in PyTorch:
    self time of aten::copy_ under a profiler, divided by the number of calls."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        xin = x.contiguous(memory_format=fmt)
        model(xin)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(xin)
    total_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::copy_")
    return total_us / 1e3 / runs


def _ort_layout_ms(path: Path, x: torch.Tensor, threads: int, runs: int) -> float:
    """Time per run ONNX Runtime spends in its layout reorders (NCHW <-> NCHWc)."""
    sess = onnx_session(path, threads, profile_prefix=path.with_suffix(""))
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x.numpy()})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink(missing_ok=True)
    us = sum(
        e["dur"]
        for e in events
        if e.get("cat") == "Node" and "Reorder" in e.get("args", {}).get("op_name", "")
    )
    return us / 1e3 / runs


def _prepare(
    variants: Mapping[str, nn.Module], x: torch.Tensor, workdir: Path, threads: int
) -> tuple[dict[str, Runner], dict[str, tuple[torch.Tensor, ...]], dict[str, float], list[Any]]:
    """Runners and inputs keyed "variant/part", the layout time of each whole variant, and
    the ONNX Runtime sessions that must outlive the timing."""
    runners: dict[str, Runner] = {}
    inputs: dict[str, tuple[torch.Tensor, ...]] = {}
    layout: dict[str, float] = {}
    keep: list[Any] = []
    for vname, model in variants.items():
        xv = x.to(next(model.parameters()).dtype)  # a cast variant's parts take its dtype
        for pname, (module, args) in wae_parts(model, xv).items():
            key = f"{vname}/{pname}"
            if vname.startswith("ort"):
                path = workdir / f"part-{vname}-{pname.replace(' ', '_')}.onnx"
                runners[key], inputs[key], sess = _ort_part(module, args, path, threads)
                keep.append(sess)
                if pname == "whole":
                    layout[vname] = _ort_layout_ms(path, x, threads, 10)
            else:
                runners[key], inputs[key] = _torch_part(module, args)
                if pname == "whole":
                    layout[vname] = _layout_ms(model, xv, torch.channels_last, 10)
    return runners, inputs, layout, keep


def _table(
    lats: Mapping[str, cost.Latency], layout: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """variant -> part -> {median_ms, iqr_ms}, plus "glue" (whole - sum of the parts) and
    "layout conversions" (inside the whole)."""
    table: dict[str, dict[str, Any]] = {}
    for key, lat in lats.items():
        vname, pname = key.split("/")
        table.setdefault(vname, {})[pname] = {"median_ms": lat.median_ms, "iqr_ms": lat.iqr_ms}
    for vname, parts in table.items():
        summed = sum(v["median_ms"] for k, v in parts.items() if k != "whole")
        parts["glue"] = {"median_ms": parts["whole"]["median_ms"] - summed, "iqr_ms": None}
        parts["layout conversions"] = {"median_ms": layout.get(vname), "iqr_ms": None}
    return table


def time_parts(
    backbone: str,
    *,
    input_size: int | None = None,
    batch_size: int = 1,
    threads: int | str = "all",
    min_run_time: float = 1.0,
    rounds: int = 3,
    warmup: int = 2,
    workdir: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    encoder: str = DEFAULT_ENCODER,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Where WAE's time goes: each part of WAE (encoder, I_L net, I_H net, heads) timed
    alone, before and after optimize_for_inference, in PyTorch (channels_last / optimized)
    and ONNX Runtime (ort / ort_optimized), next to its share of the MACs; with `precision`
    "bf16" also the PyTorch variants cast to bf16 (parts fed bf16 inputs). The WAE has the
    encoder `encoder` (:mod:`wae.encoders`), timed as its "encoder" part.

    "layout conversions" is the time spent copying between memory formats inside the whole
    model (PyTorch: aten::copy_; ONNX Runtime: its Reorder nodes), "glue" is whole minus the
    sum of the parts (per-call overhead between parts). CPU only. The ONNX files go to
    `workdir` (default: a temporary directory, removed).
    """
    part_precision([precision])
    n_threads = check_settings(
        input_size=input_size,
        batch_sizes=[batch_size],
        threads=[threads],
        min_run_time=min_run_time,
        rounds=rounds,
        warmup=warmup,
        encoder=encoder,
    )[0][0]
    models, info = build_models(backbone, input_size=input_size, encoder=encoder)
    wae = models["wae"]
    del models
    x = torch.rand(batch_size, info["in_chans"], info["input_size"], info["input_size"])
    ops = cost.count_ops(wae, x, parts=wae.cost_parts)
    with scratch_dir(workdir) as wd:
        runners, inputs, layout, keep = _prepare(_variants(wae, precision), x, wd, n_threads)
        log(f"timing {len(runners)} parts (load average {load_average()})")
        load_before = load_average()
        lats = cost.measure_interleaved(
            runners,
            inputs,
            threads=n_threads,
            memory_format=torch.contiguous_format,  # inputs are prepared above
            dtype=None,  # each variant's inputs are prepared in its own dtype above
            min_run_time=min_run_time,
            rounds=rounds,
            device="cpu",
            warmup=warmup,
        )
        load_after = load_average()
        del keep
    mac_share = {
        label: p.macs / ops.macs for label, p in ops.parts.items() if p.macs or label != "other"
    }
    return {
        "backbone": backbone,
        "encoder": encoder,
        "input_size": info["input_size"],
        "batch_size": batch_size,
        "threads": n_threads,
        "machine": cost.machine_info(n_threads),
        "gmacs": ops.macs / 1e9,
        "mac_share": mac_share,
        "parts": _table(lats, layout),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }


def format_parts_markdown(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`time_parts`: ms per part and variant, and MAC shares."""
    variants = list(result["parts"])
    rows = [*PARTS, "glue", "layout conversions", "whole"]
    lines = [
        f"## Where WAE-{result['backbone']}'s time goes ({result.get('encoder', 'paper')} "
        f"encoder): {result['input_size']}x"
        f"{result['input_size']}, batch {result['batch_size']}, threads {result['threads']}",
        "",
        f"CPU: {result['machine']['cpu_model']}; load average before {result['load_avg_before']},"
        f" after {result['load_avg_after']}; {result['gmacs']:.2f} GMACs in all.",
        "",
        "| part | MAC share | " + " | ".join(variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    for r in rows:
        share = result["mac_share"].get(r) if r in PARTS else None  # cost_parts' labels
        cells = []
        for v in variants:
            e = result["parts"][v].get(r, {})
            ms = e.get("median_ms")
            if ms is None:
                cells.append("-")
                continue
            whole = result["parts"][v]["whole"]["median_ms"]
            pct = f" ({100 * ms / whole:.0f}%)" if r != "whole" and whole > 0 else ""
            cells.append(f"{ms:.2f}{pct}")
        share_txt = "" if share is None else f"{100 * share:.1f}%"
        lines.append(f"| {r} | {share_txt} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "ms per call (share of the whole); glue = whole - sum of parts; layout conversions "
        "are inside the whole (PyTorch aten::copy_, ONNX Runtime Reorder nodes).",
        "",
    ]
    return "\n".join(lines)
