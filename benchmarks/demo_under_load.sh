#!/usr/bin/env bash
# `make demo` in a fresh clone, quiet and then with one core kept busy by another process, each
# from a cold start (no run folder, no compiled-kernel cache), after set-up. Run from the
# repository: bash benchmarks/demo_under_load.sh [CLONE_DIR]
set -euo pipefail
clone=${1:-$(mktemp -d)/memspice}
git clone -q "$(git rev-parse --show-toplevel)" "$clone"
cd "$clone"
make setup >/dev/null
cache="${TMPDIR:-/tmp}/torchinductor_$(id -un)"
run() {  # $1: label
    rm -rf runs/demo "$cache"
    local start=$SECONDS
    make demo >"demo-$1.log" 2>&1
    echo "$1: make demo took $((SECONDS - start)) s; $(grep -o 'epoch [12]: .*' "demo-$1.log" | sed 's/.*| //' | tr '\n' ' ')"
}
run quiet
python3 -c 'while True: pass' & hog=$!
trap 'kill $hog' EXIT
run busy
