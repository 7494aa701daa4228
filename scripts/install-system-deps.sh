#!/usr/bin/env bash
# Installs what memspice needs from Debian when it is missing: ngspice and its shared library,
# Python's venv module and the Fashion-MNIST dataset. Safe to run twice: it does nothing when everything is present.
set -euo pipefail

need=()
command -v ngspice >/dev/null 2>&1 || need+=(ngspice)
ldconfig -p 2>/dev/null | grep -q 'libngspice\.so\.0' || need+=(libngspice0)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ ${#need[@]} -eq 0 ] && exit 0

echo "memspice: installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "memspice: cannot install ${need[*]}: not root and no sudo." >&2
        echo "          run as root: apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"; }; then
    echo "memspice: apt-get could not install ${need[*]}." >&2
    echo "          install them by hand: apt-get install -y ${need[*]}" >&2
    exit 1
fi
