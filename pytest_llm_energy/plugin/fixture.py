"""The `energy` fixture: `energy(fn, ...)` and `energy.measure()` for any code, `energy.run()` for a binned workload."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

from ..core.errors import EnergyUsageError
from ..core.measurement import Measurement
from ..core.workload import Workload
from .config import TestSettings
from .runner import MeasureWindow, Work, measured
from .trials import TrialPlan

if TYPE_CHECKING:
    from .session import EnergySession

BENCHMARK_REPEAT = (
    "this test uses pytest-benchmark's `benchmark`, which runs once per test, and measures energy once, "
    "so its body cannot be repeated for energy trials: measure in a loop instead, "
    "`for trial in energy.trials(): with energy.measure() as m: ...`, outside the benchmark() call"
)


@dataclass(frozen=True)
class Trial:
    """One pass of `for trial in energy.trials()`: warm-up passes come first and are not compared."""

    index: int
    warmup: bool


FIXTURE_KEY = pytest.StashKey["EnergyFixture"]()  # an item's `energy` fixture, for the hooks around its call


class EnergyFixture:
    """Per-test handle. Every window it measures is kept; warm-up windows are marked, never compared."""

    def __init__(self, nodeid: str, settings: TestSettings, session: EnergySession) -> None:
        self.nodeid = nodeid
        self.settings = settings
        self._session = session
        self.measurements: list[Measurement] = []
        self.workload: Workload | None = None
        self.backend = None  # the loaded backend of the last energy.run(), for direct comparisons
        self.backend_description: dict | None = None
        self._warming = False
        self.drives_own_trials = False  # set by trials() and run(): the body is then not repeated

    # -- what the test reads ---------------------------------------------------------------------------
    @property
    def samples(self) -> list[float]:
        """J per output token of every compared (non-warm-up) window so far."""
        return [m.joules_per_output_token for m in self.measurements if not m.warmup]

    @property
    def meter(self):
        return self._session.meter

    def plan(self) -> TrialPlan:
        return self._session.plan_for(self.nodeid, self.settings)

    # -- energy.measure() ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def measure(self, output_tokens: int | None = None, input_tokens: int = 0,
                requests: int = 0) -> Iterator[MeasureWindow]:
        """Measure the energy of the code in the block. Set `m.output_tokens` before the block ends."""
        meter = self._session.ready_meter()
        with measured(meter, self.measurements.append, warmup=self._warming, output_tokens=output_tokens,
                      input_tokens=input_tokens, requests=requests) as window:
            yield window

    # -- energy(fn) ------------------------------------------------------------------------------------
    def __call__(self, fn: Callable[..., Any], *args: Any, output_tokens: int, input_tokens: int = 0,
                 requests: int = 0, **kwargs: Any) -> Any:
        """Measure `fn(*args, **kwargs)`, as pytest-benchmark's `benchmark(fn)` times it: warm-up first, then
        the trials, each a window in which `fn` is called until the window lasts the minimum (1 s on NVML).
        `output_tokens` is what one call produces; J/token divides by every call. Returns fn's result."""
        if not isinstance(output_tokens, int) or isinstance(output_tokens, bool) or output_tokens < 1:
            raise EnergyUsageError(f"energy(fn, ...): output_tokens must be the number of tokens one call of "
                                   f"fn produces (a positive integer), got {output_tokens!r}")
        if self.measurements:
            raise EnergyUsageError(f"{self.nodeid}: energy(fn) measures a test once, after which it has its "
                                   "trials; measure one thing per test, or parametrize the test")
        self.drives_own_trials = True
        self._session.ready_meter()

        def counts(results: list, check: bool) -> tuple[int, int, int]:
            return output_tokens * len(results), input_tokens * len(results), requests * len(results)

        work = Work(object(), lambda: fn(*args, **kwargs), counts)  # a key of its own: always warmed up
        return self._session.runner.repeat(work, self.plan(), self.measurements.append, label=self.nodeid,
                                           min_window_s=self.settings.min_window)

    # -- energy.trials() -------------------------------------------------------------------------------
    def trials(self) -> Iterator[Trial]:
        """Loop over warm-up passes, then trials (adaptive when the settings allow), measuring once each."""
        self.drives_own_trials = True
        self._session.ready_meter()  # the card's reference first: adaptive trials decide by the final rule
        plan = self.plan()
        for index in range(plan.warmup):
            self._warming = True
            yield Trial(index, warmup=True)
        self._warming = False
        for index in plan.run(lambda: self.samples, self._session.progress, self.nodeid):
            yield Trial(index, warmup=False)

    # -- body repetition (--energy-trials with a body that measures once) ------------------------------
    @contextlib.contextmanager
    def repeating(self, item: pytest.Function) -> Iterator[None]:
        """While pytest calls the test function: a body that measured once is called again, as pytest-repeat
        would, minus setup (`repeat_body`)."""
        original = item.obj

        def body(**kwargs):
            result = original(**kwargs)
            if "benchmark" in kwargs and self._would_repeat():
                pytest.fail(BENCHMARK_REPEAT, pytrace=False)
            self.repeat_body(lambda: original(**kwargs))
            return result

        item.obj = body
        try:
            yield
        finally:
            item.obj = original

    def _would_repeat(self) -> bool:
        """Whether repeat_body would call the body again (a body that measured once, and more windows wanted)."""
        return (not self.drives_own_trials and len(self.measurements) == 1
                and self.settings.warmup + self.settings.trials > 1)

    def repeat_body(self, call_body) -> None:
        """Call a test body that measured once again, as warm-up + trials, with the same fixtures."""
        if self.drives_own_trials or len(self.measurements) != 1:
            return
        plan = self.plan()
        if plan.warmup:
            self.measurements[0] = replace(self.measurements[0], warmup=True)
            for _ in range(plan.warmup - 1):
                self._warming = True
                call_body()
            self._warming = False
        for _ in plan.run(lambda: self.samples, self._session.progress, self.nodeid):
            count = len(self.measurements)
            call_body()
            if len(self.measurements) != count + 1:
                raise EnergyUsageError(
                    f"{self.nodeid}: the test body measured {len(self.measurements) - count} windows on a "
                    "repeat but one the first time; measure once per body, or loop with energy.trials()"
                )

    # -- energy.run() ----------------------------------------------------------------------------------
    def run(self, workload: Workload | None = None, *, backend: str | None = None, model: str | None = None,
            **options: Any) -> EnergyResultView:
        """Measure a binned workload on the session's backend: warm-up per shape, then the trials."""
        self.drives_own_trials = True
        workload = workload if workload is not None else self._workload_from_marker()
        if self.workload is not None and self.workload != workload:
            raise EnergyUsageError(
                f"{self.nodeid}: energy.run() was called with two workloads ({self.workload.label} and "
                f"{workload.label}); one test measures one workload, parametrize for more"
            )
        self._session.ready_meter()  # idle power and the reference kernels, before a model takes the GPU
        engine = self._session.backend_for(
            backend or self.settings.backend, model or self.settings.model,
            {**self.settings.backend_options, **options}, workload,
        )
        self.workload = workload
        self.backend = engine
        self.backend_description = engine.describe()
        self._session.runner.run(engine, workload, self.plan(), self.measurements.append, label=self.nodeid,
                                 min_window_s=self.settings.min_window)
        return EnergyResultView(self)

    def _workload_from_marker(self) -> Workload:
        fields = dict(self.settings.workload)
        missing = [name for name in ("input_tokens", "output_tokens") if name not in fields]
        if missing:
            raise EnergyUsageError(
                f"{self.nodeid}: energy.run() needs a Workload, or @pytest.mark.energy with "
                + " and ".join(missing)
            )
        return Workload(**fields)


class EnergyResultView:
    """What energy.run() returns: the test's samples so far and their median, for extra assertions."""

    def __init__(self, fixture: EnergyFixture) -> None:
        self._fixture = fixture

    @property
    def measurements(self) -> list[Measurement]:
        return [m for m in self._fixture.measurements if not m.warmup]

    @property
    def samples(self) -> list[float]:
        return self._fixture.samples

    @property
    def joules_per_token(self) -> float:
        import statistics

        return statistics.median(self.samples)

    joules_per_output_token = joules_per_token

    @property
    def latency(self) -> dict:
        return dict(self.measurements[-1].latency) if self.measurements else {}
