"""One measured case: warm-up per shape, windows long enough for the meter, trials until the plan is done."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import stats
from .backends.base import Backend, Generation
from .errors import BackendError
from .measurement import Measurement
from .meters.base import Meter
from .workload import Workload

ADAPTIVE_CAP = 1000  # a time budget without --energy-max-trials still stops somewhere
COOLDOWN_LIMIT_S = 60.0
WINDOW_MARGIN = 1.1  # plan windows 10% over the minimum, so run-time jitter rarely makes one short


@dataclass(frozen=True)
class TrialPlan:
    """How many trials a test takes: at least `trials`; more (adaptive) until the samples decide."""

    warmup: int
    trials: int
    max_trials: int
    time_budget: float | None
    tolerance: float
    confidence: float
    baseline: tuple[float, ...] | None
    run_noise: float = 0.0

    @property
    def cap(self) -> int:
        if self.time_budget is not None and self.max_trials <= self.trials:
            return ADAPTIVE_CAP
        return max(self.max_trials, self.trials)

    def wants_more(self, samples: list[float], elapsed_s: float) -> bool:
        if len(samples) < self.trials:
            return True
        if len(samples) >= self.cap:
            return False
        if self.time_budget is not None and elapsed_s >= self.time_budget:
            return False
        return not stats.should_stop(
            self.baseline, samples, self.tolerance, confidence=self.confidence,
            min_trials=self.trials, max_trials=self.cap, run_noise=self.run_noise,
        )

    def describe(self, done: int) -> str:
        return f"{done}/{self.trials}" if self.cap == self.trials else f"{done}/{self.trials}..{self.cap}"


def sync_cuda() -> None:
    """Wait for queued GPU work, so a window holds all of the work started inside it (as Zeus does)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _free_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def cool_down(meter: Meter, limit_celsius: float | None) -> float:
    """Before a trial, wait while a GPU runs hotter than the limit; returns seconds waited."""
    temperatures = getattr(meter, "temperatures", None)
    if limit_celsius is None or temperatures is None:
        return 0.0
    waited = 0.0
    while waited < COOLDOWN_LIMIT_S and max(temperatures(), default=0.0) > limit_celsius:
        time.sleep(1.0)
        waited += 1.0
    return waited


class WorkloadRunner:
    """Runs binned workloads on a backend under a meter; remembers which shapes are warm this session."""

    def __init__(self, meter: Meter, *, min_window_s: float | None = None, cooldown_celsius: float | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.meter = meter
        self.min_window_s = min_window_s if min_window_s is not None else meter.min_window_s
        self.cooldown_celsius = cooldown_celsius
        self.progress = progress or (lambda text: None)
        self._seconds_per_run: dict[tuple, float] = {}  # (backend, shape) -> seconds, once warm

    def run(self, backend: Backend, workload: Workload, plan: TrialPlan,
            record: Callable[[Measurement], None], label: str = "", min_window_s: float | None = None) -> None:
        """Warm up (once per shape), then measure trials; each window goes to `record` at once."""
        min_window = min_window_s if min_window_s is not None else self.min_window_s
        try:
            if backend.online:
                self._run_online(backend, workload, plan, record, label, min_window)
            else:
                self._run_offline(backend, workload, plan, record, label, min_window)
        except BackendError:
            raise
        except Exception as error:  # an OOM or a backend crash in one bin: that test errors, others run
            if type(error).__name__ == "OutOfMemoryError":
                _free_cuda_cache()
                raise BackendError(
                    f"out of memory running {workload.label} on {backend.name}: lower the batch size or "
                    "the lengths for this bin"
                ) from error
            raise BackendError(f"{backend.name} failed on {workload.label}: {type(error).__name__}: {error}") from error

    def _check(self, backend: Backend, workload: Workload, generation: Generation) -> None:
        if generation.output_tokens != workload.total_output_tokens:
            raise BackendError(
                f"{backend.name} produced {generation.output_tokens} output tokens for {workload.label}, "
                f"expected exactly {workload.total_output_tokens}; J per token would not be comparable"
            )

    def _window(self, backend: Backend, prepared, workload: Workload, repeats: int, warmup: bool) -> Measurement:
        sync_cuda()
        start = self.meter.begin()
        generations = []
        try:
            for _ in range(repeats):
                generations.append(backend.generate(prepared))
        except BaseException:
            self._abandon(start)
            raise
        reading = self.meter.end(start)
        for generation in generations:
            self._check(backend, workload, generation)
        return Measurement.from_reading(
            reading, output_tokens=sum(g.output_tokens for g in generations),
            input_tokens=sum(g.input_tokens for g in generations),
            requests=sum(g.requests for g in generations), repeats=repeats, warmup=warmup,
        )

    def _abandon(self, start) -> None:
        """Close a window whose work failed, so a power integrator thread does not outlive it."""
        integrator = getattr(start, "integrator", None)
        if integrator is not None:
            integrator.stop()

    def _run_offline(self, backend: Backend, workload: Workload, plan: TrialPlan,
                     record: Callable[[Measurement], None], label: str, min_window: float) -> None:
        prepared = backend.prepare(workload)
        key = (id(backend), workload.shape)
        if key not in self._seconds_per_run:
            for i in range(plan.warmup):
                self.progress(f"{label} warm-up {i + 1}/{plan.warmup}")
                record(self._window(backend, prepared, workload, 1, warmup=True))
            if plan.warmup:
                # A warm-up run is slower than a warm one (the first of a shape cost 3-5x on an H200), so
                # the window length is planned from one more, unmeasured, run.
                started = time.perf_counter()
                self._check(backend, workload, backend.generate(prepared))
                self._seconds_per_run[key] = time.perf_counter() - started
        seconds_per_run = self._seconds_per_run.get(key)
        repeats = max(1, math.ceil(min_window * WINDOW_MARGIN / seconds_per_run)) if seconds_per_run else 1
        samples: list[float] = []
        started = time.perf_counter()
        while plan.wants_more(samples, time.perf_counter() - started):
            cool_down(self.meter, self.cooldown_celsius)
            self.progress(f"{label} trial {plan.describe(len(samples) + 1)}")
            measurement = self._window(backend, prepared, workload, repeats, warmup=False)
            record(measurement)
            samples.append(measurement.joules_per_output_token)
            per_run = measurement.seconds / repeats
            self._seconds_per_run[key] = per_run
            if measurement.seconds < min_window:  # the warm-up run was slower than a warm one
                repeats = max(repeats + 1, math.ceil(min_window * WINDOW_MARGIN / per_run))

    def _run_online(self, backend: Backend, workload: Workload, plan: TrialPlan,
                    record: Callable[[Measurement], None], label: str, min_window: float) -> None:
        for i in range(plan.warmup):
            self.progress(f"{label} warm-up {i + 1}/{plan.warmup}")
            reading, generation = backend.measure_online(workload, self.meter, min_window)
            record(_online_measurement(reading, generation, warmup=True))
        samples: list[float] = []
        started = time.perf_counter()
        while plan.wants_more(samples, time.perf_counter() - started):
            cool_down(self.meter, self.cooldown_celsius)
            self.progress(f"{label} trial {plan.describe(len(samples) + 1)}")
            reading, generation = backend.measure_online(workload, self.meter, min_window)
            measurement = _online_measurement(reading, generation, warmup=False)
            record(measurement)
            samples.append(measurement.joules_per_output_token)


def _online_measurement(reading, generation: Generation, warmup: bool) -> Measurement:
    if generation.output_tokens <= 0:
        raise BackendError("no output tokens were streamed inside the steady-state window")
    return Measurement.from_reading(
        reading, output_tokens=generation.output_tokens, input_tokens=generation.input_tokens,
        requests=generation.requests, warmup=warmup, latency=generation.latency,
    )
