#!/usr/bin/env bash
# pretrained/fashion-mnist-hardware-aware: the intermediate Fashion-MNIST network fine-tuned for 3 epochs with
# every batch on a fresh chip of the stress-neurons2 preset (about 23 min on one core), evaluated on the whole
# test set, then both it and the network it started from on the same 20 chips of each preset, with untrimmed and
# trimmed neurons, and the trimmed chips calibrated in the loop (torch, first 1000 test images), and 4 test images
# of one chip of each kind in ngspice.
#   bash training/fashion_mnist_hardware_aware.sh [RUN_DIR]   (default runs/fashion-hardware-aware)
set -euo pipefail
run=${1:-runs/fashion-hardware-aware}
start=pretrained/fashion-mnist-intermediate/checkpoint.pt
export OMP_NUM_THREADS=1
if [ ! -f "$run/results.json" ]; then
    if [ -f "$run/checkpoint.pt" ]; then memspice train --out "$run" --resume; else
        memspice train --dataset fashion-mnist --readout first-spike --readout-scale 30 --fire-weight 0.05 \
            --window 8e-6 --init-pos 0.2 0.8 --init-neg 0.1 0.7 --deep-init-pos 0.3 0.9 --deep-init-neg 0.0 0.4 \
            --v-high 1.35 --lr 0.02 --epochs 3 --threads 1 --init-from "$start" \
            --hardware stress-neurons2 --allow-cell-writes --out "$run"
    fi
fi
memspice evaluate "$run/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$run/evaluate.json"
for net in "$start" "$run/checkpoint.pt"; do
    suffix=$([ "$net" = "$start" ] && echo -ideal-trained || true)  # the shipped reports' names
    for chip in stress-neurons2 stress wan2022 stress-neurons2-trimmed stress-trimmed; do
        memspice robustness "$net" --hardware "$chip" --chips 20 --samples 1000 --threads 1 --allow-cell-writes \
            --save "$run/robustness-$chip$suffix.json"
    done
    # the same trimmed chips, each calibrated in the loop on 4000 training images first
    memspice robustness "$net" --hardware stress-trimmed --chips 20 --samples 1000 --calibrate 4000 --threads 1 \
        --allow-cell-writes --save "$run/robustness-stress-trimmed-calibrated$suffix.json"
done
# chips whose neurons vary by 2 %, trimmed and calibrated: the network trained on the ideal circuit
memspice robustness "$start" --hardware stress-neurons2-trimmed --chips 20 --samples 1000 --calibrate 4000 --threads 1 \
    --allow-cell-writes --save "$run/robustness-stress-neurons2-trimmed-calibrated-ideal-trained.json"
memspice robustness "$run/checkpoint.pt" --hardware stress-neurons2 --chips 1 --samples 1000 --spice 4 --workers 2 \
    --threads 1 --allow-cell-writes --save "$run/robustness-stress-neurons2-spice.json"
memspice robustness "$start" --hardware stress-trimmed --chips 1 --samples 1000 --spice 4 --workers 2 \
    --threads 1 --allow-cell-writes --save "$run/robustness-stress-trimmed-ideal-trained-spice.json"
memspice robustness "$start" --hardware stress-trimmed --chips 1 --samples 1000 --calibrate 4000 --spice 4 \
    --workers 2 --threads 1 --allow-cell-writes --save "$run/robustness-stress-trimmed-calibrated-ideal-trained-spice.json"
python benchmarks/robustness_sweep.py "$start" "$run/checkpoint.pt" --labels ideal-trained hardware-aware \
    --samples 256 --chips 3 --out "$run/robustness.png"
