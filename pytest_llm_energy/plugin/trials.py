"""How many trials a test takes, and the one loop that takes them (for the fixture and the runner alike)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

ADAPTIVE_CAP = 1000  # a time budget without --energy-max-trials still stops somewhere


@dataclass(frozen=True)
class TrialPlan:
    """At least `trials` trials; with adaptive settings more, until `settled` says the samples decide."""

    warmup: int
    trials: int
    max_trials: int
    time_budget: float | None = None
    # Adaptive trials: whether the samples so far already decide against the baseline (the judge says).
    settled: Callable[[Sequence[float]], bool] | None = None

    @property
    def cap(self) -> int:
        if self.time_budget is not None and self.max_trials <= self.trials:
            return ADAPTIVE_CAP
        return max(self.max_trials, self.trials)

    def wants_more(self, samples: Sequence[float], elapsed_s: float) -> bool:
        if len(samples) < self.trials:
            return True
        if len(samples) >= self.cap:
            return False
        if self.time_budget is not None and elapsed_s >= self.time_budget:
            return False
        return self.settled is None or not self.settled(samples)

    def describe(self, done: int) -> str:
        return f"{done}/{self.trials}" if self.cap == self.trials else f"{done}/{self.trials}..{self.cap}"

    def run(self, samples: Callable[[], Sequence[float]], progress: Callable[[str], None],
            label: str = "") -> Iterator[int]:
        """Yield the index of each trial to take while the plan wants more; `samples()` reads them so far."""
        started = time.perf_counter()
        while self.wants_more(taken := samples(), time.perf_counter() - started):
            progress(f"{label} trial {self.describe(len(taken) + 1)}".strip())
            yield len(taken)
