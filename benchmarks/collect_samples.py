"""Record real samples for benchmarks/detection.py: A, A again, and A with injected +3/+5/+10% regressions.

Runs on an NVIDIA GPU with the plugin's own meter and runner (the path energy.run takes). Workloads:

* `steady-matmul`: bf16 8192x8192 products, one window ~1.2 s (the meter's own noise; a quiet workload).
* `hf llama-3.2-1b b1 256->128` and `hf llama-3.2-1b b32 256->128`: HF generate, random weights.

An injected regression is the same work with X% more of it counted as the same number of tokens: the
matrix products run X% more iterations; HF generates round(128 x (1 + X/100)) tokens per request while
J per token is divided by 128. Order: A, +3%, +5%, +10%, then A again (A2) last, so drift over the
recording shows up as A/A noise. Reproduce:

    python benchmarks/collect_samples.py --out samples.json [--trials 12] [--only steady-matmul]
    python benchmarks/detection.py --samples samples.json --trials 3 5 7 10 --out detection_gpu.md
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

CHANGES = (3, 5, 10)


def matmul_samples(meter, trials: int, factor: float, iterations: int) -> list[float]:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    work = round(iterations * factor)
    for _ in range(work):  # warm-up of this shape
        torch.matmul(a, b)
    torch.cuda.synchronize()
    samples = []
    for _ in range(trials):
        start = meter.begin()
        for _ in range(work):
            torch.matmul(a, b)
        torch.cuda.synchronize()
        reading = meter.end(start)
        samples.append(reading.joules / iterations)  # "tokens" counted as the nominal iterations
    return samples


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


def hf_samples(runner, backend, batch: int, trials: int, factor: float) -> list[float]:
    from pytest_llm_energy import Workload
    from pytest_llm_energy.runner import TrialPlan

    nominal = 128
    workload = Workload(256, math.ceil(nominal * factor) if factor > 1 else nominal, batch)
    plan = TrialPlan(warmup=1, trials=trials, max_trials=trials, time_budget=None, tolerance=0.05,
                     confidence=0.99, baseline=None)
    measured = []
    runner.run(backend, workload, plan, measured.append)
    return [m.joules / (m.repeats * batch * nominal) for m in measured if not m.warmup]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=12, help="samples per set (default 12)")
    parser.add_argument("--only", action="append", help="run only these workloads")
    args = parser.parse_args(argv)

    from pytest_llm_energy.backends import BackendPool
    from pytest_llm_energy.backends.base import BackendOptions
    from pytest_llm_energy.meters.nvml import NvmlMeter
    from pytest_llm_energy.models import resolve_model
    from pytest_llm_energy.runner import WorkloadRunner

    meter = NvmlMeter()
    meter.idle_watts()
    card = meter.devices[0].name
    document = {"schema": 1, "unit": "J/output token", "workloads": {}}

    def record(name: str, collect, notes: str) -> None:
        if args.only and name not in args.only:
            return
        sets = {"card": card, "notes": notes}
        sets["A"] = collect(1.0)
        for change in CHANGES:
            sets[f"plus{change}"] = collect(1 + change / 100)
        sets["A2"] = collect(1.0)
        document["workloads"][name] = sets
        args.out.write_text(json.dumps(document, indent=2))
        print(f"{name}: {len(sets['A'])} samples per set recorded", flush=True)

    iterations = matmul_iterations(1.2)
    record("steady-matmul", lambda f: matmul_samples(meter, args.trials, f, iterations),
           f"{iterations} bf16 8192^3 products per window; +X% = X% more products counted as the same")
    runner = WorkloadRunner(meter, min_window_s=1.0)
    pool = BackendPool()
    for batch in (1, 32):
        name = f"hf llama-3.2-1b b{batch} 256->128"
        if args.only and name not in args.only:
            continue
        backend = pool.get("hf", resolve_model("llama-3.2-1b"), BackendOptions(device="cuda"), batch)
        record(name, lambda f, b=batch, be=backend: hf_samples(runner, be, b, args.trials, f),
               "HF eager generate, random weights; +X% = ceil(128 x (1+X/100)) tokens counted as 128")
    pool.close_all()
    meter.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
