#!/usr/bin/env bash
# Recorded runs of the GPU suites, each its own pytest process, as a team records a fresh baselines set;
# then runs checked against it. Stops starting runs when the next would not fit the time budget.
#
#   benchmarks/record_runs.sh OUT BASELINES RECORDS CHECKS BUDGET_S
#
# RECORDS runs with --energy-update-baselines into BASELINES (each adds a run to every entry), then CHECKS
# runs against it. $SUITES picks the suite files (default: suites/). Reports, logs and the baselines are
# packed into OUT/runs.tgz (gpu_frame.sh). The plugin is installed offline.
set -uo pipefail
out=$1 baselines=$2 records=$3 checks=$4 budget=$5
source "$(dirname "$0")/gpu_frame.sh"
frame_start "$out" "$budget" 'cp -r "$baselines" "$work/baselines"'
read -r -a suites <<<"${SUITES:-suites/}"
for i in $(seq 1 $((records + checks))); do
  if ((i <= records)); then name=record$i update=(--energy-update-baselines); else name=check$((i - records)) update=(); fi
  frame_fits "$name" || break
  frame_run "$name" python3 -m pytest "${suites[@]}" --energy-gpu=auto -p no:cacheprovider --durations=0 \
      --energy-baselines="$baselines" "${update[@]}" --energy-json="$work/$name.json"
done
