"""The workload runner's logic: warm-up once per shape, windows long enough, exact token counts, faults.

A stand-in backend that burns CPU for a set time drives it under the real CPU-time meter; the real backends
run through the runner in tests/test_backend_*.py and the plugin flow tests.
"""

import time

import pytest

from pytest_llm_energy import Workload
from pytest_llm_energy.core.errors import BackendError
from pytest_llm_energy.core.models import resolve_model
from pytest_llm_energy.plugin.backends.base import Backend, BackendOptions, Generation
from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter
from pytest_llm_energy.plugin.runner import WorkloadRunner
from pytest_llm_energy.plugin.trials import TrialPlan


class BurnBackend(Backend):
    """Generates nothing real: spins the CPU for `seconds` per call and reports the asked tokens."""

    name = "burn"

    def __init__(self, seconds=0.05, first_call_seconds=None, short_by=0, fail_on_call=None, error=None):
        super().__init__(resolve_model("tiny-llama"), BackendOptions())
        self.seconds, self.first_call_seconds = seconds, first_call_seconds
        self.short_by, self.fail_on_call, self.error = short_by, fail_on_call, error
        self.calls = 0

    def load(self):
        pass

    def prepare(self, workload):
        return workload

    def generate(self, workload):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise self.error
        seconds = self.first_call_seconds if self.calls == 1 and self.first_call_seconds else self.seconds
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass
        tokens = workload.total_output_tokens - self.short_by
        return Generation(tokens, workload.total_input_tokens, workload.batch_size)


def plan(trials=3, warmup=1):
    return TrialPlan(warmup=warmup, trials=trials, max_trials=trials, time_budget=None)


SMALL = Workload(16, 8, 2)


def run(backend, workload=SMALL, trials=3, warmup=1, min_window=0.2, runner=None):
    runner = runner or WorkloadRunner(CpuTimeMeter())
    measured = []
    runner.run(backend, workload, plan(trials, warmup), measured.append, min_window_s=min_window)
    return runner, measured


def test_warm_up_then_windows_at_least_the_minimum_with_exact_token_counts():
    backend = BurnBackend(seconds=0.03, first_call_seconds=0.3)  # a slow first call, as on a GPU
    _, measured = run(backend, min_window=0.2)
    warmups = [m for m in measured if m.warmup]
    trials = [m for m in measured if not m.warmup]
    assert len(warmups) == 1 and len(trials) == 3
    assert all(m.seconds >= 0.2 for m in trials)  # planned from a warm run, not the slow first one
    assert all(m.output_tokens == m.repeats * 16 for m in trials) and trials[0].repeats >= 7
    assert all(m.estimated and m.meter == "cpu-time" for m in measured)


def test_a_shape_is_warmed_once_per_session_per_loaded_backend():
    backend = BurnBackend()
    runner, first = run(backend)
    _, second = run(backend, runner=runner)  # the same loaded backend and shape: already warm
    assert sum(m.warmup for m in first) == 1 and sum(m.warmup for m in second) == 0
    _, other_shape = run(backend, workload=Workload(32, 8, 2), runner=runner)
    assert sum(m.warmup for m in other_shape) == 1


def test_a_backend_that_yields_other_token_counts_is_an_error():
    with pytest.raises(BackendError, match="produced 15 output tokens .* expected exactly 16"):
        run(BurnBackend(short_by=1))


def test_after_a_bin_fails_every_shape_warms_up_again():
    # the hf backend resets compiled state after a failure: a shape warm before it would recompile in a trial
    backend = BurnBackend()
    runner, _ = run(backend)
    backend.fail_on_call, backend.error = backend.calls + 1, RuntimeError("capture failed")
    with pytest.raises(BackendError):
        run(backend, workload=Workload(32, 8, 2), runner=runner)
    _, again = run(backend, runner=runner)
    assert sum(m.warmup for m in again) == 1


def test_out_of_memory_in_one_bin_becomes_a_clear_backend_error():
    class OutOfMemoryError(RuntimeError):
        pass

    with pytest.raises(BackendError, match="out of memory running in16-out8-b2-greedy on burn"):
        run(BurnBackend(fail_on_call=3, error=OutOfMemoryError("CUDA out of memory")))


def test_any_other_crash_names_the_backend_and_the_bin():
    with pytest.raises(BackendError, match="burn failed on in16-out8-b2-greedy: ValueError: boom"):
        run(BurnBackend(fail_on_call=1, error=ValueError("boom")))


def test_a_crash_without_a_message_says_where_it_was_raised():
    # as a bare `assert` inside torch's CUDA-graph trees read: "AssertionError: " and nothing to go on
    with pytest.raises(BackendError, match=r"burn failed on in16-out8-b2-greedy: AssertionError in generate "
                                           r"\(tests/test_runner.py:\d+\)$"):
        run(BurnBackend(fail_on_call=1, error=AssertionError()))


class SpeedingUpBackend(BurnBackend):
    """Each call is faster than the last: planned windows come out short, as when a GPU's clocks rise."""

    def generate(self, workload):
        self.seconds = max(0.005, self.seconds * 0.8)
        return super().generate(workload)


def test_a_trial_window_under_the_minimum_is_measured_again_not_compared():
    _, measured = run(SpeedingUpBackend(seconds=0.06), trials=3, min_window=0.3)
    compared = [m for m in measured if not m.warmup]
    assert len(compared) == 3 and all(m.seconds >= 0.3 for m in compared)
    assert any(m.seconds < 0.3 and m.repeats > 1 for m in measured if m.warmup)  # kept, not compared


def test_windows_are_planned_from_the_fastest_warm_call():
    runner, _ = run(BurnBackend(seconds=0.03, first_call_seconds=0.3), trials=2, min_window=0.3)
    ((_, seconds_per_call),) = runner._seconds_per_run.items()
    assert seconds_per_call < 0.1  # the slow first call was a warm-up, not the plan
