"""Judgement: a test's samples against its baseline entry, for a test run and for `llm-energy diff` alike.

What is judged here and nowhere else: whether the baseline may be compared at all (another GPU model is
refused unless allowed), which noise applies (the run noise, and card-to-card noise when the baseline was
measured on other GPUs of the model), and the decision of the rule in `stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import fingerprint as stack
from .baseline import BaselineEntry
from .errors import EnergyUsageError
from .stats import Decision, combine_noise, decide, should_stop


@dataclass(frozen=True)
class Noise:
    """The noise a comparison assumes beyond its trials: run to run, and card to card on other GPUs."""

    run: float = 0.0
    card: float = 0.0


@dataclass(frozen=True)
class Judgement:
    """The decision on one test, with why it was (or was not) compared as it was."""

    decision: Decision
    stack_changes: tuple[stack.Change, ...]
    hardware_changes: tuple[stack.Change, ...]
    refused: str | None  # why the baseline was not compared (another GPU model), or None
    other_gpus: tuple[str, ...]  # the baseline's GPUs, when they are not the ones measured now
    run_noise: float  # the test's own setting
    card_noise: float  # the card-to-card noise applied: 0 unless other_gpus


def other_gpus(entry: BaselineEntry | None, current_gpus: frozenset[str]) -> tuple[str, ...]:
    """The GPUs (UUIDs) a baseline was measured on, when both sides name theirs and they differ."""
    if entry is None:
        return ()
    before = entry.gpu_uuids
    return tuple(sorted(before)) if before and current_gpus and before != current_gpus else ()


def judged_noise(noise: Noise, on_other_gpus: bool) -> float:
    """The run noise a test is judged with: its own, combined with card-to-card spread on other GPUs."""
    if not on_other_gpus:
        return noise.run
    try:
        return combine_noise(noise.run, noise.card)
    except ValueError as error:
        raise EnergyUsageError(f"run_noise and card_noise: {error}; lower one of them") from None


def judge(entry: BaselineEntry | None, samples: Sequence[float], *, tolerance: float, confidence: float,
          noise: Noise, fingerprint: dict | None, gpus: frozenset[str], on_cpu: bool,
          allow_hardware_change: bool) -> Judgement:
    """The verdict of `samples` (this run, on `gpus` with `fingerprint`) against `entry`."""
    changes = tuple(stack.changes(entry.fingerprint if entry else None, fingerprint))
    hardware = tuple(stack.hardware_changed(list(changes), on_cpu=on_cpu))
    refused = None
    if hardware and not allow_hardware_change:
        refused = (
            "baseline was recorded on other hardware (" + "; ".join(map(str, hardware)) + "); not "
            "compared. Record a baseline here with --energy-update-baselines, or compare anyway with "
            "--energy-allow-hardware-change"
        )
    others = () if on_cpu else other_gpus(entry, gpus)
    decision = decide(entry.samples if entry else None, samples, tolerance, confidence=confidence,
                      run_noise=judged_noise(noise, bool(others)))
    return Judgement(decision, changes, hardware, refused, others, noise.run, noise.card if others else 0.0)


def settled(entry: BaselineEntry | None, *, tolerance: float, confidence: float, noise: Noise,
            gpus: frozenset[str], on_cpu: bool, min_trials: int, max_trials: int,
            ) -> Callable[[Sequence[float]], bool]:
    """For adaptive trials: whether the samples so far already decide, with the noise the judge will use."""
    others = () if on_cpu else other_gpus(entry, gpus)
    run_noise = judged_noise(noise, bool(others))
    baseline = entry.samples if entry else None

    def decided(samples: Sequence[float]) -> bool:
        return should_stop(baseline, samples, tolerance, confidence=confidence, min_trials=min_trials,
                           max_trials=max_trials, run_noise=run_noise)

    return decided
