#!/usr/bin/env bash
# pretrained/fashion-mnist-lower-rail: pretrained/fashion-mnist (pulse extenders after a 0.3 V rail) fine-tuned at a
# 0.25 V rail, so that the membranes' share saturates earlier and more of each decision rides on the hidden spikes:
# 4 epochs at lr 0.02, then 8 at lr 0.03, every hidden neuron held to 0.3-2 spikes per sample (~2.3 min per epoch
# on one thread beside another training). Then the whole test set with the hidden-spike ablation and 200 random
# test samples in ngspice (~4 h on two cores; a rerun resumes it).
# Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_lower_rail.sh [RUN_DIR [START]]
#   (default runs/fashion-lower-rail from pretrained/fashion-mnist; a rerun resumes)
set -euo pipefail
run=${1:-runs/fashion-lower-rail}
start=${2:-pretrained/fashion-mnist/checkpoint.pt}
if [ ! -f "$start" ]; then
    echo "fashion_mnist_lower_rail.sh: START '$start' is not a file; allowed: a checkpoint" >&2
    exit 2
fi
common=(--dataset fashion-mnist --readout first-spike --fire-weight 0.05 --window 8e-6 --v-high 1.35
        --buffer-knee 0 --buffer-gain 8 --readout-scale 120 --eval-samples 1000 --threads 1
        --buffer-rail 0.25 --pulse-gain 70 --hidden-rate 0.3 2)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/rail025" "${common[@]}" --epochs 4 --lr 0.02 --init-from "$start"
train_stage "$run/final" "${common[@]}" --epochs 8 --lr 0.03 --init-from "$run/rail025/checkpoint.pt"
last=$run/final
memspice evaluate "$last/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$last/evaluate.json"
memspice verify "$last/checkpoint.pt" --samples 200 --sample-seed 0 --workers 2 --save "$last/verify.json"
