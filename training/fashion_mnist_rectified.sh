#!/usr/bin/env bash
# pretrained/fashion-mnist-rectified: pretrained/fashion-mnist-intermediate fine-tuned with rectifying buffers
# (knee 0 V: layer 2's rows are a ReLU of the hidden membranes, --buffer-knee 0) in three stages of
# first-spike training at a rising readout scale (12 epochs, 4–8 min each on one thread), then the whole test
# set with the hidden-spike ablation and 10 random test samples in ngspice (about 7 min on two cores).
# Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_rectified.sh [RUN_DIR]   (default runs/fashion-rectified; a rerun resumes)
set -euo pipefail
run=${1:-runs/fashion-rectified}
start=pretrained/fashion-mnist-intermediate/checkpoint.pt
rectified=(--dataset fashion-mnist --readout first-spike --fire-weight 0.05 --window 8e-6 --v-high 1.35
           --buffer-knee 0 --buffer-gain 2 --lr 0.02 --threads 1)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/relu" "${rectified[@]}" --readout-scale 30 --epochs 6 --init-from "$start"
train_stage "$run/scale60" "${rectified[@]}" --readout-scale 60 --epochs 3 --init-from "$run/relu/checkpoint.pt"
train_stage "$run/scale120" "${rectified[@]}" --readout-scale 120 --epochs 3 --init-from "$run/scale60/checkpoint.pt"
last=$run/scale120
memspice evaluate "$last/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$last/evaluate.json"
memspice verify "$last/checkpoint.pt" --samples 10 --sample-seed 0 --workers 2 --save "$last/verify.json"
