"""Meter quality on a real GPU: energy.measure() around a steady load vs instant power integrated alongside.

Reproduce (on an NVIDIA GPU; writes a JSON and a Markdown table):

    pytest benchmarks/test_meter_quality.py --energy-gpu=auto -p no:cacheprovider -s \
        --meter-out=benchmarks/results/meter_quality

For each window length (2 s and 0.5 s), 10 identical windows of bf16 8192x8192 matrix products, each
measured by the `energy` fixture's `energy.measure()` (tick-aligned counter windows), while a thread
integrates NVML's instant power (field 186, polled every 5 ms) over exactly the same window. Reported:
the agreement of the two (median relative difference) and the spread (coefficient of variation) of each.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pynvml = pytest.importorskip("pynvml")

if not torch.cuda.is_available():
    pytest.skip("needs an NVIDIA GPU", allow_module_level=True)

WINDOWS = 10
SIZE = 8192


class InstantPowerIntegrator:
    """Polls instant power in a thread and integrates it between mark() calls (trapezoid rule)."""

    def __init__(self, handle, period_s: float = 0.005) -> None:
        self.handle = handle
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _watts(self) -> float:
        value = pynvml.nvmlDeviceGetFieldValues(self.handle, [186])[0]
        if value.nvmlReturn == 0:
            return float(value.value.uiVal) / 1000.0
        return pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._watts()))
            time.sleep(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def joules_between(self, start: float, end: float) -> float:
        points = [(t, w) for t, w in self.samples if start <= t <= end]
        before = [(t, w) for t, w in self.samples if t < start][-1:]
        after = [(t, w) for t, w in self.samples if t > end][:1]
        points = before + points + after
        total = 0.0
        for (t0, w0), (t1, w1) in zip(points, points[1:], strict=False):
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                total += (w0 + w1) / 2 * (hi - lo)
        return total


def steady_load(iterations: int, a, b) -> None:
    for _ in range(iterations):
        torch.matmul(a, b)


def calibrate(seconds: float, a, b) -> int:
    steady_load(20, a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    steady_load(50, a, b)
    torch.cuda.synchronize()
    per_iteration = (time.perf_counter() - start) / 50
    return max(1, round(seconds / per_iteration))


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


@pytest.mark.parametrize("window_s", [2.0, 0.5])
@pytest.mark.energy(trials=1, warmup=0)
def test_measure_against_integrated_power(energy, window_s, request):
    out = Path(request.config.getoption("--meter-out"))
    device = energy.meter.devices[0]
    handle = pynvml.nvmlDeviceGetHandleByUUID(device.uuid)
    a = torch.randn(SIZE, SIZE, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(SIZE, SIZE, device="cuda", dtype=torch.bfloat16)
    iterations = calibrate(window_s, a, b)
    steady_load(iterations * 2, a, b)  # bring clocks and power to the steady state first
    torch.cuda.synchronize()
    rows = []
    with InstantPowerIntegrator(handle) as integrator:
        for _ in range(WINDOWS):
            time.sleep(0.3)  # the same idle gap before each window, as in MEASUREMENTS.md
            with energy.measure() as m:
                began = time.perf_counter()
                steady_load(iterations, a, b)
                torch.cuda.synchronize()
                ended = time.perf_counter()
                m.output_tokens = iterations  # one "token" per product: J per token = J per product
            rows.append({"meter_joules": m.joules, "seconds": m.seconds,
                         "integrated_joules": integrator.joules_between(began, ended), "flags": list(m.flags)})
    meter = [r["meter_joules"] for r in rows]
    integrated = [r["integrated_joules"] for r in rows]
    agreement = statistics.median(x / y - 1 for x, y in zip(meter, integrated, strict=True))
    result = {
        "card": device.name, "driver": energy.meter.hardware()["driver"], "window_s": window_s,
        "windows": WINDOWS, "iterations": iterations, "meter_cv": cv(meter), "integrated_cv": cv(integrated),
        "seconds_cv": cv([r["seconds"] for r in rows]), "agreement_median": agreement,
        "mean_watts": statistics.mean(meter) / statistics.mean(r["seconds"] for r in rows), "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"meter_{window_s:g}s.json").write_text(json.dumps(result, indent=2))
    print(f"\n{device.name} window {window_s} s: meter CV {result['meter_cv']:.2%}, integrated CV "
          f"{result['integrated_cv']:.2%}, meter vs integrated {agreement:+.2%}, {result['mean_watts']:.0f} W")
