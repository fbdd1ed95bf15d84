#!/usr/bin/env bash
# The steps of one device call, in the order given, with state kept on the machine between the calls of
# one warm lease (baselines, compile caches, vLLM once installed).
#
#   benchmarks/vllm_gpu/session.sh OUT BUDGET_S STEP...
#
# Steps (NAME names the process's log and report):
#   piece:K        keep vLLM piece K, carried as .whl/vllm/cK (recv.sh)
#   install        join the pieces and install vLLM (install.sh, after the last piece)
#   hf:NAME        record the HF suites ($HF_SUITES) into $STATE/baselines
#   vllm:NAME      record the vLLM bins ($VLLM_SUITES, -k "not hf") into $STATE/baselines
#   check:NAME     the recorded suites ($CHECK_SUITES) against $STATE/baselines, recording nothing
#   bench:NAME     pytest $BENCH (a benchmark file) with its own scratch baselines
#   ab:NAME        --energy-ab on $AB_SUITES (-k "$AB_K"), arm A this same Python with $AB_ARGS
#                  (e.g. --energy-ab-option=cuda_graphs=false); no baselines read or written
# Every pytest process runs the README's command shape: --energy-gpu=KEY (h100 or h200, as the card), default
# settings. Logs, JSON reports and the baselines as they stand are packed into OUT/runs.tgz (gpu_frame.sh).
set -uo pipefail
out=$1 budget=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
state=${STATE:-$HOME/llm-energy-run}
# The first call starts from the committed baselines, so records add to their files and checks judge them.
[ -d "$state/baselines" ] || { mkdir -p "$state" && cp -r baselines "$state/baselines"; }
# The key the README's command names for this card (the lease may give an H100 or an H200).
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case $card in *H200*) default_key=h200 ;; *H100*) default_key=h100 ;; *) default_key=auto ;; esac
key=${GPU_KEY:-$default_key}
hf_suites=${HF_SUITES:-suites/test_code.py suites/test_decoding.py}
# test_parallelism after test_backends: its tp1 bin reuses the batch-32 engine (one start fewer).
vllm_suites=${VLLM_SUITES:-suites/test_backends.py suites/test_parallelism.py suites/test_online.py}
check_suites=${CHECK_SUITES:-$hf_suites $vllm_suites}
ab_suites=${AB_SUITES:-suites/test_backends.py} ab_k=${AB_K:-not hf}
source "$here/../gpu_frame.sh"
frame_start "$out" "$budget" 'cp -r "$state/baselines" "$work/baselines"'
suite_run() {  # NAME UPDATE(yes|no) SUITES... [-- EXTRA...]
  local name=$1 update=$2; shift 2
  local args=()
  [ "$update" = yes ] && args+=(--energy-update-baselines)
  frame_fits "$name" || return 1
  frame_run "$name" python3 -m pytest "$@" --energy-gpu="$key" -p no:cacheprovider --durations=0 \
      --energy-baselines="$state/baselines" "${args[@]}" --energy-json="$work/$name.json" \
      --energy-md="$work/$name.md"
  grep -E "^(FAILED|ERROR) " "$work/$name.log" | cut -c1-300 | head -8
  return 0  # only a process that no longer fits stops the steps
}
for step in "$@"; do
  case $step in
    piece:*) bash "$here/recv.sh" .whl/vllm "${step#piece:}" >"$work/recv.log" 2>&1 && echo "kept piece ${step#piece:}" ;;
    install)
      bash "$here/install.sh" .whl/vllm/c3 >"$work/vllm_install.log" 2>&1
      tail -3 "$work/vllm_install.log"
      python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|vllm|nvidia-ml-py|pydantic|aiohttp|numba|setuptools) " ;;
    hf:*) read -r -a files <<<"$hf_suites"; suite_run "${step#hf:}" yes "${files[@]}" || break ;;
    vllm:*) read -r -a files <<<"$vllm_suites"; suite_run "${step#vllm:}" yes "${files[@]}" -k "not hf" || break ;;
    check:*) read -r -a files <<<"$check_suites"; suite_run "${step#check:}" no "${files[@]}" || break ;;
    bench:*)
      frame_fits "${step#bench:}" || break
      frame_run "${step#bench:}" python3 -m pytest "$BENCH" --energy-gpu="$key" -p no:cacheprovider -s \
          --energy-baselines="$(mktemp -d)" --energy-update-baselines --energy-json="$work/${step#bench:}.json" ;;
    ab:*)
      frame_fits "${step#ab:}" || break
      read -r -a files <<<"$ab_suites"; read -r -a extra <<<"${AB_ARGS:-}"
      frame_run "${step#ab:}" python3 -m pytest "${files[@]}" -k "$ab_k" --energy-gpu="$key" -p no:cacheprovider \
          --energy-ab="$(command -v python3)" "${extra[@]}" --energy-json="$work/${step#ab:}.json" \
          --energy-md="$work/${step#ab:}.md"
      grep -E "^(FAILED|ERROR) " "$work/${step#ab:}.log" | cut -c1-300 | head -8 ;;
    *) echo "unknown step $step" >&2 ;;
  esac
done
