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
import traceback
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.errors import BackendError, EnergyUsageError
from ..core.measurement import Measurement
from ..core.workload import Workload
from .backends.base import Backend, Generation
from .meters.base import Meter
from .trials import TrialPlan

COOLDOWN_LIMIT_S = 60.0
WINDOW_MARGIN = 1.1  # plan windows 10% over the minimum, so run-time jitter rarely makes one short
CALIBRATION_CALLS = 3  # warm calls timed to plan a window
SHORT_RETRIES = 2  # a trial window under the minimum is measured again with more calls, this often


@dataclass(frozen=True)
class Work:
    """What the runner repeats inside windows: `call()` does it once; `counts(results, check)` gives the
    (output, input, requests) tokens of a window's calls, and with `check` raises if they are wrong."""

    key: Hashable  # warm-up happens once per key in a session (a backend and workload shape)
    call: Callable[[], Any]
    counts: Callable[[list, bool], tuple[int, int, int]]


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


def what_failed(error: BaseException) -> str:
    """The error's type and message; where it has no message (a bare `assert` deep in a library), the
    function, file and line that raised it, so the one-line failure still says where to look."""
    if str(error):
        return f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return f"{type(error).__name__} in {last.name} ({'/'.join(Path(last.filename).parts[-2:])}:{last.lineno})"


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
    """Runs binned workloads on a backend under a meter; remembers which shapes are warm this session.

    A window lasts at least the test's own minimum where it sets one, else the meter's (`Meter.min_window_s`,
    which --energy-min-window sets for the session)."""

    def __init__(self, meter: Meter, *, cooldown_celsius: float | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.meter = meter
        self.cooldown_celsius = cooldown_celsius
        self.progress = progress or (lambda text: None)
        self._seconds_per_run: dict[tuple, float] = {}  # (backend, shape) -> seconds, once warm

    def run(self, backend: Backend, workload: Workload, plan: TrialPlan,
            record: Callable[[Measurement], None], label: str = "", min_window_s: float | None = None) -> None:
        """Warm up (once per shape), then measure trials; each window goes to `record` at once."""
        min_window = min_window_s if min_window_s is not None else self.meter.min_window_s
        try:
            if backend.online:
                self._run_online(backend, workload, plan, record, label, min_window)
            else:
                self._run_offline(backend, workload, plan, record, label, min_window)
        except BaseException as error:
            # A failed bin may have reset the backend's compiled state (hf: dynamo's, for the whole process), so
            # no shape counts as warm now: each warms up again before its next trials.
            self._seconds_per_run.clear()
            if isinstance(error, BackendError) or not isinstance(error, Exception):
                raise
            if type(error).__name__ == "OutOfMemoryError":  # an OOM or a crash in one bin: that test errors
                free_device_cache()
                raise BackendError(
                    f"out of memory running {workload.label} on {backend.name}: lower the batch size or "
                    "the lengths for this bin"
                ) from error
            raise BackendError(f"{backend.name} failed on {workload.label}: {what_failed(error)}") from error

    def _window(self, work: Work, repeats: int, warmup: bool) -> tuple[Measurement, list]:
        """`repeats` calls of the work in one window; returns the measurement and the calls' results."""
        results = []
        with measured(self.meter, lambda measurement: None, warmup=warmup, repeats=repeats) as window:
            for _ in range(repeats):
                results.append(work.call())
            window.output_tokens, window.input_tokens, window.requests = work.counts(results, check=False)
        work.counts(results, check=True)  # after the window: the harness adds nothing inside it
        return window.measurement, results

    def repeat(self, work: Work, plan: TrialPlan, record: Callable[[Measurement], None], label: str = "",
               min_window_s: float | None = None) -> Any:
        """Warm up (once per `work.key`), then trials, each a window of as many calls as reach the minimum
        window; returns the last call's result.

        A trial window that still came out under the minimum (the calls sped up) is kept as a warm-up, not
        compared, and measured again with more calls, at most twice.
        """
        min_window = min_window_s if min_window_s is not None else self.meter.min_window_s
        results = self._warm_up(work, plan, record, label, min_window)
        seconds_per_call = self._seconds_per_run.get(work.key)
        repeats = max(1, math.ceil(min_window * WINDOW_MARGIN / seconds_per_call)) if seconds_per_call else 1
        samples: list[float] = []
        for _ in plan.run(lambda: samples, self.progress, label):
            for attempt in range(SHORT_RETRIES + 1):
                cool_down(self.meter, self.cooldown_celsius)
                measurement, results = self._window(work, repeats, False)
                per_call = measurement.seconds / repeats
                self._seconds_per_run[work.key] = per_call
                short = measurement.seconds < min_window
                if short:
                    repeats = max(repeats + 1, math.ceil(min_window * WINDOW_MARGIN / per_call))
                if not short or attempt == SHORT_RETRIES:
                    break
                record(replace(measurement, warmup=True))
            record(measurement)
            samples.append(measurement.joules_per_output_token)
        return results[-1] if results else None

    def _warm_up(self, work: Work, plan: TrialPlan, record: Callable[[Measurement], None], label: str,
                 min_window: float) -> list:
        """The first calls of a shape, not compared; then warm calls, timed, to plan the window length."""
        if work.key in self._seconds_per_run:
            return []
        results = []
        for i in range(plan.warmup):
            self.progress(f"{label} warm-up {i + 1}/{plan.warmup}")
            measurement, results = self._window(work, 1, True)
            record(measurement)
        if plan.warmup:
            # A warm-up call is slower than a warm one (benchmarks/README.md section 3), so the window is
            # planned from warm calls: the fastest of up to three, or of half a window's worth.
            timings = []
            while len(timings) < CALIBRATION_CALLS and sum(timings) < min_window / 2:
                started = time.perf_counter()
                results = [work.call()]
                timings.append(time.perf_counter() - started)
                work.counts(results, check=True)
            self._seconds_per_run[work.key] = min(timings)
        return results

    def _run_offline(self, backend: Backend, workload: Workload, plan: TrialPlan,
                     record: Callable[[Measurement], None], label: str, min_window: float) -> None:
        prepared = backend.prepare(workload)

        def counts(generations: list[Generation], check: bool) -> tuple[int, int, int]:
            if check:
                for generation in generations:
                    check_tokens(backend, workload, generation)
            return (sum(g.output_tokens for g in generations), sum(g.input_tokens for g in generations),
                    sum(g.requests for g in generations))

        self.repeat(Work((id(backend), workload.shape), lambda: backend.generate(prepared), counts), plan, record,
                    label, min_window)

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
        reading, generation = backend.measure_online(workload, self.meter, min_window, warmup=warmup)
        if generation.output_tokens <= 0:
            raise BackendError("no output tokens were streamed inside the steady-state window")
        return Measurement.from_reading(
            reading, output_tokens=generation.output_tokens, input_tokens=generation.input_tokens,
            requests=generation.requests, warmup=warmup, latency=generation.latency,
        )
