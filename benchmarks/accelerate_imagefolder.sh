#!/usr/bin/env bash
# A residual backbone through the CLI on an ImageFolder on disk, end to end (issue 11's check):
# write 6,000 + 2,000 Fashion-MNIST images as PNG files, train timm's ResNet-18 on them at
# 56x56 with `wae train` (full resolution), then `wae accelerate` its checkpoint.
#   bash benchmarks/accelerate_imagefolder.sh [OUT]      (default OUT: runs/imagefolder)
set -euo pipefail
OUT=${1:-runs/imagefolder}
WAE=${WAE:-.venv/bin/wae}
PY=${PY:-.venv/bin/python}
[ -d "$OUT/folder" ] || "$PY" scripts/fmnist_imagefolder.py "$OUT/folder" --train 6000 --test 2000
start=$(date +%s)
"$WAE" train -c fashion_mnist_baseline -o "$OUT/full" --resume --set model.name=timm:resnet18 \
    model.arch=full 'model.kwargs={}' data.dataset="$OUT/folder" data.input_size=56 \
    data.in_chans=1 data.subset=null stages.1.epochs=4 eval.noise_vars=[] runtime.progress=off
mid=$(date +%s)
"$WAE" accelerate --checkpoint "$OUT/full/final" -o "$OUT/fast" --set stages.wae.epochs=2 \
    stages.classifier.epochs=4 stages.joint.epochs=1 runtime.progress=off
end=$(date +%s)
echo "ResNet-18 trained in $((mid - start)) s; accelerated in $((end - mid)) s."
