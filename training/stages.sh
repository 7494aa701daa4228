# Sourced by the stage-wise recipes in training/.
# train_stage FOLDER OPTIONS...: train into FOLDER, or continue it (--resume), or skip it when finished
train_stage() {
    local out=$1; shift
    if [ -f "$out/results.json" ]; then return; fi
    if [ -f "$out/checkpoint.pt" ]; then memspice train --out "$out" --resume; else memspice train "$@" --out "$out"; fi
}
