#!/usr/bin/env bash
# Installs what memspice's set-up needs from Debian when it is missing: ngspice and its shared
# library and Python's venv module (required), and bubblewrap, the sandbox ngspice runs in when it
# is present (optional: without it, and without root to install it, ngspice runs unsandboxed and
# memspice says so). Datasets are not installed here: the Fashion-MNIST recipe names its package.
# Safe to run twice: it does nothing when everything is present.
set -euo pipefail

need=()
command -v ngspice >/dev/null 2>&1 || need+=(ngspice)
ldconfig -p 2>/dev/null | grep -q 'libngspice\.so\.0' || need+=(libngspice0)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
want=()
command -v bwrap >/dev/null 2>&1 || want+=(bubblewrap)
[ ${#need[@]} -eq 0 ] && [ ${#want[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        if [ ${#need[@]} -gt 0 ]; then
            echo "memspice: cannot install ${need[*]}: not root and no sudo." >&2
            echo "          run as root: apt-get install -y ${need[*]} ${want[*]}" >&2
            exit 1
        fi
        echo "memspice: bubblewrap is not installed and cannot be without root; ngspice will run unsandboxed" >&2
        echo "          (as root: apt-get install -y bubblewrap)" >&2
        exit 0
    fi
fi
echo "memspice: installing Debian packages: ${need[*]} ${want[*]}"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" "${want[@]}"; }; then
    echo "memspice: apt-get could not install ${need[*]} ${want[*]}." >&2
    echo "          install them by hand: apt-get install -y ${need[*]} ${want[*]}" >&2
    [ ${#need[@]} -eq 0 ] || exit 1
fi
