"""GPU energy from NVML's total-energy counter, with windows aligned to the counter's ticks.

The counter moves in steps, a read has a cost, so a naive delta over a window spreads more than an aligned
one (benchmarks/README.md section 1): a window starts right after a tick (energy between that tick and the
start is subtracted at instant power), and ends at the first tick after the work, less the instant power
times the time from the end of the work to that tick. The counter covers the whole device, so other
processes, throttling and power-limit changes during a window are recorded as flags.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from ...core.errors import EnergyUsageError, MeterError
from ...core.measurement import (
    FLAG_BELOW_TICK,
    FLAG_HOST_BOUND,
    FLAG_OTHER_PROCESSES,
    FLAG_POWER_INTEGRATED,
    FLAG_POWER_LIMIT_CHANGED,
    FLAG_THROTTLED,
    DeviceEnergy,
    Reading,
)
from .base import Meter, short_window

COUNTER_MODULUS = 2**64  # nvmlDeviceGetTotalEnergyConsumption is an unsigned long long in mJ
COUNTER_PERIOD_S = 0.1  # how often the counter changes (benchmarks/README.md section 1)
TICK_TIMEOUT_S = 0.5  # a counter that has not changed by then is treated as unaligned (and said so)
MIN_PRECISE_WINDOW_S = 1.0  # below this, the power ramp and tick jitter cost more than 1% (measured)
POWER_POLL_S = 0.02  # fallback integration step on devices without the energy counter

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, mW
# Accumulated nanoseconds spent in each clock event reason (NVML_FI_DEV_CLOCKS_EVENT_REASON_*).
THROTTLE_FIELDS = {
    "sw-power-cap": 74,
    "sw-thermal": 269,
    "hw-thermal": 270,
    "hw-power-brake": 271,
}
# Bits of nvmlDeviceGetCurrentClocksEventReasons, used when the duration fields are not offered.
THROTTLE_BITS = {"sw-power-cap": 0x4, "hw-slowdown": 0x8, "sw-thermal": 0x20, "hw-thermal": 0x40,
                 "hw-power-brake": 0x80}
# Power capping is the normal regime of a saturated GPU: noted, not flagged as throttling.
BENIGN_REASONS = {"sw-power-cap"}
# A reason that held the clocks for less of the window than this is left out: a GPU touches its power cap
# for moments in almost every busy window, and a flag on every result would say nothing.
CLOCK_EVENT_SHARE = 0.10
UTILIZATION_SAMPLES = 1  # NVML_GPU_UTILIZATION_SAMPLES: % of each sample period a kernel was running
# A window whose GPU ran kernels for less than half of it waited on the host (Python dispatch, a server's
# scheduler): its joules move with the host CPU, so such bins are noisy between runs and runners. Even
# back-to-back matmuls read below 100% (benchmarks/README.md section 10).
HOST_BOUND_BUSY = 0.50


def load_nvml():
    """Import and initialise pynvml; a clear EnergyUsageError when the library or driver is missing."""
    try:
        import pynvml
    except ImportError:
        raise EnergyUsageError(
            "NVML is not available: the package nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        ) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise EnergyUsageError(
            f"NVML is not available ({error}): no NVIDIA driver here; run on a GPU runner "
            "or use --energy-gpu=cpu"
        ) from None
    return pynvml


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as this process sees it (`index` after CUDA_VISIBLE_DEVICES) and as NVML knows it (uuid)."""

    index: int
    nvml_index: int
    uuid: str
    name: str


def all_devices(nvml) -> list[GpuDevice]:
    devices = []
    for nvml_index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index)
        devices.append(GpuDevice(nvml_index, nvml_index, _text(nvml.nvmlDeviceGetUUID(handle)),
                                 _text(nvml.nvmlDeviceGetName(handle))))
    return devices


def visible_devices(nvml, cuda_visible_devices: str | None = None) -> list[GpuDevice]:
    """The devices CUDA shows this process, mapped to NVML by UUID (NVML does not renumber).

    Entries are UUIDs (or unique UUID prefixes, as CUDA accepts) or indices; an index counts in PCI bus
    order, which is NVML's order and CUDA's when CUDA_DEVICE_ORDER=PCI_BUS_ID. As in CUDA, the list
    stops at the first entry that names no device.
    """
    devices = all_devices(nvml)
    if cuda_visible_devices is None:
        cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda_visible_devices is None:
        return devices
    chosen: list[GpuDevice] = []
    for entry in (part.strip() for part in cuda_visible_devices.split(",")):
        match = None
        if entry.isdigit():
            match = devices[int(entry)] if int(entry) < len(devices) else None
        elif entry:
            prefix = entry if entry.startswith(("GPU-", "MIG-")) else "GPU-" + entry
            candidates = [d for d in devices if d.uuid.startswith(prefix)]
            match = candidates[0] if len(candidates) == 1 else None
        if match is None or any(d.uuid == match.uuid for d in chosen):
            break
        chosen.append(GpuDevice(len(chosen), match.nvml_index, match.uuid, match.name))
    return chosen


@dataclass
class _Tick:
    millijoules: int
    at: float  # perf_counter seconds: best estimate of when the counter took this value


@dataclass
class _DeviceStart:
    tick: _Tick | None  # None when the device has no energy counter
    start_watts: float
    power_limit_mw: int | None
    throttle_ns: dict[str, int]
    throttle_bits: int


@dataclass
class _WindowStart:
    at: float
    wall_us: int  # NVML's utilization samples are stamped in wall-clock microseconds
    devices: list[_DeviceStart]
    pids: set[int]
    unaligned: list[str] = field(default_factory=list)
    integrator: _PowerIntegrator | None = None


class _PowerIntegrator:
    """Integrates instant power in a thread, for devices without the energy counter (labelled so)."""

    def __init__(self, read_watts, period_s: float = POWER_POLL_S) -> None:
        self._read_watts = read_watts
        self._period_s = period_s
        self._stop = threading.Event()
        self.joules = [0.0] * len(read_watts())
        self.error: MeterError | None = None  # NVML failed in the window: its joules are missing a part
        self._thread = threading.Thread(target=self._run, name="energy-power-integrator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            last_at, last = time.perf_counter(), self._read_watts()
            while not self._stop.wait(self._period_s):
                now, watts = time.perf_counter(), self._read_watts()
                for i, (a, b) in enumerate(zip(last, watts, strict=True)):
                    self.joules[i] += (a + b) / 2 * (now - last_at)
                last_at, last = now, watts
        except MeterError as error:  # kept for end(): a thread's exception would only be printed
            self.error = error

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.joules


class NvmlMeter(Meter):
    """Sum of the energy counters of the GPUs this process can see (or those given)."""

    name = "nvml"
    estimated = False

    def __init__(self, devices: list[GpuDevice] | None = None, *, nvml=None, align: bool = True,
                 idle_seconds: float = 2.0, clock=time.perf_counter, sleep=time.sleep,
                 wall_clock=time.time) -> None:
        self.nvml = nvml if nvml is not None else load_nvml()
        self.devices = devices if devices is not None else visible_devices(self.nvml)
        if not self.devices:
            raise EnergyUsageError(
                "no GPU is visible to this process (check CUDA_VISIBLE_DEVICES); use --energy-gpu=cpu"
            )
        self.handles = [self.nvml.nvmlDeviceGetHandleByUUID(d.uuid) for d in self.devices]
        self.align = align
        self.idle_seconds = idle_seconds
        self.min_window_s = MIN_PRECISE_WINDOW_S
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._idle: list[float] | None = None
        self.has_counter = [self._counter_supported(h) for h in self.handles]
        if any(self.has_counter) and not all(self.has_counter):
            raise MeterError("some GPUs have an energy counter and some do not; measure them separately")

    # -- reading the device -------------------------------------------------------------------------
    def _counter_supported(self, handle) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except self.nvml.NVMLError as error:
            if self._is_not_supported(error):
                return False
            raise MeterError(f"NVML could not read the energy counter: {error}") from None

    def _is_not_supported(self, error) -> bool:
        return getattr(error, "value", None) == getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3)

    def _counter(self, handle) -> int:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except self.nvml.NVMLError as error:
            raise MeterError(f"NVML failed while reading the energy counter: {error}") from None

    def _watts(self, handle) -> float:
        """Instant power: field 186 where offered (it follows the counter's ticks), else power usage."""
        try:
            value = self.nvml.nvmlDeviceGetFieldValues(handle, [FIELD_POWER_INSTANT])[0]
            if value.nvmlReturn == 0:
                return _field_number(value) / 1000.0
        except (self.nvml.NVMLError, AttributeError, IndexError, TypeError):
            pass
        try:
            return self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        except self.nvml.NVMLError as error:
            raise MeterError(f"NVML failed while reading power: {error}") from None

    def _all_watts(self) -> list[float]:
        return [self._watts(h) for h in self.handles]

    def _power_limit(self, handle) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        except self.nvml.NVMLError:
            return None

    def _throttle_ns(self, handle) -> dict[str, int]:
        try:
            values = self.nvml.nvmlDeviceGetFieldValues(handle, list(THROTTLE_FIELDS.values()))
        except (self.nvml.NVMLError, AttributeError, TypeError):
            return {}
        return {name: int(_field_number(v)) for name, v in zip(THROTTLE_FIELDS, values, strict=False)
                if v.nvmlReturn == 0}

    def _throttle_bits(self, handle) -> int:
        for getter in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if hasattr(self.nvml, getter):
                try:
                    return int(getattr(self.nvml, getter)(handle))
                except self.nvml.NVMLError:
                    return 0
        return 0

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for handle in self.handles:
            try:
                pids.update(p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except self.nvml.NVMLError:
                continue
        return pids

    def _wait_for_tick(self, handle, deadline: float) -> _Tick | None:
        """Poll until the counter changes; the tick time is between the last two read starts."""
        previous_at = self._clock()
        first = self._counter(handle)
        while True:
            at = self._clock()
            value = self._counter(handle)
            if value != first:
                return _Tick(value, (previous_at + at) / 2)
            if at > deadline:
                return None
            previous_at = at
            self._sleep(0.001)

    # -- the window ------------------------------------------------------------------------------------
    def begin(self) -> _WindowStart:
        ticks: list[_Tick | None] = []
        unaligned = []
        for device, handle, counted in zip(self.devices, self.handles, self.has_counter, strict=True):
            if not counted:
                ticks.append(None)
                continue
            tick = self._wait_for_tick(handle, self._clock() + TICK_TIMEOUT_S) if self.align else None
            if tick is None:  # no alignment: start from the value as read now
                tick = _Tick(self._counter(handle), self._clock())
                if self.align:
                    unaligned.append(device.uuid)
            ticks.append(tick)
        watts = self._all_watts()
        starts = [
            _DeviceStart(tick, w, self._power_limit(h), self._throttle_ns(h), self._throttle_bits(h))
            for tick, w, h in zip(ticks, watts, self.handles, strict=True)
        ]
        integrator = None if all(self.has_counter) else _PowerIntegrator(self._all_watts)
        return _WindowStart(self._clock(), int(self._wall_clock() * 1e6), starts, self._pids(), unaligned,
                            integrator)

    def abort(self, start: _WindowStart) -> None:
        if start.integrator is not None:  # its thread must not outlive the window
            start.integrator.stop()

    def end(self, start: _WindowStart) -> Reading:
        end_at, end_us = self._clock(), int(self._wall_clock() * 1e6)
        seconds = end_at - start.at
        end_watts = self._all_watts()
        integrated = start.integrator.stop() if start.integrator else None
        if start.integrator is not None and start.integrator.error is not None:
            raise MeterError(f"{start.integrator.error}; the window's energy is incomplete") from None
        flags: list[str] = []
        notes: list[str] = []
        per_device = []
        idle = self._idle or [0.0] * len(self.devices)
        for i, (device, handle, begun) in enumerate(zip(self.devices, self.handles, start.devices, strict=True)):
            if begun.tick is None:
                joules = integrated[i]
                if FLAG_POWER_INTEGRATED not in flags:
                    flags.append(FLAG_POWER_INTEGRATED)
                    notes.append("no energy counter on this GPU: instant power integrated every 20 ms")
            else:
                end_tick = (self._wait_for_tick(handle, self._clock() + TICK_TIMEOUT_S) if self.align
                            else None) or _Tick(self._counter(handle), end_at)
                counted_mj = (end_tick.millijoules - begun.tick.millijoules) % COUNTER_MODULUS
                head = begun.start_watts * max(0.0, start.at - begun.tick.at)
                tail = end_watts[i] * max(0.0, end_tick.at - end_at)
                joules = counted_mj / 1000.0 - head - tail
            if joules <= 0:
                raise MeterError(
                    f"GPU {device.index} ({device.name}) registered no energy over a {seconds:.3f} s window; "
                    "the window is too short for the counter: make the measured work longer"
                )
            per_device.append(DeviceEnergy(device.index, device.uuid, device.name, joules, idle[i]))
            flags_for, notes_for = self._device_flags(device, handle, begun, self._clock() - start.at)
            for flag, note in zip(flags_for, notes_for, strict=True):
                if flag not in flags:
                    flags.append(flag)
                notes.append(note)
        busy = self._busy_share(start.wall_us, end_us)
        if busy is not None and busy < HOST_BOUND_BUSY:
            flags.append(FLAG_HOST_BOUND)
            notes.append(f"GPU busy {busy:.0%} of the window (NVML utilization samples): it waited on the host, "
                         "so runs of this bin move with the host CPU")
        if start.unaligned:
            notes.append("counter did not tick within 0.5 s; window not aligned on " + ", ".join(start.unaligned))
        others = self._other_pids(start.pids | self._pids())
        if others:
            flags.append(FLAG_OTHER_PROCESSES)
            notes.append("other processes used a measured GPU: pids " + ", ".join(map(str, sorted(others))))
        if seconds < COUNTER_PERIOD_S:
            flags.append(FLAG_BELOW_TICK)
            notes.append(f"window {seconds:.3f} s is shorter than the counter period ({COUNTER_PERIOD_S} s)")
        else:
            short_flags, short_notes = short_window(seconds, self.min_window_s, "precision is worse than 1%")
            flags += short_flags
            notes += short_notes
        return Reading(
            joules=sum(d.joules for d in per_device), seconds=seconds, meter=self.name, estimated=False,
            idle_watts=sum(idle), devices=tuple(per_device), flags=tuple(flags), notes=tuple(notes),
            busy_share=busy, power_limit_watts=self._limit_watts(),
        )

    def _device_flags(self, device: GpuDevice, handle, begun: _DeviceStart,
                      elapsed_s: float) -> tuple[list[str], list[str]]:
        flags, notes = [], []
        limit = self._power_limit(handle)
        if begun.power_limit_mw is not None and limit is not None and limit != begun.power_limit_mw:
            flags.append(FLAG_POWER_LIMIT_CHANGED)
            notes.append(f"GPU {device.index}: power limit {begun.power_limit_mw / 1000:.0f} W -> {limit / 1000:.0f} W")
        reasons = self._clock_events(handle, begun, elapsed_s)
        slowed = {name: when for name, when in reasons.items() if name not in BENIGN_REASONS}
        if slowed:
            flags.append(FLAG_THROTTLED)
            notes.append(f"GPU {device.index}: clocks slowed by "
                         + ", ".join(f"{name} {when}" for name, when in sorted(slowed.items())))
        for name in BENIGN_REASONS & set(reasons):
            flags.append("power-capped")
            notes.append(f"GPU {device.index}: clocks held at its power cap {reasons[name]}")
        return flags, notes

    def _clock_events(self, handle, begun: _DeviceStart, elapsed_s: float) -> dict[str, str]:
        """The clock-event reasons that held this window's clocks, each with how much of it: from the time
        NVML accumulates per reason where it offers that (only a meaningful share counts), else from the
        reasons in force at the window's two ends."""
        if not begun.throttle_ns:
            bits = begun.throttle_bits | self._throttle_bits(handle)
            return {name: "at the window's start or end" for name, bit in THROTTLE_BITS.items() if bits & bit}
        window_ns = max(elapsed_s, 1e-9) * 1e9
        shares = {name: min(1.0, (ns - begun.throttle_ns[name]) / window_ns)
                  for name, ns in self._throttle_ns(handle).items() if name in begun.throttle_ns}
        return {name: f"{share:.0%} of the window" for name, share in shares.items() if share >= CLOCK_EVENT_SHARE}

    def _busy_share(self, start_us: int, end_us: int) -> float | None:
        """The share of the window the GPUs ran kernels: the mean of NVML's utilization samples stamped
        inside it, averaged over the devices; None where the driver keeps no samples or none fell inside."""
        shares = []
        for handle in self.handles:
            try:
                kind, samples = self.nvml.nvmlDeviceGetSamples(handle, UTILIZATION_SAMPLES, start_us)
            except (self.nvml.NVMLError, AttributeError):
                return None
            values = [_sample_number(s.sampleValue, kind) for s in samples if start_us < s.timeStamp <= end_us]
            if not values:
                return None
            shares.append(min(1.0, sum(values) / len(values) / 100.0))
        return sum(shares) / len(shares)

    def _limit_watts(self) -> float | None:
        limits = [self._power_limit(handle) for handle in self.handles]
        return None if None in limits else sum(limits) / 1000.0

    def _other_pids(self, pids: set[int]) -> set[int]:
        ours = {os.getpid()}
        try:
            import psutil

            ours |= {child.pid for child in psutil.Process().children(recursive=True)}
        except Exception:  # psutil missing or the tree changed under us: judge by our own pid
            pass
        if pids and not pids & ours:
            # In a container NVML may report host pids: ours is then invisible, so only a second
            # process is evidence of another user.
            return pids if len(pids) > 1 else set()
        return pids - ours

    # -- session facts -----------------------------------------------------------------------------------
    def temperatures(self) -> list[float]:
        """GPU core temperatures in degrees C, for the cool-down between trials."""
        sensor = getattr(self.nvml, "NVML_TEMPERATURE_GPU", 0)
        try:
            return [float(self.nvml.nvmlDeviceGetTemperature(h, sensor)) for h in self.handles]
        except self.nvml.NVMLError:
            return []

    def idle_watts(self) -> float:
        """Idle power of each measured GPU over `idle_seconds`, measured once (call before loading work)."""
        if self._idle is None:
            start = self.begin()
            self._sleep(self.idle_seconds)
            reading = self.end(start)
            self._idle = [d.joules / reading.seconds for d in reading.devices]
        return sum(self._idle)

    def hardware(self) -> dict:
        handle = self.handles[0]
        limit = self._power_limit(handle)
        try:
            driver = _text(self.nvml.nvmlSystemGetDriverVersion())
        except self.nvml.NVMLError:
            driver = None
        return {
            "gpu_name": self.devices[0].name,
            "gpu_count": len(self.devices),
            "gpu_uuids": [d.uuid for d in self.devices],
            "driver": driver,
            "power_limit_watts": limit / 1000.0 if limit is not None else None,
        }

    def describe(self) -> str:
        method = "energy counter, tick-aligned" if all(self.has_counter) else "instant power integrated"
        names = ", ".join(f"{d.index}:{d.name}" for d in self.devices)
        return f"nvml ({method}; measured) on GPU {names}"

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # shutting down a library that failed is not worth an error
            pass


VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}  # nvmlValueType_t


def _field_number(value) -> float:
    """The number in an nvmlFieldValue_t, whatever its declared type."""
    return _sample_number(value.value, value.valueType)


def _sample_number(value, kind: int) -> float:
    """The number in an nvmlValue_t union of the given nvmlValueType_t."""
    return float(getattr(value, VALUE_FIELDS.get(kind, "ullVal")))
