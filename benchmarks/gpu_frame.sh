# The frame of the GPU benchmark drivers (record_runs.sh, first_process.sh), sourced by them: a scratch folder
# packed into OUT/runs.tgz on exit (the GPU machine returns few files), the plugin installed offline, the cards
# listed in gpus.csv, and a time budget that stops starting processes when the next would not fit.
#
#   source "$(dirname "$0")/gpu_frame.sh"
#   frame_start OUT BUDGET_S [COMMAND_ON_EXIT]      # sets $work
#   frame_fits NAME || break                        # room for one more process like the last?
#   frame_run NAME COMMAND...                       # one process, its output in $work/NAME.log

frame_start() {
  frame_out=$1 frame_budget=$2 frame_on_exit=${3:-}
  work=$(mktemp -d)
  trap 'eval "$frame_on_exit"; tar czf "$frame_out/runs.tgz" -C "$work" .' EXIT
  trap 'exit 143' TERM  # killed at a time limit: still pack what ran (EXIT traps do not run on a signal)
  trap 'exit 130' INT
  export PYTHONUNBUFFERED=1
  # The installed distribution, not the import: from the repo root the package imports without its entry point.
  python3 -c "import importlib.metadata as m; m.distribution('pytest-llm-energy')" 2>/dev/null ||
      python3 -m pip install --quiet --no-deps --no-build-isolation -e . >"$work/install.log" 2>&1
  nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu --format=csv \
      >"$work/gpus.csv" 2>&1
  frame_started=$(date +%s) frame_last=0 frame_left=$frame_budget
}

frame_fits() {
  frame_left=$((frame_budget - ($(date +%s) - frame_started)))
  if ((frame_left <= 0 || (frame_last && frame_left < frame_last + 15))); then
    echo "stopped before $1: $frame_left s left, the last took $frame_last s"
    return 1
  fi
}

frame_run() {
  local name=$1 started
  shift
  started=$(date +%s)
  timeout "$frame_left" "$@" >"$work/$name.log" 2>&1
  frame_last=$(($(date +%s) - started))
  echo "$name: $frame_last s; $(grep -E '^[0-9]+ tests?:' "$work/$name.log" | tail -1)"
}
