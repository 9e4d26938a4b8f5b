#!/usr/bin/env bash
# Everything to run on a machine with a GPU, in one go and in a bounded time: the CUDA tests,
# the autotuner, the kernels' bandwidth, their comparison with the other formulations, the
# end-to-end table and the host time per call.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR [ARCHIVE]]   (default OUT_DIR: benchmarks/results/gpu-suite)
#
# STEPS (default: all of ORDER below) runs some of the steps, in ORDER's order, the budget
# shared among them alone: e.g. STEPS="bench compare end_to_end" where the tests ran before.
# BUDGET_S (default 480) bounds the whole run. Each step may use what is left of it but the
# shares of the steps after it (SHARES below), and at least its own share, so time a step does
# not use passes on; the sweeps get that limit less GRACE_S as their own --budget-s and end by
# themselves with whole results (written as they go), `timeout` being only a backstop (its
# KILL_S after the limit is part of the limit). A step cut short by its limit is reported as
# timed out, apart from failures (a test step cut short: as failed if pytest had counted or
# shown a failure by then, else as incomplete). Compiling is most of the cost
# on a fresh machine, so the tests run in JOBS pytest-xdist workers when it is installed and
# the sweeps compile ahead in a pool of processes; TRITON_CACHE_ARCHIVE, if set, is an archive
# of kernels compiled ahead on a machine without a GPU (python -m benchmarks.precompile), which
# the run unpacks first.
#
# Uses $PYTHON (default python3) with the project importable from the repository root and its
# dependencies installed (pydantic and optuna too, for the ablate tests and the end-to-end
# table). Logs and results land in OUT_DIR, the tuned table as OUT_DIR/tuned.json (to ship in
# kernels/tuned/); ARCHIVE, if given, is a .tar.gz of OUT_DIR written last (one file to copy
# off the machine). The commit measured is git's, else $SHIFTLAB_COMMIT. Exits non-zero if a
# test step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu-suite}
archive=${2:-}
py=${PYTHON:-python3}
budget=${BUDGET_S:-480}
grace=${GRACE_S:-20}
kill_s=${KILL_S:-10}
jobs=${JOBS:-12}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# A fresh tuning cache: the benchmark then times this run's winners, not an older run's.
export SHIFTLAB_CACHE_DIR=${SHIFTLAB_CACHE_DIR:-$out/cache}
deadline=$(($(date +%s) + budget))
status=0

# Per cent of the budget each step is planned for, in the order they run (of the steps run).
# host_overhead has no budget of its own and compiles a dozen kernel variants on a fresh cache.
declare -A SHARES=([tests_kernels]=30 [tests_ablate]=6 [autotune]=10 [bench]=18 [compare]=14
                   [end_to_end]=14 [host_overhead]=8)
ORDER=(tests_kernels tests_ablate autotune bench compare end_to_end host_overhead)
read -ra chosen <<<"${STEPS:-${ORDER[*]}}"
((${#chosen[@]})) || { echo "STEPS: no step named; the steps: ${ORDER[*]}" >&2; exit 2; }
for name in "${chosen[@]}"; do
  [[ -v SHARES[$name] ]] || { echo "STEPS: unknown step '$name'; the steps: ${ORDER[*]}" >&2; exit 2; }
done
runs() { [[ " ${chosen[*]} " == *" $1 "* ]]; }  # runs STEP: whether STEPS holds STEP
planned=0
for name in "${chosen[@]}"; do planned=$((planned + SHARES[$name])); done

{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  "$py" -c "import sys, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'python', sys.version.split()[0])"
  for module in xdist seaborn tqdm kornia optuna pydantic; do  # what the steps below import
    "$py" -c "import $module" 2>/dev/null || echo "missing: $module (its tests or figures are skipped)"
  done
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo "${SHIFTLAB_COMMIT:-unknown}")"
  echo "budget ${budget}s, steps ${chosen[*]}, started $(date -u +%FT%TZ)"
} >"$out/device.txt" 2>&1
# Kernels compiled ahead on a machine without a GPU (python -m benchmarks.precompile pack),
# unpacked into the Triton cache this run compiles into (TRITON_CACHE_DIR, else a fresh
# folder); device.txt says how many kernels the run still compiled itself.
if [[ -n ${TRITON_CACHE_ARCHIVE:-} ]]; then
  export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$(mktemp -d)}
  "$py" -m benchmarks.precompile unpack "$TRITON_CACHE_ARCHIVE" "$TRITON_CACHE_DIR" \
    >>"$out/device.txt" 2>&1 || echo "could not unpack $TRITON_CACHE_ARCHIVE" >>"$out/device.txt"
fi
kernels_cached() { find "${TRITON_CACHE_DIR:-$HOME/.triton/cache}" -name '*.cubin' 2>/dev/null | wc -l; }
cached_before=$(kernels_cached)
cat "$out/device.txt"

limit_for() {  # limit_for STEP: seconds STEP may take, keeping the later steps' shares
  local later=0 seen=0 name
  for name in "${ORDER[@]}"; do
    runs "$name" || continue
    ((seen)) && later=$((later + SHARES[$name]))
    [[ $name == "$1" ]] && seen=1
  done
  local left=$((deadline - $(date +%s) - budget * later / planned))
  local own=$((budget * SHARES[$1] / planned))
  echo $((left > own ? left : own))
}

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  local began=$SECONDS
  # SIGINT first: pytest then still prints which tests failed, a sweep stops as on Ctrl-C.
  timeout --signal=INT --kill-after="$kill_s" "$((limit > kill_s ? limit - kill_s : 1))" "$@" 2>&1 \
    | tee "$out/$name.log" | tail -n 25
  local rc=${PIPESTATUS[0]}
  printf "\n== %s: exit %s after %ss\n" "$name" "$rc" "$((SECONDS - began))"
  if ((rc == 124 || rc == 137)); then  # (137: killed after the grace, or by the OOM killer)
    timed_out+=("$name")
    # A test step cut short still counts the failures it met: pytest's summary on SIGINT, or,
    # killed before it, an F or E in its progress lines.
    if [[ $name == tests_* ]] && grep -qE "$FAILURE_SEEN" "$out/$name.log"; then
      failed+=("$name")
      return 1
    fi
    return 0
  fi
  ((rc == 0)) || failed+=("$name")
  return "$rc"
}
timed_out=()
failed=()
FAILURE_SEEN='[0-9]+ (failed|errors?)\b|^[.sxXFE]*[FE][.sxXFE]*( +\[ *[0-9]+%\])?$'
sweep_budget() {  # sweep_budget LIMIT: a sweep's own --budget-s, its grace left for writing
  echo $(($1 > grace + 1 ? $1 - grace : 1))
}

pytest=("$py" -m pytest -q -p no:cacheprovider)
if "$py" -c "import xdist" 2>/dev/null; then
  # The workers already compile in parallel: Inductor's own pool in each would multiply them.
  pytest=(env TORCHINDUCTOR_COMPILE_THREADS=1 "${pytest[@]}" -n "$jobs")
fi

# Kernels first: they are what only a GPU can check, bf16 and huge tensors first of all.
if runs tests_kernels; then
  step tests_kernels "$(limit_for tests_kernels)" "${pytest[@]}" \
    tests/test_triton_gpu.py tests/test_triton_ops.py tests/test_modules.py || status=1
fi
if runs tests_ablate; then
  step tests_ablate "$(limit_for tests_ablate)" "${pytest[@]}" \
    tests/test_data.py tests/test_antialias.py tests/test_train.py tests/test_variant.py \
    -k "cuda or fused_backend" || status=1
fi
# Tune before the benchmark so that it times tuned kernels; the goals' activation first.
if runs autotune; then
  limit=$(limit_for autotune)
  step autotune "$limit" "$py" -m kernels.autotune --quick --shapes 256x64x112x112 256x64x32x32 \
    --budget-s "$(sweep_budget "$limit")" --out "$out/tuned.json"
fi
# The bandwidth goals: the fused kernels alone (no baseline to compile, a few seconds a case)
# at the goals' size, the default filter (4) first, then both ends, then between, bf16 and
# fp16 alike; then a CIFAR ResNet-18's first anti-aliased site (its conv at stride 1, batch 256).
if runs bench; then
  limit=$(limit_for bench)
  step bench "$limit" "$py" -m kernels.bench --impls shiftlab --shapes 256x64x112x112 256x128x32x32 \
    --filters 4 3 7 2 5 6 --dtypes bfloat16 float16 --rep-ms 20 \
    --budget-s "$(sweep_budget "$limit")" --out "$out/bench"
fi
# The speed-up goals: every formulation (each torch.compile'd baseline compiles for seconds),
# the default filter first.
if runs compare; then
  limit=$(limit_for compare)
  step compare "$limit" "$py" -m kernels.bench --shapes 256x64x112x112 --filters 4 7 3 5 \
    --dtypes bfloat16 --rep-ms 20 --budget-s "$(sweep_budget "$limit")" --out "$out/compare"
fi
# ResNet-18 first: the issue's network, should the budget not reach the VGG.
if runs end_to_end; then
  limit=$(limit_for end_to_end)
  step end_to_end "$limit" "$py" -m benchmarks.end_to_end --models resnet18 vgg --profile \
    --budget-s "$(sweep_budget "$limit")" --out "$out/end_to_end"
fi
# Real launches on a map small enough that the host, not the kernel, sets the pace.
if runs host_overhead; then
  step host_overhead "$(limit_for host_overhead)" "$py" -m benchmarks.host_overhead \
    --launch cuda --shape 8x64x16x16 --csv "$out/host_overhead.csv"
fi

if ((status)); then
  tests=FAILED
elif [[ " ${timed_out[*]} " == *" tests_"* ]]; then
  tests="incomplete (no failure before the limit)"
else
  tests=passed
fi
compiled=$(($(kernels_cached) - cached_before))
echo "Triton kernels this run compiled (not in the cache it began with): $compiled" \
  | tee -a "$out/device.txt"
errors=${failed[*]:+; failed: ${failed[*]}}
cut=${timed_out[*]:+; timed out or killed (their results are partial): ${timed_out[*]}}
echo "finished $(date -u +%FT%TZ), test steps $tests$errors$cut" | tee -a "$out/device.txt"
if [[ -n $archive ]]; then
  tar -czf "$archive" -C "$(dirname "$out")" "$(basename "$out")" && echo "archive: $archive"
fi
exit "$status"
