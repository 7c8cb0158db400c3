#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite; GUI tests run in a
# real window under a virtual X server (xvfb-run) unless a display is already present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${MEDTRANS_VENV:-$root/.venv}"
cd "$root"
export PATH="$venv/bin:$PATH"
if [ -n "${DISPLAY:-}" ]; then
    exec python -m pytest "$@"
fi
exec xvfb-run -a -s "-screen 0 1600x1000x24" python -m pytest "$@"
