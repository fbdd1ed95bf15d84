"""Judgement: a run of a test against its baseline entry, for a test run and for `llm-energy diff` alike.

What is judged here and nowhere else: whether the baseline may be compared at all (another workload's is
set aside, another GPU model's refused unless allowed), what the comparison knows about noise (the priors
the settings give, and the scatter of the other tests' recorded runs in the same baselines set), the
decision of the rule in `stats`, which adds card-to-card noise when this run's GPUs are none of the
baseline's (and compares per unit of each card's reference figure where runs from several cards meet), and
the flags and notes that say so beside the number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from . import fingerprint as stack
from .baseline import SHARED_CPU, BaselineEntry, entry_workload, workload_changed
from .cells import card_adjusted_note
from .reference import card_scale
from .stats import Decision, Evidence, Prior, Run, Verdict, compare, other_cards, should_stop
from .workload import Workload


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
    flags: tuple[str, ...] = ()  # what the comparison says of itself beside the number (other-gpu, ...)
    notes: tuple[str, ...] = ()
    baseline_joules_per_token: float | None = None  # what it was compared with; None where nothing was

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
    decision = compare(runs, current, tolerance, confidence=confidence, prior=cpu_prior(prior, on_cpu),
                       evidence=others, run_to_run=run_to_run)
    return Judgement.of(decision, current, stack_changes=changes, hardware_changes=hardware, refused=refused,
                        other_gpus=other_gpus(runs, current))


def judge_test(entry: BaselineEntry | None, samples: Sequence[float], *, gpus: frozenset[str],
               reference: Mapping | None, workload: Workload | None, tolerance: float, confidence: float,
               prior: Prior, evidence: Evidence, fingerprint: dict | None, on_cpu: bool,
               allow_hardware_change: bool, shared_cpu: int = 0) -> Judgement:
    """A test run's samples against its baseline entry, whole: which entry may be compared, the verdict, and
    the flags and notes the result carries for it.

    `reference` is this run's card reference (`reference.py`), `shared_cpu` how many xdist workers shared
    the CPU under an estimating meter (0: none).
    """
    flags, notes = [], []
    if shared_cpu:
        flags.append(SHARED_CPU)
        notes.append(f"estimated while {shared_cpu} xdist workers shared the CPU: inflated; compare only "
                     "with runs of the same -n")
    if workload_changed(entry, workload.to_dict() if workload else None):
        # another workload's baseline says nothing about this one
        notes.append(f"workload changed since the baseline ({Workload.from_dict(entry_workload(entry)).label}"
                     f" -> {workload.label}): not compared; --energy-update-baselines records it afresh")
        flags.append("workload-changed")
        entry = None
    # The entry's workload picks the card's figure for both sides (reference.card_scale).
    current = Run.of(samples, gpus, card_scale=card_scale(reference, entry_workload(entry)))
    judgement = judge(entry, current, tolerance=tolerance, confidence=confidence, prior=prior, evidence=evidence,
                      fingerprint=fingerprint, on_cpu=on_cpu, allow_hardware_change=allow_hardware_change)
    decision = judgement.decision
    if judgement.other_gpus:
        flags.append("other-gpu")
        notes.append(f"baseline measured on other GPUs ({', '.join(judgement.other_gpus)}): judged with "
                     f"{decision.noise.card:.1%} card-to-card noise (--energy-card-noise, and cards recorded in "
                     "the set)")
    if decision.card_adjustment is not None:
        flags.append("card-adjusted")
        notes.append(card_adjusted_note(decision.card_adjustment))
    return replace(judgement, flags=tuple(flags), notes=tuple(notes),
                   baseline_joules_per_token=entry.joules_per_token if entry else None)


def other_gpus(runs: Sequence[Run] | None, current: Run) -> tuple[str, ...]:
    """The GPUs a baseline's runs came from, when this run's GPUs are none of them (both sides named)."""
    return tuple(sorted({gpu for card in other_cards(runs, current) for gpu in card}))


def cpu_prior(prior: Prior, on_cpu: bool) -> Prior:
    """The prior as a CPU meter needs it: its windows move with the machine's other work, which moves whole
    runs too, so runs are not assumed steadier than the trials (`Prior.at_least_trials`), unless the user
    stated how steady they are."""
    return replace(prior, at_least_trials=True) if on_cpu and not prior.stated else prior


def settled(entry: BaselineEntry | None, *, tolerance: float, prior: Prior, evidence: Evidence,
            gpus: frozenset[str], card_scale: float | None, min_trials: int, max_trials: int,
            confidence: float, on_cpu: bool = False) -> Callable[[Sequence[float]], bool]:
    """For adaptive trials: whether the samples so far already decide, by the rule the judge will use."""
    runs = entry.runs if entry else None
    others = evidence.besides(runs)
    prior = cpu_prior(prior, on_cpu)

    def decision_at(samples: Sequence[float], level: float) -> Decision:
        return compare(runs, Run.of(samples, gpus, card_scale=card_scale), tolerance, confidence=level,
                       prior=prior, evidence=others)

    def decided(samples: Sequence[float]) -> bool:
        return should_stop(decision_at, samples, min_trials=min_trials, max_trials=max_trials,
                           confidence=confidence)

    return decided
