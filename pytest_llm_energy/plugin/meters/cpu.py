"""CPU energy: RAPL counters where the kernel lets us read them, else an estimate from CPU time.

The estimate is what runs on a machine without a GPU or readable RAPL (CI, laptops in containers):
joules = CPU seconds of this process and its children x a stated power per busy core. It is labelled
`estimated` everywhere it appears, and it has no idle share (it counts only the work's own CPU time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import MeterError
from ...core.measurement import Reading
from .base import Meter, short_window

POWERCAP = Path("/sys/class/powercap")
DEFAULT_WATTS_PER_CORE = 10.0  # a busy server core draws roughly 5-15 W; 10 W is the stated middle
CPU_TIME_MIN_WINDOW_S = 0.5  # CPU time is counted in 10 ms ticks: half a second keeps that under 2%
RAPL_MIN_WINDOW_S = 1.0


@dataclass(frozen=True)
class RaplDomain:
    name: str
    energy_file: Path
    max_uj: int


def rapl_domains(root: Path = POWERCAP) -> list[RaplDomain]:
    """Top-level package domains (intel-rapl:N) that this process can read; subdomains would double count."""
    domains = []
    if not root.is_dir():
        return domains
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        energy, max_range = zone / "energy_uj", zone / "max_energy_range_uj"
        try:
            int(energy.read_text())
            name = (zone / "name").read_text().strip()
            domains.append(RaplDomain(f"{zone.name}:{name}", energy, int(max_range.read_text())))
        except (OSError, ValueError):  # since 2020 energy_uj is root-only on most kernels
            continue
    return domains


class RaplMeter(Meter):
    """Package energy from RAPL (measured), summed over sockets, with counter wraparound."""

    name = "rapl"
    estimated = False
    min_window_s = RAPL_MIN_WINDOW_S

    def __init__(self, domains: list[RaplDomain], idle_seconds: float = 1.0) -> None:
        if not domains:
            raise MeterError("no readable RAPL domain under /sys/class/powercap")
        self.domains = domains
        self.idle_seconds = idle_seconds
        self._idle: float | None = None

    def _read(self) -> list[int]:
        try:
            return [int(d.energy_file.read_text()) for d in self.domains]
        except (OSError, ValueError) as error:
            raise MeterError(f"RAPL counter could not be read: {error}") from None

    def begin(self):
        return time.perf_counter(), self._read()

    def end(self, start) -> Reading:
        started_at, before = start
        after = self._read()
        seconds = time.perf_counter() - started_at
        joules = sum(
            ((b - a) % (d.max_uj + 1)) / 1e6 for a, b, d in zip(before, after, self.domains, strict=True)
        )
        flags, notes = short_window(seconds, self.min_window_s, "the package counter's updates and the idle "
                                    "share weigh more than 1% in it")
        return Reading(joules, seconds, self.name, False, self._idle or 0.0, flags=flags, notes=notes)

    def idle_watts(self) -> float:
        if self._idle is None:
            start = self.begin()
            time.sleep(self.idle_seconds)
            reading = self.end(start)
            self._idle = reading.joules / reading.seconds
        return self._idle

    def describe(self) -> str:
        return "rapl (package energy counters; measured) on " + ", ".join(d.name for d in self.domains)


SELF = "self"


def process_tree_cpu_seconds() -> dict:
    """User + system CPU seconds of this process and of each live descendant (e.g. a vLLM server).

    This process is read with `time.process_time()` (nanosecond clock, all threads); descendants only
    through /proc, which counts in 10 ms ticks. Keyed per process (pid and start time, so a reused pid is
    another process), so a window can difference each one: a descendant that ends during a window must not
    take its earlier CPU time out of the sum.
    """
    import psutil

    seconds = {SELF: time.process_time()}
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return seconds
    for process in children:
        try:
            times = process.cpu_times()
            seconds[(process.pid, process.create_time())] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def cpu_seconds_between(before: dict, after: dict) -> float:
    """CPU seconds used between two readings by the processes alive at the second (new ones: all of theirs)."""
    return sum(used - before.get(key, 0.0) for key, used in after.items())


class CpuTimeMeter(Meter):
    """Estimated energy: CPU seconds of this process tree x watts per busy core."""

    name = "cpu-time"
    estimated = True
    min_window_s = CPU_TIME_MIN_WINDOW_S
    process_local = True

    def __init__(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> None:
        if not watts_per_core > 0:
            raise MeterError(f"watts per core must be positive, got {watts_per_core}")
        self.watts_per_core = watts_per_core

    def begin(self):
        return time.perf_counter(), process_tree_cpu_seconds()

    def end(self, start) -> Reading:
        started_at, cpu_before = start
        cpu_seconds = cpu_seconds_between(cpu_before, process_tree_cpu_seconds())
        seconds = time.perf_counter() - started_at
        if cpu_seconds <= 0:
            raise MeterError(
                f"no CPU time was used in a {seconds:.3f} s window, so no energy can be estimated; "
                "make the measured work longer"
            )
        flags, notes = short_window(seconds, self.min_window_s, "child processes' CPU time is counted in 10 ms "
                                    "ticks, more than 2% of it")
        return Reading(
            joules=cpu_seconds * self.watts_per_core, seconds=seconds, meter=self.name, estimated=True,
            idle_watts=0.0, flags=flags,
            notes=(f"estimated: {cpu_seconds:.3f} CPU s x {self.watts_per_core:g} W per core", *notes),
        )

    def idle_watts(self) -> float:
        return 0.0

    def describe(self) -> str:
        return (f"cpu-time (ESTIMATED: process-tree CPU seconds x {self.watts_per_core:g} W per core; "
                "no RAPL here)")
