"""The harness's own cost: energy.run against calling the backend directly on the same workload.

Both paths run the same loaded model on the same workload in alternating rounds, each round one window of
the same number of generate calls measured by the same meter. Reported per generate call: seconds and
joules through energy.run vs direct, and their relative difference. Reproduce on a GPU:

    pytest benchmarks/test_harness_overhead.py --energy-gpu=auto -p no:cacheprovider -s \
        --energy-baselines=benchmarks/no-baselines --overhead-out=overhead.json
"""

import json
import math
import os
import statistics
import time
from pathlib import Path

import pytest

from pytest_llm_energy import Workload
from pytest_llm_energy.plugin.meters.base import sync_device

ROUNDS = int(os.environ.get("OVERHEAD_ROUNDS", "10"))
# Batch 32 by default: on HF eager, batch 8's spread (~15%) drowns a 1% difference. OVERHEAD_COMPILE=1 runs
# generate's compiled decode (CUDA graphs), whose calls vary far less, so smaller batches can be compared too.
WORKLOAD = Workload(256, 128, int(os.environ.get("OVERHEAD_BATCH", "32")))
COMPILE = os.environ.get("OVERHEAD_COMPILE", "0") == "1"


def _through_energy_run(energy) -> tuple[float, float]:
    before = len(energy.measurements)
    energy.run(WORKLOAD)
    (measured,) = [m for m in energy.measurements[before:] if not m.warmup]
    return measured.seconds / measured.repeats, measured.joules / measured.repeats


def _direct(energy, repeats: int) -> tuple[float, float]:
    backend = energy.backend
    prepared = backend.prepare(WORKLOAD)
    sync_device()
    start = energy.meter.begin()
    began = time.perf_counter()
    for _ in range(repeats):
        backend.generate(prepared)
    sync_device()
    seconds = time.perf_counter() - began
    reading = energy.meter.end(start)
    return seconds / repeats, reading.joules / repeats


@pytest.mark.energy(trials=1, warmup=1, model=os.environ.get("OVERHEAD_MODEL", "llama-3.2-1b"), backend="hf",
                    min_window=2.0, compile=COMPILE)
def test_harness_overhead(energy, request):
    harness, direct = [], []
    energy.run(WORKLOAD)  # load and warm up outside the comparison
    for round_index in range(ROUNDS):
        # Alternate which path goes first, so drift within a round does not favour one path.
        for path in (("harness", "direct") if round_index % 2 == 0 else ("direct", "harness")):
            if path == "harness":
                harness.append(_through_energy_run(energy))
            else:
                direct.append(_direct(energy, repeats=energy.measurements[-1].repeats))
    result = {"card": energy.meter.describe(), "workload": WORKLOAD.label, "rounds": ROUNDS, "compile": COMPILE,
              "calls_per_window": energy.measurements[-1].repeats}
    for name, index in (("seconds_per_call", 0), ("joules_per_call", 1)):
        h = statistics.median(x[index] for x in harness)
        d = statistics.median(x[index] for x in direct)
        paired = [a[index] / b[index] - 1 for a, b in zip(harness, direct, strict=True)]
        result[name] = {"energy_run": h, "direct": d, "relative_difference": h / d - 1,
                        "median_paired_difference": statistics.median(paired),
                        "mean_paired_difference": statistics.fmean(paired),
                        "paired_stdev": statistics.stdev(paired) if len(paired) > 1 else None}
    result["rows"] = {"energy_run": harness, "direct": direct}
    out = request.config.getoption("--overhead-out")
    Path(out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    assert all(math.isfinite(x[1]) for x in harness + direct)
