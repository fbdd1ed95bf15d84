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
# machine returns few files).
set -uo pipefail
out=$1 budget=$2
work=$(mktemp -d)
trap 'tar czf "$out/runs.tgz" -C "$work" .' EXIT
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import pytest_llm_energy" 2>/dev/null ||
    python3 -m pip install --quiet --no-deps --no-build-isolation -e . >"$work/install.log" 2>&1
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu --format=csv >"$work/gpus.csv"
caches=$(mktemp -d) scratch=$(mktemp -d)
plan=("1-fresh a" "2-warm a" "3-fresh b" "4-warm b")  # name, compile cache
started=$(date +%s) last=0
for step in "${plan[@]}"; do
  read -r name cache <<<"$step"
  left=$((budget - ($(date +%s) - started)))
  if ((last && left < last + 15)); then echo "stopped before $name: $left s left, the last took $last s"; break; fi
  run_start=$(date +%s)
  TORCHINDUCTOR_CACHE_DIR="$caches/$cache" TRITON_CACHE_DIR="$caches/$cache/triton" \
      GC_PROBE_OUT="$work/$name.gc.json" timeout "$left" python3 -m pytest suites/test_code.py \
      --suite-batch-sizes=8 --energy-gpu=auto -p no:cacheprovider -p gc_probe \
      --energy-baselines="$scratch" --energy-json="$work/$name.json" >"$work/$name.log" 2>&1
  last=$(($(date +%s) - run_start))
  echo "$name: $last s; $(grep -E '^[0-9]+ tests?:' "$work/$name.log" | tail -1)"
done
