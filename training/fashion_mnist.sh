#!/usr/bin/env bash
# The README's Fashion-MNIST result: 784-128-10 with the fashion-mnist recipe (5 epochs), then 100 test samples
# verified in ngspice. Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist.sh [RUN_DIR]   (default runs/fashion-mnist; a rerun resumes the run)
set -euo pipefail
run=${1:-runs/fashion-mnist}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
memspice train --dataset fashion-mnist --out "$run" "${resume[@]}"
memspice verify "$run/checkpoint.pt" --samples 100 --save "$run/verify.json"
