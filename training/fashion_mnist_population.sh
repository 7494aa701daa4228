#!/usr/bin/env bash
# pretrained/fashion-mnist-population and pretrained/fashion-mnist-population-aware: the intermediate Fashion-MNIST
# network with 8 output neurons per class (--population 8: each output column copied to its class's 8 neurons, a
# class decided by its neurons' pooled first spikes), fine-tuned for 1 epoch on the ideal circuit, and for 3 epochs
# with every batch on a fresh stress-switch-trimmed chip (about 4 + 16 min on one core). Then the whole test set
# with hidden spikes ablated, both networks on the same 20 chips as pretrained/fashion-mnist-hardware-aware-trimmed
# with and without 10-ohm wires (torch, first 1000 test images; about 1 and 4 min each), and 4 test images of one
# chip in ngspice (about 10 min), and the robustness sweep of docs/robustness.png. Needs: apt-get install -y
# dataset-fashion-mnist.
#   bash training/fashion_mnist_population.sh [RUN_DIR]   (default runs/fashion-population)
set -euo pipefail
run=${1:-runs/fashion-population}
start=pretrained/fashion-mnist-intermediate/checkpoint.pt
spiking=(--dataset fashion-mnist --readout first-spike --readout-scale 30 --fire-weight 0.05 --window 8e-6
         --init-pos 0.2 0.8 --init-neg 0.1 0.7 --deep-init-pos 0.3 0.9 --deep-init-neg 0.0 0.4 --v-high 1.35
         --population 8 --lr 0.01 --init-from "$start" --threads 1)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/ideal" "${spiking[@]}" --epochs 1
train_stage "$run/aware" "${spiking[@]}" --epochs 3 --hardware stress-switch-trimmed --allow-cell-writes
for net in ideal aware; do
    memspice evaluate "$run/$net/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$run/$net/evaluate.json"
    for chip in stress-switch-trimmed stress-wired-switch-trimmed; do
        memspice robustness "$run/$net/checkpoint.pt" --hardware "$chip" --chips 20 --samples 1000 --threads 1 \
            --allow-cell-writes --save "$run/$net/robustness-$chip.json"
    done
done
memspice robustness "$run/aware/checkpoint.pt" --hardware stress-switch-trimmed --chips 1 --samples 1000 --spice 4 \
    --workers 1 --threads 1 --allow-cell-writes --save "$run/aware/robustness-stress-switch-trimmed-spice.json"
# docs/robustness.png: every shipped Fashion-MNIST network for real chips against each effect alone (about 50 min)
python benchmarks/robustness_sweep.py "$start" pretrained/fashion-mnist-hardware-aware/checkpoint.pt \
    pretrained/fashion-mnist-hardware-aware-trimmed/checkpoint.pt "$run/ideal/checkpoint.pt" "$run/aware/checkpoint.pt" \
    --labels ideal-trained "hardware-aware (stress-neurons2)" "hardware-aware (switch-trimmed)" \
    "8 per class, ideal-trained" "8 per class, hardware-aware" --samples 256 --chips 3 --threads 1 \
    --out "$run/robustness.png"
