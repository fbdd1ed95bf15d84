"""Value types for what a meter read and what one measured window means in joules per token."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Flags a meter puts on a window; a report prints them beside the number.
FLAG_SHORT_WINDOW = "short-window"  # under the meter's precise minimum
FLAG_BELOW_TICK = "below-counter-period"  # shorter than one update of the energy counter
FLAG_OTHER_PROCESSES = "other-processes"  # another process used a measured GPU
FLAG_THROTTLED = "throttled"  # thermal or power slowdown during the window
FLAG_POWER_LIMIT_CHANGED = "power-limit-changed"
FLAG_POWER_INTEGRATED = "power-integrated"  # no energy counter: instant power integrated instead
FLAG_HOST_BOUND = "host-bound"  # the GPU ran kernels for little of the window: it waited on the host


def meter_label(meter: str, estimated: bool, *, loud: bool = False, say_measured: bool = True) -> str:
    """'nvml (measured)', 'cpu-time (estimated)': which meter made a number, and whether it measured it.

    `loud` writes an estimate in capitals (headers, plot titles); `say_measured=False` leaves a measured
    number's meter as its bare name (table cells, where only an estimate needs saying).
    """
    if estimated:
        return f"{meter} ({'ESTIMATED' if loud else 'estimated'})"
    return f"{meter} (measured)" if say_measured else meter


@dataclass(frozen=True)
class DeviceEnergy:
    """Energy one device used in a window."""

    index: int  # as the process sees it (after CUDA_VISIBLE_DEVICES)
    uuid: str
    name: str
    joules: float
    idle_watts: float = 0.0


@dataclass(frozen=True)
class Reading:
    """What a meter saw over one window, before any token counts are known."""

    joules: float
    seconds: float
    meter: str  # "nvml", "rapl" or "cpu-time"
    estimated: bool  # True when no hardware counter produced the number
    idle_watts: float  # summed over the measured devices
    devices: tuple[DeviceEnergy, ...] = ()
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # human-readable detail for each flag
    busy_share: float | None = None  # share of the window the GPUs ran kernels (None: not known)
    power_limit_watts: float | None = None  # summed over the measured devices


@dataclass(frozen=True)
class Measurement:
    """One measured window with its token counts: the unit every sample, baseline and report is made of."""

    joules: float
    seconds: float
    output_tokens: int
    meter: str
    estimated: bool
    idle_watts: float = 0.0
    input_tokens: int = 0
    requests: int = 0
    repeats: int = 1  # how many times the work ran inside this window
    devices: tuple[DeviceEnergy, ...] = ()
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warmup: bool = False  # a warm-up window: kept for the record, never compared
    latency: dict = field(default_factory=dict)  # TTFT / inter-token latency where a backend reports them
    busy_share: float | None = None
    power_limit_watts: float | None = None

    @classmethod
    def from_reading(
        cls, reading: Reading, *, output_tokens: int, input_tokens: int = 0, requests: int = 0,
        repeats: int = 1, warmup: bool = False, latency: dict | None = None,
    ) -> Measurement:
        return cls(
            joules=reading.joules, seconds=reading.seconds, output_tokens=output_tokens,
            meter=reading.meter, estimated=reading.estimated, idle_watts=reading.idle_watts,
            input_tokens=input_tokens, requests=requests, repeats=repeats, devices=reading.devices,
            flags=reading.flags, notes=reading.notes, warmup=warmup, latency=dict(latency or {}),
            busy_share=reading.busy_share, power_limit_watts=reading.power_limit_watts,
        )

    @property
    def average_watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else float("nan")

    @property
    def power_share(self) -> float | None:
        """Average power as a share of the power limit: how near the GPU ran to its cap."""
        return self.average_watts / self.power_limit_watts if self.power_limit_watts else None

    @property
    def joules_above_idle(self) -> float:
        return self.joules - self.idle_watts * self.seconds

    @property
    def joules_per_output_token(self) -> float:
        return self.joules / self.output_tokens

    # The contract's headline name: joules per *output* token.
    joules_per_token = joules_per_output_token

    @property
    def joules_per_total_token(self) -> float:
        return self.joules / (self.output_tokens + self.input_tokens)

    @property
    def joules_per_request(self) -> float:
        return self.joules / self.requests if self.requests else float("nan")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["joules_per_output_token"] = self.joules_per_output_token
        data["average_watts"] = self.average_watts
        data["power_share"] = self.power_share
        data["joules_above_idle"] = self.joules_above_idle
        return data
