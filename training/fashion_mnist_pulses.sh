#!/usr/bin/env bash
# pretrained/fashion-mnist-pulses: pretrained/fashion-mnist-rectified fine-tuned with a pulse extender per hidden
# neuron (each spike's charge on its rows, --pulse-gain 60) and the membranes' share halved (--buffer-gain 1),
# in two stages of first-spike training (8 epochs, 2.5-3.5 min each on one thread), then the whole test set with
# the hidden-spike ablation and 20 random test samples in ngspice (about 30 min on two cores).
# Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_pulses.sh [RUN_DIR]   (default runs/fashion-pulses; a rerun resumes)
set -euo pipefail
run=${1:-runs/fashion-pulses}
start=pretrained/fashion-mnist-rectified/checkpoint.pt
pulses=(--dataset fashion-mnist --readout first-spike --window 8e-6 --v-high 1.35 --buffer-knee 0 --buffer-gain 1
        --pulse-gain 60 --readout-scale 120 --epochs 4 --eval-samples 1000 --threads 1)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/pulses" "${pulses[@]}" --lr 0.02 --fire-weight 0.05 --init-from "$start"
train_stage "$run/fire" "${pulses[@]}" --lr 0.01 --fire-weight 0.15 --init-from "$run/pulses/checkpoint.pt"
last=$run/fire
memspice evaluate "$last/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$last/evaluate.json"
memspice verify "$last/checkpoint.pt" --samples 20 --sample-seed 0 --workers 2 --save "$last/verify.json"
