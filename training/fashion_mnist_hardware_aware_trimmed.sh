#!/usr/bin/env bash
# pretrained/fashion-mnist-hardware-aware-trimmed: the intermediate Fashion-MNIST network fine-tuned with every batch
# on a fresh chip of the stress-switch-trimmed preset (10 % spread of synapses and neurons, 16 levels, 1 % stuck
# cells compensated by their partners, neurons trimmed at their switches): 3 epochs at lr 0.02, then 6 more at
# lr 0.01 on other chips (about 12 + 23 min on one core). Then the whole test set, both it and the network it
# started from on the same 20 chips with and without 10-ohm wires (torch, first 1000 test images), the wired chips
# again with each chip's output neurons calibrated in the loop (about 45 min per network), and 4 test images of
# one chip in ngspice (about 9 min). Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_hardware_aware_trimmed.sh [RUN_DIR]   (default runs/fashion-hardware-aware-trimmed)
set -euo pipefail
run=${1:-runs/fashion-hardware-aware-trimmed}
start=pretrained/fashion-mnist-intermediate/checkpoint.pt
spiking=(--dataset fashion-mnist --readout first-spike --readout-scale 30 --fire-weight 0.05 --window 8e-6
         --init-pos 0.2 0.8 --init-neg 0.1 0.7 --deep-init-pos 0.3 0.9 --deep-init-neg 0.0 0.4 --v-high 1.35
         --threads 1 --hardware stress-switch-trimmed --allow-cell-writes)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/stage1" "${spiking[@]}" --lr 0.02 --epochs 3 --init-from "$start"
train_stage "$run/stage2" "${spiking[@]}" --lr 0.01 --epochs 6 --seed 1 --init-from "$run/stage1/checkpoint.pt"
net=$run/stage2/checkpoint.pt
memspice evaluate "$net" --ablate hidden-spikes --threads 1 --save "$run/stage2/evaluate.json"
for chip in stress-switch-trimmed stress-wired-switch-trimmed; do
    memspice robustness "$start" --hardware "$chip" --chips 20 --samples 1000 --threads 1 --allow-cell-writes \
        --save "$run/stage2/robustness-$chip-ideal-trained.json"
    memspice robustness "$net" --hardware "$chip" --chips 20 --samples 1000 --threads 1 --allow-cell-writes \
        --save "$run/stage2/robustness-$chip.json"
done
# the same wired chips, each with its output neurons' threshold codes calibrated in the loop on 2000 training images
for net_suffix in "$net:" "$start:-ideal-trained"; do
    memspice robustness "${net_suffix%%:*}" --hardware stress-wired-switch-trimmed --chips 20 --samples 1000 \
        --calibrate 2000 --calibrate-layers 2 --threads 1 --allow-cell-writes \
        --save "$run/stage2/robustness-stress-wired-switch-trimmed-calibrated${net_suffix#*:}.json"
done
memspice robustness "$net" --hardware stress-switch-trimmed --chips 1 --samples 1000 --spice 4 --workers 1 \
    --threads 1 --allow-cell-writes --save "$run/stage2/robustness-stress-switch-trimmed-spice.json"
