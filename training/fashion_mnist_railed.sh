#!/usr/bin/env bash
# pretrained/fashion-mnist-railed-longer: 784-128-10 decided by its first output spike, trained from scratch with
# high-gain rectifying buffers that saturate at a rail (--buffer-gain 8 --buffer-knee 0 --buffer-rail 1.35:
# a ReLU of the hidden membranes, times 8, within ±1.35 V), then stages at a rising readout scale: after
# the third, pretrained/fashion-mnist-railed (16 epochs); two longer ones at a higher learning rate make
# pretrained/fashion-mnist-railed-longer (16 more epochs; 2–4 min each on one thread beside another run). Then the
# whole test set with the hidden-spike ablation, and 200 random test samples in ngspice (~2.5 h on two cores).
# Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_railed.sh [RUN_DIR [train-only]]   (default runs/fashion-railed; a rerun resumes;
#   train-only stops after the training stages, as training/fashion_mnist_railed_pulses.sh scratch does)
set -euo pipefail
run=${1:-runs/fashion-railed}
case ${2:-} in
    "" | train-only) ;;
    *) echo "fashion_mnist_railed.sh: second argument is '$2'; allowed: train-only" >&2; exit 2 ;;
esac
railed=(--dataset fashion-mnist --readout first-spike --fire-weight 0.05 --window 8e-6 --v-high 1.35
        --buffer-knee 0 --buffer-gain 8 --buffer-rail 1.35 --threads 1)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/rail" "${railed[@]}" --readout-scale 30 --lr 0.1 --epochs 10 --init-pos 0.2 0.8 --init-neg 0.1 0.7 \
    --deep-init-pos 0.3 0.9 --deep-init-neg 0.0 0.4
train_stage "$run/scale60" "${railed[@]}" --readout-scale 60 --lr 0.02 --epochs 3 --init-from "$run/rail/checkpoint.pt"
train_stage "$run/scale120" "${railed[@]}" --readout-scale 120 --lr 0.02 --epochs 3 \
    --init-from "$run/scale60/checkpoint.pt"
train_stage "$run/longer" "${railed[@]}" --readout-scale 120 --lr 0.05 --epochs 8 \
    --init-from "$run/scale120/checkpoint.pt"
train_stage "$run/final" "${railed[@]}" --readout-scale 120 --lr 0.03 --epochs 8 --init-from "$run/longer/checkpoint.pt"
if [ "${2:-}" = train-only ]; then exit 0; fi
for stage in scale120 final; do
    memspice evaluate "$run/$stage/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$run/$stage/evaluate.json"
done
memspice verify "$run/scale120/checkpoint.pt" --samples 10 --sample-seed 0 --workers 2 --save "$run/scale120/verify.json"
memspice verify "$run/final/checkpoint.pt" --samples 200 --sample-seed 0 --workers 2 --save "$run/final/verify.json"
