#!/usr/bin/env bash
# Everything to run on a machine with a GPU, in one go: the CUDA tests, then the benchmarks.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]      (default OUT_DIR: benchmarks/results/gpu-suite)
#
# Uses $PYTHON (default python3) with the project importable from the repository root. Each
# step has its own time limit (seconds, overridable) so that one slow step cannot starve the
# rest; logs and results land in OUT_DIR. Exits non-zero if any test step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu-suite}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  "$py" -c "import sys, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'python', sys.version.split()[0])"
  git rev-parse HEAD 2>/dev/null || echo "commit: unknown (no git here)"
} >"$out/device.txt" 2>&1
cat "$out/device.txt"

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | tail -n 25
  local rc=${PIPESTATUS[0]}
  printf "\n== %s: exit %s\n" "$name" "$rc"
  return "$rc"
}

# Kernels first: they are what only a GPU can check.
step tests_kernels "${LIMIT_KERNELS:-300}" "$py" -m pytest -q -p no:cacheprovider \
  tests/test_triton_ops.py tests/test_triton_gpu.py || status=1
step tests_modules "${LIMIT_MODULES:-180}" "$py" -m pytest -q -p no:cacheprovider \
  tests/test_modules.py || status=1
step tests_ablate "${LIMIT_ABLATE:-300}" "$py" -m pytest -q -p no:cacheprovider \
  tests/test_data.py tests/test_antialias.py tests/test_train.py tests/test_variant.py \
  -k "cuda or fused_backend" || status=1
# Tune first (into $SHIFTLAB_CACHE_DIR, default the user cache) so the bench times tuned
# kernels; tuned.json is the table to ship in kernels/tuned/.
step autotune "${LIMIT_AUTOTUNE:-240}" "$py" -m kernels.autotune --quick --out "$out/tuned.json"
step bench "${LIMIT_BENCH:-300}" "$py" -m kernels.bench --quick --out "$out/bench"
step end_to_end "${LIMIT_E2E:-300}" "$py" -m benchmarks.end_to_end --out "$out/end_to_end"
exit "$status"
