#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the main job: napari with a phantom T1
# volume, a demo translator and on-the-fly translation with its uncertainty overlay.
# With no display, the headless variant writes NIfTI outputs and a PNG montage.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${MEDTRANS_VENV:-$root/.venv}"
exec "$venv/bin/medtrans" demo "$@"
