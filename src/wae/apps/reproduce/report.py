"""The paper's numbers and report.md in the paper's table layout.

Everything here works on the plain ``results`` dict that the runner writes to results.json,
so a report can be rebuilt from that file alone (``write_report(json.load(...), out)``). The
verdicts and their rule are in :mod:`wae.apps.reproduce.verdicts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...checkpoint import atomic_write_bytes
from .methods import BEYOND_KEYS
from .verdicts import claims, fmt_err, fmt_num, fmt_pm

__all__ = ["PAPER", "claims", "format_report", "write_report"]

# The paper's numbers (ImageNet top-5 error % unless noted), from design/paper-notes.md.
PAPER: dict[str, Any] = {
    "table2": {  # top-5 err, CPU ms, CPU speed-up, GFLOPs (multiply-accumulates)
        "full": {"top5_err": 11.65, "cpu_ms": 1289.28, "speedup": 1.0, "gmacs": 15.36},
        "half": {"top5_err": 15.73, "cpu_ms": 340.73, "speedup": 3.78, "gmacs": 3.89},
        "wavelet": {"top5_err": 14.42, "cpu_ms": 392.24, "speedup": 3.29},
        "encoder": {"top5_err": 12.98, "cpu_ms": 411.63, "speedup": 3.13},
        "taylor": {"top5_err": "13.00 / 15.50", "speedup": "1.70x / 2.10x"},
        "thinet": {"top5_err": "18.03 / 12.08", "speedup": "11.25x / 2.91x"},
        "wae": {"top5_err": 11.87, "cpu_ms": 411.63, "speedup": 3.13, "gmacs": 4.11},
    },
    "table3": {"ca": 15.92, "half": 15.73, "il": 14.20, "wae": 11.87},
    "table4": {"wae_noft": 12.21, "wae": 11.87},
    "table6_cacd_acc": {"full": 95.91, "wavelet": 94.99, "encoder": 95.20, "wae": 96.13},
    "table7_cacd_noise": {
        "vars": [0.0, 0.01, 0.02, 0.05, 0.1],
        "full": [95.91, 90.22, 80.00, 45.10, 14.31],
        "wae": [96.13, 91.16, 83.85, 55.91, 23.88],
    },
    "speedup_bound": 3.76,
}


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _lat(m: Mapping[str, Any], b: str) -> str:
    lat = (m.get("latency") or {}).get(b)
    return "n/a" if not lat else f"{lat['median_ms']:.3g}"


def _sp(m: Mapping[str, Any], b: str) -> str:
    s = (m.get("speedup") or {}).get(b)
    return "n/a" if s is None else f"{s:.2f}x"


def _paper(key: str, field: str, suffix: str = "") -> str:
    v = PAPER["table2"].get(key, {}).get(field)
    if v is None:
        return "-"
    return f"{v:.2f}{suffix}" if isinstance(v, (int, float)) else str(v)


def format_report(results: Mapping[str, Any]) -> str:
    """report.md's text (see the module docstring), one section after the other."""
    lines: list[str] = []
    for section in (
        _title,
        _setup,
        _verdicts,
        _table2,
        _beyond,
        _tables_3_4_6,
        _table7,
        _decomposition,
        _pruning,
        _figures,
        _notes,
    ):
        lines += section(results)
    return "\n".join(lines).rstrip() + "\n"


def _title(results: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if results.get("quick"):
        lines += [
            "**QUICK RUN: a smoke test of the pipeline (tiny subset, one epoch per stage, "
            "width 8). The numbers below are meaningless.**",
            "",
        ]
    return lines + [
        f"# Reproduction of Chen et al. (AAAI 2018), WAE, on {results.get('dataset', '?')}",
        "",
        f"Written {results.get('created', '?')} by `wae reproduce`; the numbers are in "
        "`results.json`, the resolved configs in `config.json`, the runs in `runs/<method>/`.",
        "",
    ]


def _cue_line(cue: Mapping[str, Any] | None) -> list[str]:
    """The trivial-cue baseline's line (none in reports made before it was measured; those
    made before the ink fraction was added saw mean and standard deviation only)."""
    if not cue:
        return []
    ink = "ink" in cue.get("features", ())
    seen = "mean, standard deviation and ink fraction" if ink else "mean and standard deviation"
    return [
        f"- Trivial cues: a logistic regression on each test image's {seen} alone "
        f"(`wae.data.trivial_cue_accuracy`) gets {cue['top1']:.1f} % top-1 "
        f"(chance {cue['chance']:.1f} %)."
    ]


def _setup(results: Mapping[str, Any]) -> list[str]:
    plan = results.get("plan", {})
    seeds = results.get("seeds", [])
    lines = [
        "## Setup",
        "",
        f"- Data: {results.get('dataset')}: {plan.get('n_train')} training images, "
        f"{plan.get('n_val')} validation images (held out of train), "
        f"{results.get('num_test')} test images"
        + (
            f"; training subset {plan.get('subset')} ({plan.get('subset_source')})."
            if plan.get("subset")
            else "."
        ),
        *_cue_line(results.get("trivial_cue")),
        f"- Backbone: {results.get('backbone', '?')}; seeds {seeds} "
        + ("(mean ± sample standard deviation over seeds)." if len(seeds) > 1 else "(one seed)."),
        f"- Budget: every classifier trains for E_c = {plan.get('classifier_epochs')} epochs "
        "(the WAE's stage 2 + stage 3); the WAE also has its stage 1; the pruned network is "
        "fine-tuned for stage 3's epochs. Per method:",
    ]
    for key, m in results.get("methods", {}).items():
        if m.get("budget"):
            lines.append(f"  - {m['label']}{_beyond_mark(key)}: {m['budget']}")
    mach = results.get("machine", {})
    return lines + [
        f"- Cost: MACs and parameters from `wae.cost.count_ops` (FlopCounterMode, conv/matmul "
        f"only, MACs = FLOPs / 2), per image; latency from `wae.cost.compare` (all methods "
        f"interleaved in one run), CPU {mach.get('cpu_model', '?')}, "
        f"{mach.get('threads', '?')} thread(s), float32, batch 256 and batch 1 "
        f"(median of timed blocks, per batch). The paper's GPU columns are not measured "
        f"(no GPU).",
        f"- Total time: {results.get('timing_s', {}).get('total', 0) / 60:.1f} min.",
        "",
    ]


def _verdicts(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Verdicts",
        "",
        "A claim that A beats B *holds* when A's top-1 is higher by more than 2 standard errors "
        "of the difference on this test set (2 SE, binomial), *does not hold* when it is lower "
        "by more than 2 SE, and is *inconclusive* within 2 SE. \"WAE keeps the full network's "
        'accuracy" holds unless WAE is lower by more than 2 SE; the speed-up claim compares '
        "measured medians with the MAC ratio.",
        "",
    ]
    rows = []
    for c in results.get("claims") or claims(results):
        margin = c.get("margin")
        ms = "n/a" if margin is None else f"{margin:+.2f} {c.get('unit', '')}".strip()
        if c["id"] == "speedup" and margin is not None:
            ms = f"{margin:.0%} of the MAC ratio"
        rows.append([c["claim"], c["paper"], c["ours"], f"**{c['verdict']}**", ms, c["note"]])
    return lines + _table(["claim", "paper", "ours", "verdict", "margin", "note"], rows)


_TABLE2_HEADER = [
    "method",
    "top-1 err %",
    "top-5 err %",
    "CPU ms (b256)",
    "speed-up (b256)",
    "CPU ms (b1)",
    "speed-up (b1)",
    "MMACs/image",
    "MAC ratio",
    "paper top-5 err %",
    "paper CPU ms",
    "paper CPU speed-up",
    "paper GFLOPs",
]


# Beside the eager columns (after "speed-up (b1)") when deploy backends were timed.
_FASTEST_HEADER = ["fastest backend ms (b256)", "fastest backend ms (b1)"]
_AT = _TABLE2_HEADER.index("speed-up (b1)") + 1


def _deploy_timed(results: Mapping[str, Any]) -> list[str]:
    """The backends the cost was timed on besides eager (none in results made before they
    were, or with `--backends eager`)."""
    b1 = (results.get("cost") or {}).get("b1") or {}
    return list((b1.get("settings") or {}).get("backends") or [])


def _table2_header(deploy: bool) -> list[str]:
    return [*_TABLE2_HEADER[:_AT], *(_FASTEST_HEADER if deploy else []), *_TABLE2_HEADER[_AT:]]


def _fast(m: Mapping[str, Any], b: str) -> str:
    """A method's fastest backend at batch `b`: "2.1 (ort)"."""
    f = (m.get("latency_fastest") or {}).get(b)
    return "n/a" if not f else f"{f['median_ms']:.3g} ({f['backend']})"


def _table2_row(key: str, m: Mapping[str, Any], deploy: bool = False) -> list[str]:
    row = _paper_row(key, m)
    if deploy:
        row[_AT:_AT] = [_fast(m, "b256"), _fast(m, "b1")]
    return row


def _paper_row(key: str, m: Mapping[str, Any]) -> list[str]:
    return [
        m["label"],
        fmt_err(m),
        fmt_err(m, "top5"),
        _lat(m, "b256"),
        _sp(m, "b256"),
        _lat(m, "b1"),
        _sp(m, "b1"),
        fmt_num(m.get("macs") and m["macs"] / 1e6),
        fmt_num(m.get("mac_ratio"), "{:.2f}x"),
        _paper(key, "top5_err"),
        _paper(key, "cpu_ms"),
        _paper(key, "speedup", suffix="x"),
        _paper(key, "gmacs"),
    ]


def _table2(results: Mapping[str, Any]) -> list[str]:
    methods = results.get("methods", {})
    deploy = _deploy_timed(results)
    rows = []
    for key in ("full", "half", "wavelet", "encoder", "taylor", "thinet", "wae"):
        if key == "thinet":
            rows.append(
                ["ThiNet (not done, see below)"]
                + ["-"] * (10 if deploy else 8)
                + [_paper(key, "top5_err"), "-", _paper(key, "speedup"), "-"]
            )
        elif methods.get(key):
            rows.append(_table2_row(key, methods[key], bool(deploy)))
    return (
        [
            "",
            "## Table 2: methods (paper: VGG16 on ImageNet; ours: SmallVGG on "
            f"{results.get('dataset')})",
            "",
        ]
        + _table(_table2_header(bool(deploy)), rows)
        + [
            "",
            "Batch-256 latency is per batch of 256 images; speed-up and MAC ratio are relative "
            "to the full-resolution network. The paper's GFLOPs are multiply-accumulates (VGG16: "
            "15.36 G), comparable to our MACs column." + _fastest_note(deploy),
        ]
    )


def _fastest_note(deploy: Sequence[str]) -> str:
    if not deploy:
        return ""
    return (
        " CPU ms is eager PyTorch; the fastest-backend columns give each method's fastest of "
        f"eager and {', '.join(deploy)} (optimized: wae.optimize.optimize_for_inference; ort, "
        "ort_optimized: ONNX Runtime on the ONNX export), timed with the same threads, "
        "warm-up and rounds, and name it (results.json: latency_fastest, speedup_fastest)."
    )


def _beyond_mark(key: str) -> str:
    return " (beyond the paper)" if key in BEYOND_KEYS else ""


# The sections beyond the paper, as (title, their rows in order: the rows beyond the paper
# beside the paper's rows they extend, what the section shows).
_BEYOND_SECTIONS = (
    (
        "knowledge distillation from the full network",
        ("full", "wae", "wae_kd", "half", "half_kd"),
        "Not in the paper: the WAE and the half-size network (I_R) started from the trained "
        "full-resolution network and taught by it (its soft targets, as `wae accelerate` "
        "does), beside the paper's rows, which learn from the labels alone. Same data, "
        "budget and measurements as Table 2.",
    ),
    (
        "a light encoder",
        ("full", "wae", "wae_light"),
        "Not in the paper: the WAE row with the light encoder (wae.encoders, "
        "docs/light-encoder.md: half resolution from its first layer, ~50x fewer MACs than "
        "the paper's encoder), everything else as the WAE row. Same data, budget and "
        "measurements as Table 2.",
    ),
    (
        "what the paper leaves open",
        ("full", "wae_kd", "wae_kd_unfrozen", "wae_kd_wide", "wae_kd_feat", "half_kd"),
        "Not in the paper: the distilled WAE with one change each: the encoder unfrozen in "
        "stage 2 (trained with the classifier, the transform loss at stage 3's weight), the "
        "I_H branch at 1/2 of the backbone's width instead of 1/4, and the teacher's last "
        "feature map distilled into the I_L network's as well as its logits "
        "(wae.distill.feature_distillation_loss). Same data, budget and measurements as "
        "Table 2.",
    ),
)


def _beyond(results: Mapping[str, Any]) -> list[str]:
    """Each section of rows beyond the paper, beside the paper's rows they extend; nothing
    for a section none of whose rows was run."""
    methods = results.get("methods", {})
    deploy = bool(_deploy_timed(results))
    ours = _TABLE2_HEADER.index("MAC ratio") + 1 + (len(_FASTEST_HEADER) if deploy else 0)
    lines: list[str] = []
    for title, keys, text in _BEYOND_SECTIONS:
        if not any(methods.get(k) for k in keys if k in BEYOND_KEYS):
            continue
        rows = [
            [
                *_table2_row(k, methods[k], deploy)[:ours],
                "beyond the paper" if _beyond_mark(k) else "paper",
            ]
            for k in keys
            if methods.get(k)
        ]
        lines += ["", f"## Beyond the paper: {title}", "", text, ""]
        lines += _table([*_table2_header(deploy)[:ours], "row"], rows)
    return lines


def _tables_3_4_6(results: Mapping[str, Any]) -> list[str]:
    """What the network sees (Table 3), fine-tuning (Table 4), accuracy (Table 6)."""
    methods = results.get("methods", {})
    err_header = ["top-1 err % (ours)", "top-5 err % (ours)", "paper top-5 err %"]
    lines = ["", "## Table 3: what the standard network sees (top-1 / top-5 error %)", ""]
    rows = []
    for key, name in (
        ("ca", "cA (DWT approximation)"),
        ("half", "I_R (resized)"),
        ("il", "I_L (WAE, I_H dropped)"),
        ("wae", "I_L + I_H (WAE)"),
    ):
        m = methods.get(key)
        rows.append([name, fmt_err(m), fmt_err(m, "top5"), f"{PAPER['table3'][key]:.2f}"])
    lines += _table(["input", *err_header], rows)
    lines += ["", "## Table 4: joint fine-tuning (stage 3)", ""]
    rows = []
    for key, name in (("wae_noft", "w/o FT (stage 2 checkpoint)"), ("wae", "w/ FT (stage 3)")):
        m = methods.get(key)
        rows.append([name, fmt_err(m), fmt_err(m, "top5"), f"{PAPER['table4'][key]:.2f}"])
    lines += _table(["WAE", *err_header], rows)
    lines += ["", "## Table 6: accuracy (paper: CACD face identification)", ""]
    rows = [
        [
            methods[key]["label"],
            fmt_pm(methods[key].get("top1"), methods[key].get("top1_std")),
            f"{PAPER['table6_cacd_acc'][key]:.2f}",
        ]
        for key in ("full", "wavelet", "encoder", "wae")
        if methods.get(key)
    ]
    return lines + _table(["method", "top-1 acc % (ours)", "paper CACD acc %"], rows)


def _table7(results: Mapping[str, Any]) -> list[str]:
    methods = results.get("methods", {})
    lines = ["", "## Table 7: Gaussian noise of variance V on the [0, 1] test images", ""]
    pv = PAPER["table7_cacd_noise"]["vars"]
    all_vars: list[float] = sorted(
        {round(r["var"], 8) for m in methods.values() for r in m.get("noise", [])}
    )
    rows = []
    for key, m in methods.items():
        nz = {round(r["var"], 8): r for r in m.get("noise", [])}
        rows.append(
            [m["label"] + (" (ours, beyond the paper)" if _beyond_mark(key) else " (ours)")]
            + [fmt_pm(nz[v]["top1"], nz[v].get("top1_std")) if v in nz else "n/a" for v in all_vars]
        )
    for key, name in (("full", "VGG16 (paper, CACD)"), ("wae", "WAE (paper, CACD)")):
        paper = dict(zip(pv, PAPER["table7_cacd_noise"][key], strict=True))
        rows.append([name] + [f"{paper[v]:.2f}" if v in paper else "-" for v in all_vars])
    return lines + _table(["top-1 acc % at V ="] + [f"{v:g}" for v in all_vars], rows)


def _decomposition(results: Mapping[str, Any]) -> list[str]:
    dec = results.get("decomposition") or {}
    if not dec:
        return []
    lines = [
        "",
        "## What I_H carries",
        "",
        "Reconstruction PSNR over the test images (dB, [0, 1] scale) from I_L alone "
        "(D_L(I_L)) and from both (D_L(I_L) + D_H(I_H)), and the energy of I_H relative "
        "to I_L (sum of squares). The DWT row is the reference: cA alone (details zeroed, "
        "inverse DWT) vs the exact inverse.",
        "",
    ]
    rows = []
    for key, name in (
        ("wae_stage1", "WAE after stage 1"),
        ("wae_final", "WAE after stage 3"),
        ("dwt", "CDF 9/7 DWT (cA / details)"),
    ):
        d = dec.get(key)
        if d:
            rows.append(
                [
                    name,
                    fmt_num(d["psnr_low_only_db"]),
                    fmt_num(d["psnr_full_db"]),
                    fmt_num(d.get("energy_ratio_high_to_low"), "{:.2e}"),
                    d["num_images"],
                ]
            )
    return lines + _table(
        ["decomposition", "PSNR I_L only", "PSNR I_L + I_H", "energy I_H / I_L", "images"],
        rows,
    )


def _pruning(results: Mapping[str, Any]) -> list[str]:
    pr = results.get("pruning") or {}
    lines = ["", "## Pruning peers", ""]
    if pr:
        first = next(iter(pr.values()))
        lines += [
            f"Taylor: Torch-Pruning {first.get('torch_pruning')} `TaylorImportance` on the "
            "trained full-resolution network, gradients of the cross-entropy on "
            f"{first.get('grad_images_per_step')} training images before each step, "
            f"{first.get('step_ratio', 0):.1%} of every layer's channels per step (the "
            "output layer kept), stopped at the step closest to the WAE's MACs, then "
            "fine-tuned with stage 3's settings and epochs (classification loss). "
            "Per seed: "
            + "; ".join(
                f"seed {s}: {p['final_macs'] / 1e6:.2f} MMACs for a target of "
                f"{p['target_macs'] / 1e6:.2f} ({len(p['steps'])} steps"
                + (f"; {p['note']}" if p.get("note") else "")
                + ")"
                for s, p in pr.items()
            )
            + ".",
            "",
        ]
    return lines + [
        "ThiNet is not run: it has no maintained implementation for current PyTorch (the "
        "authors' release is Caffe, and Torch-Pruning does not provide its "
        "reconstruction-based channel selection), and re-implementing it here would not be "
        "the method the paper compares against. Its paper numbers are shown for reference.",
    ]


def _figures(results: Mapping[str, Any]) -> list[str]:
    """Each figure with its caption (what its markers, colours and brackets mean)."""
    figs = results.get("figures") or {}
    captions = results.get("figure_captions") or {}
    if not figs:
        return []
    lines = ["", "## Figures", ""]
    for name, path in figs.items():
        lines += [f"### {name}", "", f"![{name}]({path})", ""]
        if captions.get(name):
            lines += [f"*{captions[name]}*", ""]
    return lines


def _notes(results: Mapping[str, Any]) -> list[str]:
    notes = results.get("notes") or []
    return ["", "## Notes", ""] + [f"- {n}" for n in notes] if notes else []


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write report.md into `out_dir`; returns its path."""
    path = Path(out_dir) / "report.md"
    atomic_write_bytes(path, format_report(results).encode())
    return path
