"""The variants table of docs/reproduce.md (fonts, longer run): each variant of the distilled
WAE against the distilled WAE and I_R + distillation of the same seed, under the 2-SE rule.

The variants train in their own output directories (benchmarks/fonts_long.sh), whose configs
name their own copy of the teacher, so `wae reproduce` will not reuse them in one report; this
reads each run's results.json (its test top-1 on the same 10,000 renders) instead.

    python benchmarks/fonts_variants_table.py runs/fonts-long [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wae.checkpoint import load_model, read_checkpoint_meta
from wae.cost import count_ops
from wae.stats import se_diff, two_se, verdict

ROWS = {
    "wae_kd": "WAE + distillation (as in the table above)",
    "wae_kd_wide": "I_H branch at 1/2 width",
    "wae_kd_unfrozen": "encoder unfrozen in stage 2 (grad clip 2.0)",
    "wae_kd_feat": "teacher's features distilled too",
    "half_kd": "I_R + distillation",
}


def _test(out: Path, key: str, seed: int) -> dict | None:
    """The run's test result and MMACs, in OUT or in its own OUT-<key> directory (None: not
    run or not finished)."""
    for root in (out, out.with_name(f"{out.name}-{key}")):
        run = root / "runs" / key / f"seed{seed}"
        if (run / "results.json").is_file():
            r = json.loads((run / "results.json").read_text())
            if not r.get("complete"):
                return None
            meta = read_checkpoint_meta(run / "final")
            example = torch.zeros(1, meta.in_chans, *meta.input_hw)
            macs = count_ops(load_model(run / "final")[0], example).macs
            return {**r["test"], "mmacs": macs / 1e6}
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    res = {k: _test(a.out, k, a.seed) for k in ROWS}
    base, half = res["wae_kd"], res["half_kd"]
    print(f"| row (seed {a.seed}) | top-1 % | MMACs | vs WAE + KD | vs I_R + KD |")
    print("|---|---|---|---|---|")
    for key, label in ROWS.items():
        r = res[key]
        if r is None:
            print(f"| {label} | not run | | | |")
            continue
        cells = []
        for ref in (base, half):
            if ref is None or ref is r:
                cells.append("")
                continue
            m = r["top1"] - ref["top1"]
            se = se_diff(r["top1"], ref["top1"], r["num_images"])
            cells.append(f"{m:+.2f} (2 SE {two_se(se):.2f}): {verdict(m, se)}")
        print(f"| {label} | {r['top1']:.2f} | {r['mmacs']:.1f} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
