#!/usr/bin/env bash
# The first process after a fresh compile against one that loads the compile cache, one process at a time.
#
#   benchmarks/first_process.sh OUT BUDGET_S
#
# Runs the code suite's batch-8 bins (the least GPU-bound of the prefill bins) in separate pytest processes on
# one GPU, in turn: a fresh compile cache, the same cache again, another fresh one, that one again. Each
# process writes its report and `gc_probe.py`'s count of the collector's work inside the trial windows.
# Baselines go to a scratch folder (every verdict `new`): only the medians are compared. Stops starting
# processes when the next would not fit the time budget. Everything is packed into OUT/runs.tgz (the GPU
# machine returns few files; gpu_frame.sh).
set -uo pipefail
out=$1 budget=$2
source "$(dirname "$0")/gpu_frame.sh"
frame_start "$out" "$budget"
export PYTHONPATH="$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
caches=$(mktemp -d) scratch=$(mktemp -d)
plan=("1-fresh a" "2-warm a" "3-fresh b" "4-warm b")  # name, compile cache
for step in "${plan[@]}"; do
  read -r name cache <<<"$step"
  frame_fits "$name" || break
  frame_run "$name" env TORCHINDUCTOR_CACHE_DIR="$caches/$cache" TRITON_CACHE_DIR="$caches/$cache/triton" \
      GC_PROBE_OUT="$work/$name.gc.json" python3 -m pytest suites/test_code.py \
      --suite-batch-sizes=8 --energy-gpu=auto -p no:cacheprovider -p gc_probe \
      --energy-baselines="$scratch" --energy-json="$work/$name.json"
done
