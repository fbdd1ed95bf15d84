"""Judgement: a run of a test against its baseline entry, for a test run and for `llm-energy diff` alike.

What is judged here and nowhere else: whether the baseline may be compared at all (another GPU model is
refused unless allowed), what the comparison knows about noise (the priors the settings give, and the
scatter of the other tests' recorded runs in the same baselines set), and the decision of the rule in
`stats`, which adds card-to-card noise when this run's GPUs are none of the baseline's (and compares per
unit of each card's reference figure where runs from several cards meet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import fingerprint as stack
from .baseline import BaselineEntry
from .stats import Decision, Evidence, Prior, Run, Verdict, compare, other_cards, should_stop


@dataclass(frozen=True)
class Judgement:
    """The decision on one run, with why it was (or was not) compared as it was.

    `verdict`, `detectable` and `too_noisy` are what the result says; they are the decision's own unless a
    comparison could not be made as the rule made it (A/B arms that measured different work, or one arm
    that gave no result: `ab.py`).
    """

    decision: Decision
    run: Run  # this run, as a baseline update would record it
    stack_changes: tuple[stack.Change, ...]
    hardware_changes: tuple[stack.Change, ...]
    refused: str | None  # why the baseline was not compared (another GPU model), or None
    other_gpus: tuple[str, ...]  # the baseline's GPUs, when this run's are none of them
    verdict: Verdict
    detectable: float | None
    too_noisy: bool
    refused_note: str | None = None  # A/B: what the notes cell says in place of a refusal's whole text

    @classmethod
    def of(cls, decision: Decision, run: Run, *, stack_changes: Sequence[stack.Change] = (),
           hardware_changes: Sequence[stack.Change] = (), refused: str | None = None,
           other_gpus: Sequence[str] = ()) -> Judgement:
        """The judgement that says what its decision says."""
        return cls(decision, run, tuple(stack_changes), tuple(hardware_changes), refused, tuple(other_gpus),
                   decision.verdict, decision.detectable, decision.too_noisy)


def judge(entry: BaselineEntry | None, current: Run, *, tolerance: float, confidence: float, prior: Prior,
          evidence: Evidence, fingerprint: dict | None, on_cpu: bool, allow_hardware_change: bool,
          run_to_run: bool = True) -> Judgement:
    """The verdict of `current` (a run measured with `fingerprint`) against `entry`.

    `evidence` is the scatter of recorded runs over the entry's whole baselines set; the entry's own run part
    is taken out here (`Evidence.besides`), so its runs are weighed against the rest and not counted twice.
    """
    changes = tuple(stack.changes(entry.fingerprint if entry else None, fingerprint))
    hardware = tuple(stack.hardware_changed(list(changes), on_cpu=on_cpu))
    refused = None
    if hardware and not allow_hardware_change:
        refused = (
            "baseline was recorded on other hardware (" + "; ".join(map(str, hardware)) + "); not "
            "compared. Record a baseline here with --energy-update-baselines, or compare anyway with "
            "--energy-allow-hardware-change"
        )
    runs = entry.runs if entry else None
    others = evidence.besides(runs)
    decision = compare(runs, current, tolerance, confidence=confidence, prior=prior, evidence=others,
                       run_to_run=run_to_run)
    return Judgement.of(decision, current, stack_changes=changes, hardware_changes=hardware, refused=refused,
                        other_gpus=other_gpus(runs, current))


def other_gpus(runs: Sequence[Run] | None, current: Run) -> tuple[str, ...]:
    """The GPUs a baseline's runs came from, when this run's GPUs are none of them (both sides named)."""
    return tuple(sorted({gpu for card in other_cards(runs, current) for gpu in card}))


def settled(entry: BaselineEntry | None, *, tolerance: float, prior: Prior, evidence: Evidence,
            gpus: frozenset[str], card_scale: float | None, min_trials: int, max_trials: int,
            confidence: float) -> Callable[[Sequence[float]], bool]:
    """For adaptive trials: whether the samples so far already decide, by the rule the judge will use."""
    runs = entry.runs if entry else None
    others = evidence.besides(runs)

    def decision_at(samples: Sequence[float], level: float) -> Decision:
        return compare(runs, Run.of(samples, gpus, card_scale=card_scale), tolerance, confidence=level,
                       prior=prior, evidence=others)

    def decided(samples: Sequence[float]) -> bool:
        return should_stop(decision_at, samples, min_trials=min_trials, max_trials=max_trials,
                           confidence=confidence)

    return decided
