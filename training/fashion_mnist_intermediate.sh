#!/usr/bin/env bash
# pretrained/fashion-mnist-intermediate: 784-128-10 on Fashion-MNIST decided by its first output spike, in three
# stages (about 2.5 h on one thread): 3 epochs with white pixels at 1.5 V, continued to 10 (the cosine decay
# restarts over the longer run), then 3 epochs fine-tuned at 1.35 V, where no synapse cell reaches its write
# threshold (at 1.5 V the G- cells reached -2.07 V, so the first two stages run with --allow-cell-writes, as they
# did before memspice checked it). Then the whole test set with the hidden-spike ablation, and 20 random test
# samples in ngspice (about 25 min on two cores). Needs: apt-get install -y dataset-fashion-mnist.
#   bash training/fashion_mnist_intermediate.sh [RUN_DIR]   (default runs/fashion-intermediate; a rerun resumes)
set -euo pipefail
run=${1:-runs/fashion-intermediate}
spiking=(--dataset fashion-mnist --readout first-spike --readout-scale 30 --fire-weight 0.05 --window 8e-6
         --init-pos 0.2 0.8 --init-neg 0.1 0.7 --deep-init-pos 0.3 0.9 --deep-init-neg 0.0 0.4 --threads 1)
export OMP_NUM_THREADS=1

source "$(dirname "$0")/stages.sh"  # train_stage

train_stage "$run/stage1" "${spiking[@]}" --lr 0.1 --epochs 3 --v-high 1.5 --allow-cell-writes
if [ ! -d "$run/stage2" ]; then  # the 3-epoch run continued to 10 epochs
    mkdir -p "$run/stage2" && cp "$run/stage1/checkpoint.pt" "$run/stage1/config.json" "$run/stage2/"
fi
[ -f "$run/stage2/results.json" ] || memspice train --out "$run/stage2" --resume --epochs 10
train_stage "$run/stage3" "${spiking[@]}" --lr 0.02 --epochs 3 --v-high 1.35 --init-from "$run/stage2/checkpoint.pt"
memspice evaluate "$run/stage3/checkpoint.pt" --ablate hidden-spikes --threads 1 --save "$run/stage3/evaluate.json"
memspice verify "$run/stage3/checkpoint.pt" --samples 20 --sample-seed 0 --cluster local:2 \
    --save "$run/stage3/verify.json"
