#!/usr/bin/env bash
# The GPU check of the plain C++ core, for a machine with CUDA, CMake and a
# Python torch (no Node needed). One run, about 10 minutes on an H200:
#
#   bench/gpu-bench.sh [OUT_DIR]
#
# 1. builds native/core and tcka-core-check against the Python torch's libtorch
#    (torch.utils.cmake_prefix_path);
# 2. runs the selftest on CUDA;
# 3. traces ResNet50 and WideResNet50-2 (random init, fixed seeds; 224 x 224);
# 4. compares every named submodule of both, batch 256, on CUDA, with 1 and
#    with WORKERS batches in flight (each on a CUDA stream of its own):
#    compare / floor (the bare forward passes), the breakdown per batch
#    (forward, taps, Grams, pair products, waiting), and the CUDA matrix
#    against the CPU one over the first batch (must agree to 1e-4).
# Environment: PYTHON (default python3), DEVICE (default cuda), BATCH (256),
# SIZE (224), BATCHES (4), REPEAT (3), THREADS (CPU threads, default: all cores),
# WORKERS (batches in flight, default 2).
# DEVICE=cpu BATCH=8 SIZE=64 BATCHES=2 REPEAT=1 makes a quick dry run on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu-bench-out}}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
SIZE=${SIZE:-224}
BATCHES=${BATCHES:-4}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-$(nproc)}
WORKERS=${WORKERS:-2}
mkdir -p "$OUT"
log() { echo "gpu-bench: $*" | tee -a "$OUT/log.txt"; }

log "$(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/log.txt" || true
PREFIX=$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' | tee -a "$OUT/log.txt"

log "building the core against $PREFIX"
cmake -S . -B build-gpu -DTCKA_TOOLS=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" >"$OUT/cmake.txt" 2>&1
cmake --build build-gpu -j"$(nproc)" >>"$OUT/cmake.txt" 2>&1
TOOL=build-gpu/tcka-core-check

log "selftest on $DEVICE"
"$TOOL" selftest --device "$DEVICE" | tee -a "$OUT/log.txt"

log "tracing ResNet50 and WideResNet50-2"
"$PYTHON" bench/make-models.py --gpu-only --out build-gpu/models 2>&1 | tee -a "$OUT/log.txt"
if [ "$SIZE" != 224 ]; then log "(inputs of $SIZE x $SIZE instead of 224 x 224)"; fi

log "compare: every named submodule, batch $BATCH, $BATCHES batches, $REPEAT timed runs after a warm-up"
for W in 1 $WORKERS; do
  log "  $W batch(es) in flight (each on a CUDA stream of its own), the breakdown per batch"
  "$TOOL" compare build-gpu/models/resnet50.pt build-gpu/models/wide_resnet50_2.pt \
    --shape "3,$SIZE,$SIZE" --batch "$BATCH" --batches "$BATCHES" --repeat "$REPEAT" --threads "$THREADS" \
    --workers "$W" --device "$DEVICE" --check-device cpu --check-batches 1 --json "$OUT/result-w$W.json" 2>&1 |
    tee -a "$OUT/log.txt"
done
log "done: $OUT/result-w1.json, $OUT/result-w$WORKERS.json"
