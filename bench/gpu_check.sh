#!/usr/bin/env bash
# GPU check: every CUDA path of the toolkit, checked and timed against the CPU (bench/gpu_check.py does the work).
#
#   bash bench/gpu_check.sh                 # on a GPU machine; writes bench/results/gpu.json + gpu.md
#   bash bench/gpu_check.sh --install       # first: pip install the CUDA build of the pinned torch + requirements
#   bash bench/gpu_check.sh --dry-run       # the same steps on CPU, tiny sizes (< 5 min): proves the script runs
#   bash bench/gpu_check.sh --mscr-study    # then the MSCR missing-data study at the published size
#
# --install uses TORCH_INDEX_URL (default https://download.pytorch.org/whl/cu126; e.g. .../whl/cu128 for a newer
# driver) for torch==<the version pinned in requirements.txt>, then `pip install -r requirements.txt`.
# Every other flag goes to bench/gpu_check.py (python bench/gpu_check.py --help). Exit code 1 at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  if [[ "$a" == "--install" ]]; then
    torch_pin=$(grep -E '^torch==' requirements.txt | head -n 1)
    python -m pip install "${torch_pin}" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu126}"
    python -m pip install -r requirements.txt
  else
    args+=("$a")
  fi
done
exec python bench/gpu_check.py "${args[@]}"
