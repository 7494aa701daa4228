#!/usr/bin/env bash
# The digits result (README, docs/results.md) and pretrained/digits: 64-128-10 decided by its first output spike (first-spike
# readout, 20 epochs, about 12 min on one core), evaluated on the whole test set with the hidden-spike
# ablation, then 50 random test samples verified in ngspice.
#   bash training/digits.sh [RUN_DIR]        (default runs/digits; a rerun resumes or reuses the run)
set -euo pipefail
run=${1:-runs/digits}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
memspice train --dataset digits --readout first-spike --readout-scale 60 --epochs 20 --threads 1 --out "$run" \
    "${resume[@]}"
memspice evaluate "$run/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$run/evaluate.json"
memspice verify "$run/checkpoint.pt" --samples 50 --sample-seed 0 --save "$run/verify.json"
