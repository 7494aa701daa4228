#!/usr/bin/env bash
# The README's digits result: train with the recipe's defaults, then verify 50 test samples in ngspice.
#   bash training/digits.sh [RUN_DIR]        (default runs/digits; a rerun resumes or reuses the run)
set -euo pipefail
run=${1:-runs/digits}
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
memspice train --dataset digits --out "$run" "${resume[@]}"
memspice verify "$run/checkpoint.pt" --samples 50 --save "$run/verify.json"
