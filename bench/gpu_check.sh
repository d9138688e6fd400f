#!/usr/bin/env bash
# GPU check: every CUDA path of the toolkit, checked and timed against the CPU (bench/gpu_check.py does the work).
#
#   bash bench/gpu_check.sh --prepare   # here, once: .gpu_carry/ (wheels the GPU machine lacks, the authors'
#                                       # release) from ../shared and the package index (bench/gpu_carry.py)
#   bash bench/gpu_check.sh --dry-run   # here: the SAME run from a copy of the tree + .gpu_carry in /tmp (no
#                                       # ../shared, no index, modules the device lacks blocked), on the CPU at
#                                       # tiny sizes -> bench/results/gpu_cpu_rehearsal.json + .md
#   bash bench/gpu_check.sh             # on the lent GPU machine: the one device call (bench/README.md)
#                                       # -> $OUT/gpu.json + gpu.md (bench/results/ without $OUT)
#
# The run reads only the repository and .gpu_carry: it verifies the carried files, installs the wheels with
# `pip --no-index` into a private folder, and runs bench/gpu_check.py with the carried release. Every other
# flag goes to bench/gpu_check.py (python bench/gpu_check.py --help). Exit code 1 at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --prepare)
    shift
    exec python bench/gpu_carry.py prepare "$@" ;;
  --dry-run)
    shift
    dest=${GPU_REHEARSAL_DIR:-/tmp/gpu_rehearsal}
    rm -rf "$dest"
    mkdir -p "$dest/repo"
    # what a device call sends: tracked and untracked-not-ignored files, plus the carried folder
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done |
      tar --null -T - -cf - | tar -xf - -C "$dest/repo"
    cp -r .gpu_carry "$dest/repo/"
    python bench/gpu_carry.py block "$dest/blocked"
    echo "rehearsal in $dest/repo (no ../shared beside it)"
    (cd "$dest/repo" && GPU_CHECK_REHEARSAL="$dest/blocked" bash bench/gpu_check.sh "$@")
    cp "$dest/repo/bench/results/gpu_cpu_rehearsal.json" "$dest/repo/bench/results/gpu_cpu_rehearsal.md" bench/results/
    echo "copied bench/results/gpu_cpu_rehearsal.json and .md"
    exit 0 ;;
esac

# ---- the run: the same lines on the GPU machine and in the rehearsal
python bench/gpu_carry.py verify
site=${TMPDIR:-/tmp}/gpu_check_site
rm -rf "$site"
python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
  --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --target "$site" .gpu_carry/whl/*.whl
echo "installed $(ls .gpu_carry/whl | wc -l) carried wheels into $site"
release=.gpu_carry/pretrained/Chunk-Level-Emotion-Retrieval
if [[ -n "${GPU_CHECK_REHEARSAL:-}" ]]; then
  # CPU rehearsal: this Python cannot import the CPython 3.12 wheels just unpacked; the same versions are
  # installed here. Modules installed here that the device lacks are blocked (stubs first on the path).
  # Every script runs as its own process, as on the device.
  export PYTHONPATH="$GPU_CHECK_REHEARSAL"
  exec python bench/gpu_check.py --dry-run --rehearsal --subprocess --pretrained "$release" "$@"
fi
export PYTHONPATH="$site"
exec python bench/gpu_check.py --pretrained "$release" --out "${OUT:-bench/results}" "$@"
