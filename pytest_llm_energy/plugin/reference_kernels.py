"""The card's reference kernels, measured once a GPU run: a bf16 matmul (compute-bound) and a copy (memory-bound).

Each runs for about `seconds` in one meter window before the run's tests; the result (`reference.Reference`)
is kept with each recorded run, for `reference.card_scale`.
"""

from __future__ import annotations

import math
import sys
import time

from ..core.reference import Reference
from .meters.base import Meter

MATMUL_SIZE = 8192  # a square bf16 matmul this size runs near the tensor-core peak of an H100 or H200
COPY_BYTES = 2**30  # each copy reads and writes 1 GiB: far beyond the L2 cache, so HBM-bound
CALIBRATION_CALLS = 5


def _timed_window(meter: Meter, call, seconds: float):
    """`call` repeated for about `seconds` inside one window; returns the reading and the repeat count."""
    torch = sys.modules["torch"]
    for _ in range(2):  # first calls pick kernels and warm the clocks
        call()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(CALIBRATION_CALLS):
        call()
    torch.cuda.synchronize()
    per_call = max((time.perf_counter() - started) / CALIBRATION_CALLS, 1e-6)
    repeats = max(1, math.ceil(seconds / per_call))
    with meter.window() as window:
        for _ in range(repeats):
            call()
    return window.reading, repeats


def _matmuls(torch, meter: Meter, seconds: float):
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=torch.bfloat16, device="cuda")
    b = torch.randn_like(a)
    product = torch.empty_like(a)
    return _timed_window(meter, lambda: torch.mm(a, b, out=product), seconds)


def _copies(torch, meter: Meter, seconds: float):
    source = torch.empty(COPY_BYTES // 2, dtype=torch.bfloat16, device="cuda")
    target = torch.empty_like(source)
    return _timed_window(meter, lambda: target.copy_(source), seconds)


def measure_reference(meter: Meter, seconds: float = 2.0) -> Reference | None:
    """Both kernels on the first measured GPU (CUDA device 0 of this process); None where torch has no CUDA
    device, or where the kernels could not run (no memory left beside a loaded model: nothing is lost)."""
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            return None
    if not torch.cuda.is_available():
        return None
    try:
        compute, matmuls = _matmuls(torch, meter, seconds)
        memory, copies = _copies(torch, meter, seconds)
    except RuntimeError:  # torch.OutOfMemoryError is one
        return None
    finally:
        torch.cuda.empty_cache()  # the buffers went with the helpers' frames
    tflop = 2 * MATMUL_SIZE**3 * matmuls / 1e12
    gigabytes = 2 * COPY_BYTES * copies / 1e9
    flags = tuple(sorted(set(compute.flags) | set(memory.flags)))
    # The kernels ran on one card; a meter of several counts the others' idle power too.
    gpu, compute_joules = _first_device(compute)
    memory_joules = _first_device(memory)[1]
    if not (math.isfinite(compute_joules) and math.isfinite(memory_joules) and compute_joules > 0
            and memory_joules > 0):
        return None  # a counter that read no energy measured nothing a run could be scaled by
    return Reference(gpu, compute_joules / tflop, memory_joules / gigabytes, compute_joules / compute.seconds,
                     memory_joules / memory.seconds, flags)


def _first_device(reading) -> tuple[str, float]:
    """The UUID and joules of the reading's first device (the whole reading where it names none)."""
    return (reading.devices[0].uuid, reading.devices[0].joules) if reading.devices else ("", reading.joules)
