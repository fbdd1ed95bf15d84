#!/usr/bin/env bash
# The GPU measurements behind benchmarks/results/, one step per argument, on an NVIDIA runner.
#
#   benchmarks/gpu_run.sh OUT_DIR meter models overhead      # meter quality, HF models, harness overhead
#   benchmarks/gpu_run.sh OUT_DIR variants                    # HF static cache / compile variants
#   benchmarks/gpu_run.sh OUT_DIR samples                     # samples for benchmarks/detection.py
#   benchmarks/gpu_run.sh OUT_DIR record check                # suites: record baselines, then compare a rerun
#   benchmarks/gpu_run.sh OUT_DIR xdist                       # two GPUs: one per xdist worker
#
# Every step writes into OUT_DIR (logs, JSON reports); `record` writes the baselines into OUT_DIR/baselines
# (or $BASELINES), and `check` compares a second run against them. $SUITES picks the suite files of
# record/check (default: suites/). On a two-GPU runner, two halves can run at once, one per GPU, into one
# baselines folder (the store locks and merges), each half on the same GPU in record and check:
#   CUDA_VISIBLE_DEVICES=0 SUITES=suites/test_chat.py BASELINES=B benchmarks/gpu_run.sh OUT0 record &
#   CUDA_VISIBLE_DEVICES=1 SUITES="suites/test_code.py suites/test_decoding.py" BASELINES=B \
#       benchmarks/gpu_run.sh OUT1 record
# The plugin is installed offline (no network there).
set -uo pipefail
out=$1; shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# Install once: two halves started at once must not both run pip on the same checkout.
python3 -c "import importlib.metadata as m; m.distribution('pytest-llm-energy')" 2>/dev/null ||
    python3 -m pip install --quiet --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || cat "$out/install.log"
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu,memory.total --format=csv \
    >"$out/gpus.csv"
scratch=$(mktemp -d)  # benchmark baselines go nowhere that is committed
suite_args=(--energy-gpu=auto -p no:cacheprovider)  # each suite at its own batch sizes
read -r -a suites <<<"${SUITES:-suites/}"
baselines=${BASELINES:-$out/baselines}
status=0

for step in "$@"; do
  start=$(date +%s)
  case $step in
    meter)
      python3 -m pytest tests/test_gpu_meter.py -p no:cacheprovider -q 2>&1 | tee "$out/gpu_tests.log"
      python3 -m pytest benchmarks/test_meter_quality.py --energy-gpu=auto -p no:cacheprovider -s \
          --energy-baselines="$scratch" --energy-update-baselines --meter-out="$out" 2>&1 | tee "$out/meter.log" ;;
    models)
      python3 -m pytest benchmarks/test_hf_models.py --energy-gpu=auto -p no:cacheprovider \
          --energy-baselines="$scratch" --energy-update-baselines --energy-json="$out/hf_models.json" \
          2>&1 | tee "$out/hf_models.log" ;;
    overhead)
      python3 -m pytest benchmarks/test_harness_overhead.py --energy-gpu=auto -p no:cacheprovider -s \
          --energy-baselines="$scratch" --energy-update-baselines --overhead-out="$out/overhead.json" \
          2>&1 | tee "$out/overhead.log" ;;
    variants)
      python3 benchmarks/hf_variants.py --meter nvml --repeats 8 --out "$out/variants" 2>&1 | tee "$out/variants.log" ;;
    samples)
      python3 benchmarks/collect_samples.py --out "$out/samples.json" --trials 12 2>&1 | tee "$out/samples.log" ;;
    record)
      python3 -m pytest "${suites[@]}" "${suite_args[@]}" --energy-baselines="$baselines" --energy-update-baselines \
          --energy-json="$out/record.json" --energy-md="$out/record.md" --energy-plots="$out/plots" \
          2>&1 | tee "$out/record.log" ;;
    check)
      python3 -m pytest "${suites[@]}" "${suite_args[@]}" --energy-baselines="$baselines" \
          --energy-json="$out/check.json" --energy-md="$out/check.md" 2>&1 | tee "$out/check.log" ;;
    xdist)
      python3 -m pytest tests/test_gpu_meter.py -p no:cacheprovider -q -s 2>&1 | tee "$out/gpu_tests.log"
      python3 benchmarks/xdist_check.py counters >"$out/counters_before.json"
      python3 -m pytest suites/test_code.py suites/test_decoding.py "${suite_args[@]}" -n 2 \
          --energy-baselines="$scratch" --energy-update-baselines --energy-json="$out/xdist.json" 2>&1 \
          | tee "$out/xdist.log"
      python3 benchmarks/xdist_check.py counters >"$out/counters_after.json"
      python3 benchmarks/xdist_check.py table "$out/xdist.json" "$out/counters_before.json" \
          "$out/counters_after.json" | tee "$out/xdist_table.md" ;;
    *) echo "unknown step $step" >&2; status=2 ;;
  esac
  [ "${PIPESTATUS[0]:-0}" -eq 0 ] || status=1
  echo "step $step took $(( $(date +%s) - start )) s" | tee -a "$out/steps.log"
done
exit $status
