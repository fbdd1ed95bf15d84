#!/usr/bin/env bash
# Unchanged code under the CPU-time estimate, as a user records and checks it: RECORDS processes with
# --energy-update-baselines, then CHECKS processes against them, each its own pytest process, in a scratch
# folder (nothing is written into the repository). Leaves one JSON report per process in OUT.
#
#   benchmarks/cpu_alarm/record_check.sh TEST_FILE OUT RECORDS CHECKS
#   python benchmarks/cpu_alarm/rejudge.py OUT          # the false alarms of those processes, judged A/A
set -euo pipefail
test_file=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); out=$(mkdir -p "$2" && cd "$2" && pwd)
records=$3 checks=$4 scratch=$(mktemp -d)
cp "$test_file" "$scratch/test_work.py"
cd "$scratch"
for i in $(seq 1 $((records + checks))); do
  update=(); name=check$((i - records))
  if ((i <= records)); then update=(--energy-update-baselines); name=record$i; fi
  python -m pytest test_work.py -q -p no:cacheprovider --energy-gpu=cpu "${update[@]}" \
      --energy-json="$out/$name.json" >"$out/$name.log" 2>&1 || true
done
rm -rf "$scratch"
