"""A test's result built from its windows and judgement, and what a baseline entry keeps of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .cells import card_adjusted_note
from .judge import Judgement
from .measurement import Measurement
from .result import UNIT, TestResult, WindowSummary
from .stats import summarize


def build_record(
    *, nodeid: str, measurements: Sequence[Measurement], judgement: Judgement,
    baseline_joules_per_token: float | None, workload: dict | None, backend: dict | None, meter: str,
    estimated: bool, notes: Sequence[str] = (), flags: Sequence[str] = (), reference: Mapping | None = None,
) -> TestResult:
    """The result of one test (its compared windows summarised, flags and notes of windows and judgement)."""
    decision = judgement.decision
    noise = decision.noise
    compared = [m for m in measurements if not m.warmup]
    warmups = [m for m in measurements if m.warmup]
    samples = [m.joules_per_output_token for m in compared]
    summary = summarize(samples)
    flags = {flag for m in compared for flag in m.flags} | set(flags)
    notes = {note for m in compared for note in m.notes} | set(notes)
    if judgement.other_gpus:
        flags.add("other-gpu")
        notes.add(f"baseline measured on other GPUs ({', '.join(judgement.other_gpus)}): judged with "
                  f"{noise.card:.1%} card-to-card noise (--energy-card-noise, and cards recorded in the set)")
    if decision.card_adjustment is not None:
        flags.add("card-adjusted")
        notes.add(card_adjusted_note(decision.card_adjustment))
    return TestResult(
        nodeid=nodeid, samples=tuple(samples), joules_per_token=summary.median,
        baseline_joules_per_token=baseline_joules_per_token, judgement=judgement,
        robust_cv=summary.robust_cv, outliers=summary.outliers,
        warmup_samples=tuple(m.joules_per_output_token for m in warmups), meter=meter, estimated=estimated,
        flags=tuple(sorted(flags)), notes=tuple(sorted(notes)), windows=WindowSummary.of(compared),
        workload=workload, backend=backend, reference=reference,
    )


def baseline_entry(result: TestResult, fingerprint: dict, git_commit: str | None, recorded_at: str) -> dict:
    """What a baseline file keeps of a result: enough to compare, to explain, and to estimate a workload.

    It holds this run only; the store adds the runs recorded before it (`baseline.with_history`).
    """
    run = result.judgement.run.to_dict()
    if result.reference:
        run["reference"] = result.reference
    return {
        "joules_per_token": result.joules_per_token,
        "runs": [{**run, "recorded_at": recorded_at, "git_commit": git_commit}],
        "samples": list(result.samples),
        "unit": UNIT,
        "robust_cv": result.robust_cv,
        "meter": result.meter,
        "estimated": result.estimated,
        # facts of the comparison, not of the data
        "flags": [flag for flag in result.flags if flag not in ("other-gpu", "workload-changed")],
        "measurement": result.windows.to_dict() if result.windows else {},
        "workload": result.workload,
        "backend": result.backend,
        "fingerprint": fingerprint,
        "git_commit": git_commit,
        "recorded_at": recorded_at,
    }
