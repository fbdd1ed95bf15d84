#!/usr/bin/env bash
# Recorded runs of the GPU suites, each its own pytest process, as a team records a fresh baselines set;
# then runs checked against it. Stops starting runs when the next would not fit the time budget.
#
#   benchmarks/record_runs.sh OUT BASELINES RECORDS CHECKS BUDGET_S
#
# RECORDS runs with --energy-update-baselines into BASELINES (each adds a run to every entry), then CHECKS
# runs against it. $SUITES picks the suite files (default: suites/). Reports, logs and the baselines are
# packed into OUT/runs.tgz (the GPU machine returns few files). The plugin is installed offline.
set -uo pipefail
out=$1 baselines=$2 records=$3 checks=$4 budget=$5
work=$(mktemp -d)
trap 'cp -r "$baselines" "$work/baselines"; tar czf "$out/runs.tgz" -C "$work" .' EXIT
export PYTHONUNBUFFERED=1
python3 -c "import pytest_llm_energy" 2>/dev/null ||
    python3 -m pip install --quiet --no-deps --no-build-isolation -e . >"$work/install.log" 2>&1
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu --format=csv >"$work/gpus.csv"
read -r -a suites <<<"${SUITES:-suites/}"
started=$(date +%s) last=0
for i in $(seq 1 $((records + checks))); do
  left=$((budget - ($(date +%s) - started)))
  if ((i > 1 && left < last + 15)); then echo "stopped before run $i: $left s left, the last run took $last s"; break; fi
  if ((i <= records)); then name=record$i update=(--energy-update-baselines); else name=check$((i - records)) update=(); fi
  run_start=$(date +%s)
  timeout "$left" python3 -m pytest "${suites[@]}" --energy-gpu=auto -p no:cacheprovider --durations=0 \
      --energy-baselines="$baselines" "${update[@]}" --energy-json="$work/$name.json" >"$work/$name.log" 2>&1
  last=$(($(date +%s) - run_start))
  echo "$name: $last s; $(grep -E '^[0-9]+ tests?:' "$work/$name.log" | tail -1)"
done
