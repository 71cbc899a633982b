#!/usr/bin/env bash
# Create the benchmark venv with the peer libraries (darts, neuralforecast,
# pytorch-forecasting) next to the toolkit, holding torch at the toolkit's pin.
#
# Usage: bash bench/peers/setup.sh [VENV_DIR]     (default: /work/bench-venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-/work/bench-venv}"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"

python3.11 -m venv "$venv"
# torch first: the CPU build of this exact pin is what a plain install must resolve to.
"$venv/bin/pip" install "torch==2.13.0"
# Then the peers with the pin held (a peer asking for another torch fails loudly here).
"$venv/bin/pip" install -c "$constraints" -r "$here/requirements.txt"
# The toolkit itself, so one interpreter runs ours and theirs in the same process.
"$venv/bin/pip" install -c "$constraints" -e "$repo"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md

for name in ("torch", "darts", "neuralforecast", "pytorch-forecasting", "lightning",
             "pytorch-lightning", "numpy", "pandas"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PY
