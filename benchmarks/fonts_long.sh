#!/usr/bin/env bash
# The fonts comparison of docs/reproduce-fonts-long/ (issue 19): WAE + KD against I_R + KD on
# 64x64 renders of real typefaces, with 10,000 test images, and the distilled WAE's variants
# the paper leaves open. Sized for a 2-core machine: ~70 min of training.
#
#   1. full, I_R, I_R + KD, WAE + KD with seeds 0 and 1 (the seeds side by side, --jobs 2;
#      --train-only would train them in one process)
#   2. the variants with seed 0, each in its own process (--train-only), beside phase 1 once
#      its teacher (full, seed 0) is trained: its run directory is copied, so it is reused
#   3. the reports, one after the other on a quiet machine (they time the models):
#      OUT (2 seeds, the paper's rows and the distilled pair) and OUT-variants (seed 0, all rows)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/fonts-long}
WAE=${WAE:-wae}  # e.g. WAE="python -m wae" to run a checkout without installing it
COMMON=(--dataset fonts-64,test=10000 --subset 8000
        --set stages.1.epochs=6 stages.2.epochs=9 stages.3.epochs=3)
MAIN=(full half half_kd wae_kd)
VARIANTS=(${VARIANTS:-wae_kd_unfrozen wae_kd_wide})  # wae_kd_feat too where time allows

pids=()
if [ -z "${SKIP_PHASE1:-}" ]; then
  $WAE reproduce "${COMMON[@]}" --seeds 0 1 --jobs 2 --methods "${MAIN[@]}" -o "$OUT" \
    --no-latency > "$OUT.log" 2>&1 &
  pids+=($!)
fi
until [ -f "$OUT/runs/full/seed0/final/model.json" ]; do sleep 60; done
for v in "${VARIANTS[@]}"; do
  mkdir -p "$OUT-$v/runs/full"
  cp -r "$OUT/runs/full/seed0" "$OUT-$v/runs/full/"
  $WAE reproduce "${COMMON[@]}" --seeds 0 --methods full "$v" -o "$OUT-$v" --train-only \
    > "$OUT-$v.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
# SKIP_PHASE1 with WAIT_PID: phase 1 was started by hand as that process; wait for it too.
while [ -n "${WAIT_PID:-}" ] && kill -0 "$WAIT_PID" 2>/dev/null; do sleep 30; done

mkdir -p "$OUT-variants/runs"
for m in "${MAIN[@]}"; do
  mkdir -p "$OUT-variants/runs/$m" && cp -r "$OUT/runs/$m/seed0" "$OUT-variants/runs/$m/"
done
for v in "${VARIANTS[@]}"; do cp -r "$OUT-$v/runs/$v" "$OUT-variants/runs/"; done

$WAE reproduce "${COMMON[@]}" --seeds 0 1 --methods "${MAIN[@]}" -o "$OUT"
$WAE reproduce "${COMMON[@]}" --seeds 0 --methods "${MAIN[@]}" "${VARIANTS[@]}" -o "$OUT-variants"
