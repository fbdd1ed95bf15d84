"""Record real samples for benchmarks/detection.py: A, A again, and A with injected +3/+5/+10% regressions.

Runs on an NVIDIA GPU with the plugin's own meter and runner (the path energy.run takes). Workloads:

* `steady-matmul`: bf16 8192x8192 products, one window ~1.2 s (the meter's own noise; a quiet workload).
* `hf llama-3.2-1b b32 256->128`: HF eager generate, random weights (Python-dispatch noise).
* `hf+compile llama-3.2-1b b8 256->128`: static cache + generate's compiled decode step (CUDA graphs).

An injected regression is the same work with X% more of it counted as the same number of tokens: the
matrix products run X% more iterations; HF generates round(128 x (1 + X/100)) tokens per request while
J per token is divided by 128. The five sets (A, +3%, +5%, +10%, A again as
A2) are measured round-robin, one window each per round, so slow drift (heat, clocks) cannot pose as a
change; A/A noise across separate runs is measured by the suites' record/check runs instead. Reproduce:

    python benchmarks/collect_samples.py --out samples.json [--trials 12] [--only steady-matmul]
    (judged by the rule of that time: results/h200/detection_gpu.md; the present rule is simulated by detection.py)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

CHANGES = (3, 5, 10)


SETS = ("A", "plus3", "plus5", "plus10", "A2")
FACTORS = {"A": 1.0, "plus3": 1.03, "plus5": 1.05, "plus10": 1.10, "A2": 1.0}


def interleaved(trials: int, measure) -> dict[str, list[float]]:
    """Round-robin over the sets, one window each per round, so slow drift (heat, clocks) hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in SETS}
    for _ in range(trials):
        for name in SETS:
            samples[name].append(measure(FACTORS[name]))
    return samples


def matmul_measure(meter, iterations: int):
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(iterations):  # warm-up: clocks and power at the steady state
        torch.matmul(a, b)
    torch.cuda.synchronize()

    def measure(factor: float) -> float:
        start = meter.begin()
        for _ in range(round(iterations * factor)):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        return meter.end(start).joules / iterations  # "tokens" counted as the nominal iterations

    return measure


def matmul_iterations(seconds: float) -> int:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(50):
        a @ a
    torch.cuda.synchronize()
    return max(1, round(seconds / ((time.perf_counter() - began) / 50)))


def hf_measure(runner, backend, batch: int):
    """One window per call; +X% generates ceil(128 x (1 + X/100)) tokens per request, counted as 128."""
    from pytest_llm_energy import Workload
    from pytest_llm_energy.plugin.trials import TrialPlan

    nominal = 128
    plan = TrialPlan(warmup=1, trials=1, max_trials=1)

    def measure(factor: float) -> float:
        workload = Workload(256, math.ceil(nominal * factor) if factor > 1 else nominal, batch)
        measured = []
        runner.run(backend, workload, plan, measured.append)  # warms each shape once, then one window
        (window,) = [m for m in measured if not m.warmup]
        return window.joules / (window.repeats * batch * nominal)

    return measure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=12, help="samples per set (default 12)")
    parser.add_argument("--only", action="append", help="run only these workloads")
    args = parser.parse_args(argv)

    from pytest_llm_energy.core.backend_options import BackendOptions
    from pytest_llm_energy.core.models import resolve_model
    from pytest_llm_energy.plugin.backends import BackendPool
    from pytest_llm_energy.plugin.meters.nvml import NvmlMeter
    from pytest_llm_energy.plugin.runner import WorkloadRunner

    meter = NvmlMeter()
    meter.idle_watts()
    card = meter.devices[0].name
    document = {"schema": 1, "unit": "J/output token", "workloads": {}}

    def record(name: str, measure, notes: str) -> None:
        if args.only and name not in args.only:
            return
        started = time.perf_counter()
        document["workloads"][name] = {"card": card, "notes": notes, **interleaved(args.trials, measure)}
        args.out.write_text(json.dumps(document, indent=2))
        print(f"{name}: {args.trials} samples per set in {time.perf_counter() - started:.0f} s", flush=True)

    iterations = matmul_iterations(1.2)
    record("steady-matmul", matmul_measure(meter, iterations),
           f"{iterations} bf16 8192^3 products per window; +X% = X% more products counted as the same")
    meter.min_window_s = 1.0
    runner = WorkloadRunner(meter)
    pool = BackendPool()
    hf_notes = "random weights; +X% = ceil(128 x (1+X/100)) tokens per request counted as 128"
    for name, batch, options in (
        ("hf llama-3.2-1b b32 256->128", 32, BackendOptions(device="cuda")),
        ("hf+compile llama-3.2-1b b8 256->128", 8, BackendOptions(device="cuda", compile=True)),
    ):
        if args.only and name not in args.only:
            continue
        backend = pool.get("hf", resolve_model("llama-3.2-1b"), options, batch)
        record(name, hf_measure(runner, backend, batch), ("HF compiled decode step, " if options.compile
                                                           else "HF eager generate, ") + hf_notes)
    pool.close_all()
    meter.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
