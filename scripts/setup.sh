#!/usr/bin/env bash
# Set up everything napari-medtrans needs on a fresh machine, idempotently:
#   - Debian packages for a virtual X server (xvfb, xauth, xcb libs) when missing and root;
#   - a virtual environment in .venv (override with MEDTRANS_VENV);
#   - torch: the CPU build (torch==2.13.0, a file on this machine's disk) when no NVIDIA GPU
#     is present; otherwise whatever build pip picks for the range in pyproject.toml;
#   - the package itself, editable, with the PyQt5 binding and the test tools.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEDTRANS_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

need_apt=()
command -v xvfb-run >/dev/null 2>&1 || need_apt+=(xvfb)
command -v xauth >/dev/null 2>&1 || need_apt+=(xauth)
for lib in libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libgl1 libegl1 libxkbcommon-x11-0 libdbus-1-3 libfontconfig1; do
    dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${need_apt[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
    else
        echo "setup: missing Debian packages ${need_apt[*]} (run as root or install them); GUI parts need them" >&2
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing torch from the range in pyproject.toml"
    else
        echo "setup: no GPU, installing the CPU build torch==2.13.0"
        "${pip[@]}" "torch==2.13.0"
    fi
fi
echo "setup: installing napari-medtrans (editable) with PyQt5 and test tools"
"${pip[@]}" -e "$root[pyqt5,test,eval,realdata]"
