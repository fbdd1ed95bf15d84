"""The `energy` fixture: measure any code with `energy.measure()`, or a binned workload with `energy.run()`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .config import TestSettings
from .errors import EnergyUsageError
from .measurement import Measurement
from .runner import TrialPlan, sync_cuda
from .workload import Workload

if TYPE_CHECKING:
    from .session import EnergySession


@dataclass(frozen=True)
class Trial:
    """One pass of `for trial in energy.trials()`: warm-up passes come first and are not compared."""

    index: int
    warmup: bool


class MeasureWindow:
    """What `with energy.measure() as m:` yields. Set the token counts inside; read the result after."""

    def __init__(self, output_tokens: int | None, input_tokens: int, requests: int) -> None:
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.requests = requests
        self.measurement: Measurement | None = None

    def __getattr__(self, name: str) -> Any:
        # Result attributes (joules, joules_per_token, ...) come from the finished measurement.
        measurement = self.__dict__.get("measurement")
        if measurement is None:
            raise AttributeError(
                f"{name!r} is known only after the `with energy.measure()` block has ended"
            )
        return getattr(measurement, name)


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
        baseline = self._session.baseline_samples(self.nodeid)
        s = self.settings
        return TrialPlan(s.warmup, s.trials, s.max_trials, s.time_budget, s.tolerance, s.confidence, baseline,
                         self._session.trial_noise(self.nodeid, s))

    # -- energy.measure() ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def measure(self, output_tokens: int | None = None, input_tokens: int = 0,
                requests: int = 0) -> Iterator[MeasureWindow]:
        """Measure the energy of the code in the block. Set `m.output_tokens` before the block ends."""
        meter = self._session.ready_meter()
        window = MeasureWindow(output_tokens, input_tokens, requests)
        sync_cuda()
        start = meter.begin()
        try:
            yield window
            sync_cuda()
        except BaseException:
            integrator = getattr(start, "integrator", None)
            if integrator is not None:
                integrator.stop()
            raise
        reading = meter.end(start)
        tokens = window.output_tokens
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise EnergyUsageError(
                "energy.measure(): set m.output_tokens to the number of generated tokens (a positive "
                f"integer) inside the with block, got {tokens!r}"
            )
        window.measurement = Measurement.from_reading(
            reading, output_tokens=tokens, input_tokens=int(window.input_tokens or 0),
            requests=int(window.requests or 0), warmup=self._warming,
        )
        self.measurements.append(window.measurement)

    # -- energy.trials() -------------------------------------------------------------------------------
    def trials(self) -> Iterator[Trial]:
        """Loop over warm-up passes, then trials (adaptive when the settings allow), measuring once each."""
        self.drives_own_trials = True
        plan = self.plan()
        for index in range(plan.warmup):
            self._warming = True
            yield Trial(index, warmup=True)
        self._warming = False
        started = time.perf_counter()
        index = 0
        while plan.wants_more(self.samples, time.perf_counter() - started):
            self._session.progress(f"{self.nodeid} trial {plan.describe(index + 1)}")
            yield Trial(index, warmup=False)
            index += 1

    # -- body repetition (--energy-trials with a body that measures once) ------------------------------
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
        started = time.perf_counter()
        while plan.wants_more(self.samples, time.perf_counter() - started):
            self._session.progress(f"{self.nodeid} trial {plan.describe(len(self.samples) + 1)}")
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
        engine = self._session.backend_for(
            backend or self.settings.backend, model or self.settings.model,
            {**self.settings.backend_options, **options}, workload,
        )
        self.workload = workload
        self.backend = engine
        self.backend_description = engine.describe()
        self._session.ready_meter()
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
