"""The card's own reference: a fixed compute-bound and a fixed memory-bound kernel, measured once a run.

Two cards of one model draw different energy for the same work (benchmarks/README.md section 6). A run on a
GPU measures, before its tests, a bf16 matmul (compute-bound) and a device-to-device copy (memory-bound),
each for about `seconds`, and every recorded run keeps the result beside its J/token. Where runs of several
cards meet, the verdict divides each by its card's figure for the work (`card_scale`, `stats.per_card_scale`):
the matmul's for prefill-bound bins, the geometric mean of the matmul's and the copy's for the rest; each
narrowed the card-to-card spread of its kind of bin on eight H200s (benchmarks/README.md section 10).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .files import positive_number
from .meters.base import Meter

MATMUL_SIZE = 8192  # a square bf16 matmul this size runs near the tensor-core peak of an H100 or H200
COPY_BYTES = 2**30  # each copy reads and writes 1 GiB: far beyond the L2 cache, so HBM-bound
CALIBRATION_CALLS = 5
# A bin that writes this few tokens after its prompt spends its energy in prefill, on the tensor cores; decode
# reads the weights and the KV cache every step, so its energy follows the card's memory as well.
PREFILL_BOUND_OUTPUT_TOKENS = 32


@dataclass(frozen=True)
class Reference:
    """Energy per unit of fixed work on this card, with the power it ran at."""

    gpu: str  # UUID of the card measured
    compute_joules_per_tflop: float  # bf16 matmul
    memory_joules_per_gb: float  # bytes read plus written by the copy
    compute_watts: float
    memory_watts: float
    flags: tuple[str, ...] = ()  # the meter's flags on either window (power-capped, throttled, ...)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return {key: round(value, 5) if isinstance(value, float) else value for key, value in data.items()}


def prefill_bound(workload: Mapping | None) -> bool:
    """Whether a workload (as its dict) writes at most PREFILL_BOUND_OUTPUT_TOKENS tokens after its prompt."""
    output_tokens = workload.get("output_tokens") if workload else None
    return isinstance(output_tokens, int) and output_tokens <= PREFILL_BOUND_OUTPUT_TOKENS


def card_scale(reference: Mapping | None, workload: Mapping | None) -> float | None:
    """The figure that puts a run's J/token per unit of its card, for the work it measured: the matmul's
    J/TFLOP where the workload is prefill-bound (at most PREFILL_BOUND_OUTPUT_TOKENS output tokens), else the
    geometric mean of the matmul's and the copy's J/GB (also for a test that names no workload). None without
    a reference, or where a decode figure lacks the copy's."""
    if not reference or not positive_number(reference.get("compute_joules_per_tflop")):
        return None
    compute = float(reference["compute_joules_per_tflop"])
    if prefill_bound(workload):
        return compute
    memory = reference.get("memory_joules_per_gb")
    return math.sqrt(compute) * math.sqrt(float(memory)) if positive_number(memory) else None


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
