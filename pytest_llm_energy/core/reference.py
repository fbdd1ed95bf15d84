"""A card's own reference figures, and the one that puts a run's J/token per unit of its card.

Two cards of one model draw different energy for the same work (benchmarks/README.md section 6). A run on a
GPU measures a compute-bound and a memory-bound kernel before its tests (`plugin/reference_kernels.py`), and
every recorded run keeps the result beside its J/token. Where runs of several cards meet, the verdict divides
each by its card's figure for the work (`card_scale`, `stats.per_card_scale`): the matmul's for prefill-bound
bins, the geometric mean of the matmul's and the copy's for the rest; each narrowed the card-to-card spread
of its kind of bin on eight H200s (benchmarks/README.md section 10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .files import positive_number

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
