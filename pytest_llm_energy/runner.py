"""One measured case: the window that turns work into a Measurement, warm-up per shape, and the trials.

`measured()` is the one place outside `meters/` where a meter window is opened: `energy.measure()`,
`energy(fn)` and the workload runner all measure through it. Online backends, which must open their window
in the middle of a load, are handed the meter's `window` by the runner.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from .backends.base import Backend, Generation
from .errors import BackendError, EnergyUsageError
from .measurement import Measurement
from .meters.base import Meter
from .trials import TrialPlan
from .workload import Workload

COOLDOWN_LIMIT_S = 60.0
WINDOW_MARGIN = 1.1  # plan windows 10% over the minimum, so run-time jitter rarely makes one short


class MeasureWindow:
    """What `with energy.measure() as m:` yields. Set the token counts inside; read the result after."""

    def __init__(self, output_tokens: int | None = None, input_tokens: int = 0, requests: int = 0) -> None:
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.requests = requests
        self.measurement: Measurement | None = None

    def __getattr__(self, name: str) -> Any:
        # Result attributes (joules, joules_per_token, ...) come from the finished measurement.
        measurement = self.__dict__.get("measurement")
        if measurement is None:
            raise AttributeError(f"{name!r} is known only after the `with energy.measure()` block has ended")
        return getattr(measurement, name)


@contextlib.contextmanager
def measured(meter: Meter, record: Callable[[Measurement], None], *, warmup: bool = False, repeats: int = 1,
             output_tokens: int | None = None, input_tokens: int = 0,
             requests: int = 0) -> Iterator[MeasureWindow]:
    """Measure the block; its token counts (set on the window inside) make the Measurement, given to `record`."""
    window = MeasureWindow(output_tokens, input_tokens, requests)
    with meter.window() as opened:
        yield window
    tokens = window.output_tokens
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise EnergyUsageError(
            "energy.measure(): set m.output_tokens to the number of generated tokens (a positive "
            f"integer) inside the with block, got {tokens!r}"
        )
    window.measurement = Measurement.from_reading(
        opened.reading, output_tokens=tokens, input_tokens=int(window.input_tokens or 0),
        requests=int(window.requests or 0), repeats=repeats, warmup=warmup,
    )
    record(window.measurement)


def free_device_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def cool_down(meter: Meter, limit_celsius: float | None) -> float:
    """Before a trial, wait while a device runs hotter than the limit; returns seconds waited."""
    if limit_celsius is None:
        return 0.0
    waited = 0.0
    while waited < COOLDOWN_LIMIT_S and max(meter.temperatures(), default=0.0) > limit_celsius:
        time.sleep(1.0)
        waited += 1.0
    return waited


def check_tokens(backend: Backend, workload: Workload, generation: Generation) -> None:
    if generation.output_tokens != workload.total_output_tokens:
        raise BackendError(
            f"{backend.name} produced {generation.output_tokens} output tokens for {workload.label}, "
            f"expected exactly {workload.total_output_tokens}; J per token would not be comparable"
        )


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
                free_device_cache()
                raise BackendError(
                    f"out of memory running {workload.label} on {backend.name}: lower the batch size or "
                    "the lengths for this bin"
                ) from error
            raise BackendError(f"{backend.name} failed on {workload.label}: {type(error).__name__}: {error}") from error

    def _window(self, backend: Backend, prepared, workload: Workload, repeats: int, warmup: bool,
                record: Callable[[Measurement], None]) -> Measurement:
        generations = []
        with measured(self.meter, lambda measurement: None, warmup=warmup, repeats=repeats) as window:
            for _ in range(repeats):
                generations.append(backend.generate(prepared))
            window.output_tokens = sum(g.output_tokens for g in generations)
            window.input_tokens = sum(g.input_tokens for g in generations)
            window.requests = sum(g.requests for g in generations)
        for generation in generations:  # after the window: the harness adds nothing inside it
            check_tokens(backend, workload, generation)
        record(window.measurement)
        return window.measurement

    def _warm_up(self, backend: Backend, prepared, workload: Workload, plan: TrialPlan,
                 record: Callable[[Measurement], None], label: str) -> None:
        """The first runs of a shape, unmeasured for the comparison; then one more to time a warm run."""
        key = (id(backend), workload.shape)
        if key in self._seconds_per_run:
            return
        for i in range(plan.warmup):
            self.progress(f"{label} warm-up {i + 1}/{plan.warmup}")
            self._window(backend, prepared, workload, 1, True, record)
        if plan.warmup:
            # A warm-up run is slower than a warm one (the first of a shape cost 3-5x on an H200), so the
            # window length is planned from one more, unmeasured, run.
            started = time.perf_counter()
            check_tokens(backend, workload, backend.generate(prepared))
            self._seconds_per_run[key] = time.perf_counter() - started

    def _run_offline(self, backend: Backend, workload: Workload, plan: TrialPlan,
                     record: Callable[[Measurement], None], label: str, min_window: float) -> None:
        prepared = backend.prepare(workload)
        key = (id(backend), workload.shape)
        self._warm_up(backend, prepared, workload, plan, record, label)
        seconds_per_run = self._seconds_per_run.get(key)
        repeats = max(1, math.ceil(min_window * WINDOW_MARGIN / seconds_per_run)) if seconds_per_run else 1
        samples: list[float] = []
        for _ in plan.run(lambda: samples, self.progress, label):
            cool_down(self.meter, self.cooldown_celsius)
            measurement = self._window(backend, prepared, workload, repeats, False, record)
            samples.append(measurement.joules_per_output_token)
            per_run = measurement.seconds / repeats
            self._seconds_per_run[key] = per_run
            if measurement.seconds < min_window:  # the warm-up run was slower than a warm one
                repeats = max(repeats + 1, math.ceil(min_window * WINDOW_MARGIN / per_run))

    def _run_online(self, backend: Backend, workload: Workload, plan: TrialPlan,
                    record: Callable[[Measurement], None], label: str, min_window: float) -> None:
        for i in range(plan.warmup):
            self.progress(f"{label} warm-up {i + 1}/{plan.warmup}")
            record(self._online_window(backend, workload, min_window, warmup=True))
        samples: list[float] = []
        for _ in plan.run(lambda: samples, self.progress, label):
            cool_down(self.meter, self.cooldown_celsius)
            measurement = self._online_window(backend, workload, min_window, warmup=False)
            record(measurement)
            samples.append(measurement.joules_per_output_token)

    def _online_window(self, backend: Backend, workload: Workload, min_window: float, warmup: bool) -> Measurement:
        reading, generation = backend.measure_online(workload, self.meter.window, min_window)
        if generation.output_tokens <= 0:
            raise BackendError("no output tokens were streamed inside the steady-state window")
        return Measurement.from_reading(
            reading, output_tokens=generation.output_tokens, input_tokens=generation.input_tokens,
            requests=generation.requests, warmup=warmup, latency=generation.latency,
        )
