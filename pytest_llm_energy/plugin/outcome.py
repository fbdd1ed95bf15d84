"""Whether a test's energy fails it, and the message it fails with: one rule for a baseline run and A/B."""

from __future__ import annotations

from tabulate import tabulate

from ..core.cells import finite, interval, joules, percent, runs_text
from ..core.measurement import meter_label
from ..core.result import PAIRED, TestResult
from ..core.stats import Noise, Verdict


def noise_text(noise: Noise | None) -> str:
    """'trials 1.2%, runs 3.0% (prior), cards 5.0%': the spread the verdict used at each level."""
    if not noise:
        return "-"
    if noise.run_source == "none":  # A/B turn about: both arms share every drift of the run
        return f"trials {noise.trial:.1%}, runs: none (one run, turn about)"
    text = f"trials {noise.trial:.1%}, runs {noise.run:.1%} ({noise.run_source})"
    return text + (f", cards {noise.card:.1%}" if noise.card else "")


def failure_message(result: TestResult, *, strict_reason: str | None = None, accept: str | None = None) -> str:
    """What a failing test prints: the numbers that failed it, in a small table, then how to accept them."""
    ab = result.arm is not None and result.arm.name == PAIRED
    decision, judgement = result.decision, result.judgement
    adjustment = decision.card_adjustment
    title = strict_reason or (
        f"energy regressed: J per output token{' per unit of the card reference' if adjustment else ''} "
        f"{percent(decision.delta)} against {'arm A' if ab else 'the baseline'} "
        f"(tolerance {decision.tolerance:.0%})"
    )
    table = [
        [f"{'arm B' if ab else 'current'} J/token (median)", joules(result.joules_per_token)],
        ["arm A J/token (median, turn about)" if ab else f"baseline J/token ({runs_text(decision.runs)})",
         joules(result.baseline_joules_per_token)],
        ["delta (B over A, pair by pair)" if decision.extras.get("pairs") else "delta", percent(decision.delta)],
        *([["card adjustment (this card's reference figure on the baseline runs')", percent(adjustment - 1)]]
          if adjustment else []),
        [f"{decision.confidence:.0%} CI of the ratio", interval(decision.ci_low, decision.ci_high)],
        ["p-value", f"{decision.p_value:.2g}" if finite(decision.p_value) else "-"],
        ["tolerance", f"{decision.tolerance:.0%}"],
        ["noise (spread of each level)", noise_text(decision.noise)],
        ["rise caught 80% of the time", f"{judgement.detectable:.1%}" if finite(judgement.detectable) else "none"],
        [f"trials ({'B / A' if ab else 'current / baseline'})",
         f"{len(result.samples)} / {decision.n_baseline if decision.n_baseline is not None else '-'}"],
        ["meter", meter_label(result.meter, result.estimated, say_measured=False)],
    ]
    if judgement.stack_changes:
        table.append(["stack changes", "; ".join(f"{c.component} {c.baseline} -> {c.current}"
                                                  for c in judgement.stack_changes)])
    text = f"{title}\n{decision.reason or ''}\n" + tabulate(table, tablefmt="simple", disable_numparse=True)
    return text + (f"\nif this change is intended, record it as the new baseline:\n  {accept}" if accept else "")


def outcome(result: TestResult, *, strict: bool, accept: str | None = None) -> str | None:
    """What the test fails with on its energy, or None where its energy passes it.

    A comparison that could not be made fails with why; a regression with its numbers; under --energy-strict
    also a verdict that shows nothing (new, inconclusive). `accept` is the command that records the run as
    the baseline, for the message to end with.
    """
    if result.refused:
        return result.refused
    if result.verdict == Verdict.REGRESSED:
        return failure_message(result, accept=accept)
    if strict and result.verdict in (Verdict.NEW, Verdict.INCONCLUSIVE):
        reason = f"energy verdict {str(result.verdict)!r} fails under --energy-strict"
        return failure_message(result, strict_reason=reason, accept=accept)
    return None
