"""How fast the runner's CPUs run Python when a GPU run starts: the host's half of every GPU step.

A compiled `generate` still runs Python between CUDA-graph replays and the GPU waits for it, so a bin whose
GPU is busy for less than about 80% of the window moves with the host's speed. On a shared VM a vCPU runs at
full or at half speed as the other hardware thread of its core is idle or busy, and the guest sees no steal
time (measured, and why this loop: benchmarks/README.md section 10). So before its first window a GPU run
times one fixed Python loop on each CPU it may use, in a thread of its own pinned to each in turn, and the
report header says how many readings ran slow.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

LOOP_N = 100_000  # iterations of the loop: about 8 ms on a free server core
ROUNDS = 2  # each CPU is read this many times, the CPUs in turn, so a state that flips is seen on several
MAX_CPUS = 32  # on a larger host, this many CPUs spread over its range: the probe stays under a second or two
SLOW = 1.5  # a reading this much slower than the fastest counts as slow (a shared core reads about 2x)
CGROUP_CPU_STAT = Path("/sys/fs/cgroup/cpu.stat")  # cgroup v2: throttled_usec, time the CPU quota stopped us


@dataclass(frozen=True)
class HostProbe:
    """The loop's readings on this run's CPUs: the fastest, how many were slow, and any quota throttling."""

    cpus: int  # CPUs this process may use (MAX_CPUS of them read, at most)
    fastest_ms: float
    readings: int
    slow: int  # readings at SLOW x the fastest or longer
    throttled_ms: float | None = None  # the cgroup's CPU quota held the container this long meanwhile

    @classmethod
    def of(cls, cpus: int, readings_s: Sequence[float], throttled_ms: float | None = None) -> HostProbe:
        fastest = min(readings_s)
        return cls(cpus, round(fastest * 1e3, 3), len(readings_s), sum(r >= SLOW * fastest for r in readings_s),
                   throttled_ms)

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


def cpu_readings(loop: Callable[[], float], cpus: Sequence[int], rounds: int) -> list[tuple[int, float]] | None:
    """(cpu, seconds) of `loop` on each CPU in turn, `rounds` times over, run by a thread of its own pinned to
    each (the caller's threads, and those they start later, keep their CPU sets); None where a thread cannot
    be pinned (not Linux, or the container forbids it)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    found: list[list[tuple[int, float]]] = []

    def read() -> None:
        readings = []
        try:
            for _ in range(rounds):
                for cpu in cpus:
                    os.sched_setaffinity(0, {cpu})  # pid 0: this thread only, on Linux
                    readings.append((cpu, loop()))
        except OSError:
            return
        found.append(readings)

    thread = threading.Thread(target=read, name="llm-energy-host-probe", daemon=True)
    thread.start()
    thread.join()
    return found[0] if found else None


def probe_host(loop: Callable[[], float] = python_loop, rounds: int = ROUNDS) -> HostProbe | None:
    """The loop (best of two a reading) on each CPU this process may use, or MAX_CPUS of them spread evenly."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed[::-(-len(allowed) // MAX_CPUS)]
    throttled_before = throttled_usec()
    readings = cpu_readings(lambda: min(loop(), loop()), cpus, rounds)
    if readings is None:
        return None
    throttled_after = throttled_usec()
    throttled = (None if throttled_before is None or throttled_after is None
                 else (throttled_after - throttled_before) / 1e3)
    return HostProbe.of(len(allowed), [seconds for _, seconds in readings], throttled)


def throttled_usec() -> int | None:
    """Microseconds the cgroup's CPU quota has held this container so far (cgroup v2); None where not known."""
    try:
        for line in CGROUP_CPU_STAT.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "throttled_usec":
                return int(value)
    except (OSError, ValueError):
        return None
    return None
