"""How fast the runner's CPUs run Python when a run starts: the host's half of every GPU step.

A compiled `generate` still runs Python between CUDA-graph replays and the GPU waits for it, so a bin whose
GPU is busy for less than about 80% of the window moves with the host's speed. On a shared VM a vCPU runs at full or at half
speed as the other hardware thread of its core is idle or busy, and the guest sees no steal time (measured,
and why this loop: benchmarks/README.md section 10). So a run times one fixed Python loop on each CPU it may
use, the thread pinned to each in turn, and the report header says how many readings ran slow.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

LOOP_N = 100_000  # iterations of the loop: about 8 ms on a free server core
ROUNDS = 2  # each CPU is read this many times, the CPUs in turn, so a state that flips is seen on several
SLOW = 1.5  # a reading this much slower than the fastest counts as slow (a shared core reads about 2x)


@dataclass(frozen=True)
class HostProbe:
    """The loop's readings on this run's CPUs: the fastest, and how many readings were slow."""

    cpus: int
    fastest_ms: float
    readings: int
    slow: int  # readings at SLOW x the fastest or longer

    @classmethod
    def of(cls, cpus: int, readings_s: Sequence[float]) -> HostProbe:
        fastest = min(readings_s)
        return cls(cpus, round(fastest * 1e3, 3), len(readings_s), sum(r >= SLOW * fastest for r in readings_s))

    def to_dict(self) -> dict:
        return asdict(self)


def python_loop(n: int = LOOP_N) -> float:
    """Seconds for a fixed interpreter-bound loop (dict lookups, calls, small ints: what `generate` does)."""
    started = time.perf_counter()
    total = 0
    items = {"a": 1, "b": 2}
    for i in range(n):
        total += items.get("a" if i & 1 else "b", 0) + len(items)
    return time.perf_counter() - started


def probe_host(loop: Callable[[], float] = python_loop, rounds: int = ROUNDS) -> HostProbe | None:
    """Time the loop on each CPU this process may use (best of two a reading); None where threads cannot be
    pinned (not Linux, or the container forbids it). The thread's own CPU set is restored afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)  # pid 0: this thread on Linux
    readings = []
    try:
        for _ in range(rounds):
            for cpu in sorted(allowed):
                os.sched_setaffinity(0, {cpu})
                readings.append(min(loop(), loop()))
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, allowed)
    return HostProbe.of(len(allowed), readings)
