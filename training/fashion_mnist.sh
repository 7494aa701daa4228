#!/usr/bin/env bash
# The Fashion-MNIST result of docs/results.md: 784-128-10 with the fashion-mnist recipe (12 epochs, about 56 min on two
# cores), trained data-parallel by torchrun in NPROC single-threaded processes (default 2: on two cores that is
# faster than one process with two threads), then 100 test samples verified in ngspice (about 55 min). Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist.sh [RUN_DIR]   (default runs/fashion; a rerun resumes the run)
set -euo pipefail
run=${1:-runs/fashion}
nproc=${NPROC:-2}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node "$nproc" -m memspice train --dataset fashion-mnist \
    --threads 1 --out "$run" "${resume[@]}"
memspice verify "$run/checkpoint.pt" --samples 100 --save "$run/verify.json"
