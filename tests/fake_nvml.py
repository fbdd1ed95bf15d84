"""A fake pynvml for unit tests of the NVML meter's pure logic (wraparound, mapping, missing counter).

The real meter is also run against real counters on a GPU (tests marked `gpu`, and benchmarks/meter.py).
Time is simulated: the counter advances by `watts` x elapsed and changes only every `period_s`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_UNKNOWN = 999


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    watts: float = 100.0
    start_mj: int = 0
    has_counter: bool = True
    power_limit_mw: int = 700_000
    pids: list[int] = field(default_factory=list)
    fail_after_reads: int | None = None  # the counter read that raises (NVML failing mid-window)
    # Share of the time each clock-event reason holds the clocks (NVML field id -> 0..1); None: the driver
    # offers no durations, only the reasons in force now (nvmlDeviceGetCurrentClocksEventReasons).
    clock_event_shares: dict[int, float] | None = None
    clock_event_bits: int = 0
    # Share of each utilization sample period a kernel ran (0..1), or a function of simulated time giving it;
    # None: the driver keeps no samples.
    busy_share: float | Callable[[float], float] | None = None


class Clock:
    """Simulated time: each NVML call costs `call_cost_s`, sleep advances time."""

    def __init__(self, call_cost_s: float = 0.004) -> None:
        self.now = 0.0
        self.call_cost_s = call_cost_s

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class WallClock(Clock):
    """Simulated time that follows real time: for runs of the whole plugin, whose meter sleeps for real."""

    def __init__(self, call_cost_s: float = 0.0) -> None:
        self.offset = 0.0
        super().__init__(call_cost_s)

    @property
    def now(self) -> float:
        return time.perf_counter() + self.offset

    @now.setter
    def now(self, value: float) -> None:
        self.offset = value - time.perf_counter()


def install_for_plugin_run(gpus: list[FakeGpu]) -> None:
    """From a pytester conftest: the plugin in that run sees `gpus`, with a 0.2 s idle window (real: 2 s).

    No CUDA device stands behind fake GPUs, so the reference kernels find none, as the real function does
    after importing torch (2-3 s of every run); a conftest that tests them puts its own stub in after this.
    """
    sys.modules["pynvml"] = FakeNvml(gpus, clock=WallClock())
    import pytest_llm_energy.plugin.meters.nvml as nvml
    import pytest_llm_energy.plugin.session as session

    nvml.NvmlMeter.__init__.__kwdefaults__["idle_seconds"] = 0.2
    session.measure_reference = lambda meter, seconds=2.0: None


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int = 0


@dataclass
class _Value:
    dVal: float = 0.0
    uiVal: int = 0
    ulVal: int = 0
    ullVal: int = 0
    sllVal: int = 0
    siVal: int = 0
    usVal: int = 0


@dataclass
class _Sample:
    timeStamp: int
    sampleValue: _Value


@dataclass
class _Field:
    fieldId: int
    nvmlReturn: int
    valueType: int
    value: _Value


class FakeNvml:
    """The subset of pynvml the meter calls, over simulated GPUs and a simulated clock."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED

    def __init__(self, gpus: list[FakeGpu], clock: Clock | None = None, period_s: float = 0.1,
                 modulus: int = 2**64, wall_offset_s: float = 0.0) -> None:
        self.gpus = gpus
        self.wall_offset_s = wall_offset_s  # utilization samples are stamped in wall-clock time
        self.clock = clock or Clock()
        self.period_s = period_s
        self.modulus = modulus
        self.reads = 0
        self.shutdowns = 0

    def _gpu(self, handle) -> FakeGpu:
        return self.gpus[handle]

    def _cost(self) -> None:
        self.clock.now += self.clock.call_cost_s

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        return next(i for i, g in enumerate(self.gpus) if g.uuid == uuid)

    def nvmlDeviceGetUUID(self, handle) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle) -> str:
        return self._gpu(handle).name

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def energy_mj_at(self, handle, t: float) -> int:
        """The counter as the device reports it at time t: updated only at multiples of the period."""
        gpu = self._gpu(handle)
        ticked = (t // self.period_s) * self.period_s
        return int(gpu.start_mj + gpu.watts * ticked * 1000) % self.modulus

    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:
        gpu = self._gpu(handle)
        if not gpu.has_counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        self.reads += 1
        if gpu.fail_after_reads is not None and self.reads > gpu.fail_after_reads:
            raise NVMLError(NVML_ERROR_UNKNOWN)
        at = self.clock.now
        self._cost()
        return self.energy_mj_at(handle, at)

    def nvmlDeviceGetPowerUsage(self, handle) -> int:
        return int(self._gpu(handle).watts * 1000)

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        gpu = self._gpu(handle)
        fields = []
        for field_id in field_ids:
            if field_id == 186:
                fields.append(_Field(field_id, 0, 1, _Value(uiVal=int(gpu.watts * 1000))))
            elif gpu.clock_event_shares is not None:  # accumulated nanoseconds, as the driver counts them
                nanoseconds = int(gpu.clock_event_shares.get(field_id, 0.0) * self.clock.now * 1e9)
                fields.append(_Field(field_id, 0, 3, _Value(ullVal=nanoseconds)))
            else:
                fields.append(_Field(field_id, NVML_ERROR_NOT_SUPPORTED, 3, _Value()))
        return fields

    def nvmlDeviceGetSamples(self, handle, sampling_type: int, last_seen_us: int):
        """Utilization samples every 1/6 s of simulated time after last_seen_us, stamped in wall-clock
        microseconds (simulated time + wall_offset_s); each covers the period before its stamp."""
        gpu = self._gpu(handle)
        if gpu.busy_share is None or sampling_type != 1:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        period_us, offset_us = 1e6 / 6, self.wall_offset_s * 1e6
        first, last = int((last_seen_us - offset_us) // period_us) + 1, int(self.clock.now * 1e6 // period_us)
        share = gpu.busy_share if callable(gpu.busy_share) else (lambda t: gpu.busy_share)
        return 1, [_Sample(int(i * period_us + offset_us), _Value(uiVal=round(share(i * period_us / 1e6) * 100)))
                   for i in range(max(first, 1), last + 1)]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle) -> int:
        return self._gpu(handle).power_limit_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle) -> int:
        return self._gpu(handle).clock_event_bits

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [_Process(pid) for pid in self._gpu(handle).pids]

    def nvmlDeviceGetTemperature(self, handle, sensor) -> int:
        return 40


# Tests whose energy on a fake GPU is its watts x the time slept (ENERGY_TEST_WORK seconds a trial): steady
# to the millisecond, where the CPU estimate of a shared box jumps 1.7x between runs. `test_odd_id` only where
# asked.
STEADY_TESTS = """
import os
import time
import pytest

WORK = float(os.environ.get("ENERGY_TEST_WORK", "0.1"))

@pytest.mark.energy(tolerance={tolerance})
def test_generate(energy):
    with energy.measure() as m:
        time.sleep(WORK)
        m.output_tokens = 100
{odd}
def test_plain():
    assert True
"""
ODD_ID = """
def test_odd_id(energy):
    with energy.measure() as m:
        time.sleep(WORK)
        m.output_tokens = 100
"""


def steady_tests(tolerance: float, odd_id: bool = False) -> str:
    return STEADY_TESTS.format(tolerance=tolerance, odd=ODD_ID if odd_id else "")
