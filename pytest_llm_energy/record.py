"""A test's energy result as a plain value: samples, summary, decision, and where it came from.

A record crosses process boundaries (xdist workers send it to the controller inside the test report),
so it is built once in the process that ran the test and travels as a JSON-safe dict.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .judge import Judgement
from .measurement import Measurement
from .report import card_adjusted_note
from .stats import summarize


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def measurement_summary(measurements: Sequence[Measurement]) -> dict:
    """Medians over the compared windows of every quantity a reader may want beside J per token."""
    if not measurements:
        return {}
    first = measurements[0]
    devices = {}
    for m in measurements:
        for device in m.devices:
            devices.setdefault((device.index, device.uuid, device.name), []).append(device.joules)
    return {
        "joules": _median([m.joules for m in measurements]),
        "seconds": _median([m.seconds for m in measurements]),
        "average_watts": _median([m.average_watts for m in measurements]),
        # How GPU-bound the windows were: power against the limit, and the share of time kernels ran.
        "power_limit_watts": first.power_limit_watts,
        "power_share": _median_known([m.power_share for m in measurements]),
        "busy_share": _median_known([m.busy_share for m in measurements]),
        "idle_watts": first.idle_watts,
        "joules_above_idle": _median([m.joules_above_idle for m in measurements]),
        "joules_per_total_token": _median([m.joules_per_total_token for m in measurements]),
        "joules_per_request": _median([m.joules_per_request for m in measurements]) if first.requests else None,
        "output_tokens": first.output_tokens,
        "input_tokens": first.input_tokens,
        "requests": first.requests,
        "repeats": first.repeats,
        "devices": [
            {"index": index, "uuid": uuid, "name": name, "joules": _median(values)}
            for (index, uuid, name), values in sorted(devices.items())
        ],
        "latency": _median_latency(measurements),
    }


def _median_known(values: Sequence[float | None]) -> float | None:
    return _median([value for value in values if value is not None])


def _median_latency(measurements: Sequence[Measurement]) -> dict:
    keys = sorted({key for m in measurements for key in m.latency})
    return {key: _median([m.latency[key] for m in measurements if key in m.latency]) for key in keys}


def build_record(
    *, nodeid: str, measurements: Sequence[Measurement], judgement: Judgement,
    baseline_joules_per_token: float | None, workload: dict | None, backend: dict | None, meter: str,
    estimated: bool, notes: Sequence[str] = (), flags: Sequence[str] = (),
) -> dict:
    """The JSON object of one test in the report (the contract's fields first)."""
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
    flags, notes = sorted(flags), sorted(notes)
    return {
        "nodeid": nodeid,
        "joules_per_token": summary.median,
        "baseline_joules_per_token": baseline_joules_per_token,
        "delta": decision.delta,
        "card_adjustment": decision.card_adjustment,
        "verdict": decision.verdict,
        "samples": samples,
        "unit": "J per output token",
        "ci_low": decision.ci_low,
        "ci_high": decision.ci_high,
        "p_value": decision.p_value,
        "detectable": decision.detectable,
        "too_noisy": decision.too_noisy,
        "tolerance": decision.tolerance,
        "confidence": decision.confidence,
        "run_noise": noise.run if noise else None,  # the spreads the verdict used, each level
        "card_noise": noise.card if noise else None,  # 0 where every recorded run came from this card
        "noise": noise.to_dict() if noise else None,
        "runs": decision.runs,  # recorded runs in the baseline
        "run": judgement.run.to_dict(),  # this run, as a baseline update records it
        "baseline_gpus": list(judgement.other_gpus),
        "reason": decision.reason,
        "refused": judgement.refused,
        "robust_cv": summary.robust_cv,
        "outliers": list(summary.outliers),
        "warmup_samples": [m.joules_per_output_token for m in warmups],
        "meter": meter,
        "estimated": estimated,
        "flags": flags,
        "notes": notes,
        "measurement": measurement_summary(compared),
        "workload": workload,
        "backend": backend,
        "stack_changes": [
            {"component": c.component, "baseline": c.baseline, "current": c.current}
            for c in judgement.stack_changes
        ],
        "decision": decision.to_dict(),
    }


def baseline_entry(record: dict, fingerprint: dict, git_commit: str | None, recorded_at: str) -> dict:
    """What a baseline file keeps of a record: enough to compare, to explain, and to estimate a workload.

    It holds this run only; the store adds the runs recorded before it (`baseline.with_history`).
    """
    return {
        "joules_per_token": record["joules_per_token"],
        "runs": [{**record["run"], "recorded_at": recorded_at, "git_commit": git_commit}],
        "samples": record["samples"],
        "unit": record["unit"],
        "robust_cv": record["robust_cv"],
        "meter": record["meter"],
        "estimated": record["estimated"],
        # facts of the comparison, not of the data
        "flags": [flag for flag in record["flags"] if flag not in ("other-gpu", "workload-changed")],
        "measurement": record["measurement"],
        "workload": record["workload"],
        "backend": record["backend"],
        "fingerprint": fingerprint,
        "git_commit": git_commit,
        "recorded_at": recorded_at,
    }
