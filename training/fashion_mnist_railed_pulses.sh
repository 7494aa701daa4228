#!/usr/bin/env bash
# pretrained/fashion-mnist, the project's Fashion-MNIST network: pretrained/fashion-mnist-railed-longer
# (gain-8 buffers, decided by the first output spike) fine-tuned with a pulse extender per hidden neuron whose
# charge adds to the rows after a lowered rail, so that the membranes' share saturates early and each hidden
# spike carries what lies above it: 4 epochs at a 0.5 V rail (--pulse-gain 60), then 3 + 8 at 0.3 V
# (--pulse-gain 70) with every hidden neuron held to 0.3-2 spikes per sample (3-4 min per epoch on one thread).
# Then the whole test set with the hidden-spike ablation and 200 random test samples in ngspice (hours on two
# cores; a rerun resumes it). START is a checkpoint, or `scratch`: first the training stages of
# training/fashion_mnist_railed.sh into RUN_DIR/railed (~1.6 h more on one thread), then these from its last.
# Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_railed_pulses.sh [RUN_DIR [START]]
#   (default runs/fashion-railed-pulses from pretrained/fashion-mnist-railed-longer; a rerun resumes)
set -euo pipefail
run=${1:-runs/fashion-railed-pulses}
start=${2:-pretrained/fashion-mnist-railed-longer/checkpoint.pt}
if [ "$start" = scratch ]; then
    bash "$(dirname "$0")/fashion_mnist_railed.sh" "$run/railed" train-only
    start=$run/railed/final/checkpoint.pt
elif [ ! -f "$start" ]; then
    echo "fashion_mnist_railed_pulses.sh: START '$start' is not a file; allowed: a checkpoint, or scratch" >&2
    exit 2
fi
common=(--dataset fashion-mnist --readout first-spike --fire-weight 0.05 --window 8e-6 --v-high 1.35
        --buffer-knee 0 --buffer-gain 8 --readout-scale 120 --lr 0.03 --eval-samples 1000 --threads 1)
low_rail=(--buffer-rail 0.3 --pulse-gain 70 --hidden-rate 0.3 2)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/rail05" "${common[@]}" --buffer-rail 0.5 --pulse-gain 60 --epochs 4 --init-from "$start"
train_stage "$run/rail03" "${common[@]}" "${low_rail[@]}" --epochs 3 --init-from "$run/rail05/checkpoint.pt"
train_stage "$run/final" "${common[@]}" "${low_rail[@]}" --epochs 8 --init-from "$run/rail03/checkpoint.pt"
last=$run/final
memspice evaluate "$last/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$last/evaluate.json"
memspice verify "$last/checkpoint.pt" --samples 200 --sample-seed 0 --workers 2 --save "$last/verify.json"
