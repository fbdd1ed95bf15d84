"""A test's energy result as one frozen value, and its JSON form: a record of the report, and what xdist carries.

The process that ran the test builds the value once (`session`); every reader takes it typed. It becomes a
dict only where it leaves the process (an xdist worker's test report) or goes into a file (the JSON report,
a baseline entry), and `to_dict` / `from_dict` here are the one place that knows the record's keys.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from . import fingerprint as stack
from .judge import Judgement
from .measurement import Measurement
from .stats import Decision, Run, Verdict, summarize

UNIT = "J per output token"
PAIRED = "B against A"  # the arm of an A/B pair's result: arm B judged against arm A


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _median_known(values: Sequence[float | None]) -> float | None:
    return _median([value for value in values if value is not None])


@dataclass(frozen=True)
class DeviceJoules:
    """One device's median joules over a test's compared windows."""

    index: int
    uuid: str
    name: str
    joules: float | None


@dataclass(frozen=True)
class WindowSummary:
    """Medians over the compared windows of every quantity a reader may want beside J per token."""

    joules: float | None = None
    seconds: float | None = None
    average_watts: float | None = None
    # How GPU-bound the windows were: power against the limit, and the share of time kernels ran.
    power_limit_watts: float | None = None
    power_share: float | None = None
    busy_share: float | None = None
    idle_watts: float | None = None
    joules_above_idle: float | None = None
    joules_per_total_token: float | None = None
    joules_per_request: float | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None
    requests: int | None = None
    repeats: int | None = None
    devices: tuple[DeviceJoules, ...] = ()
    latency: Mapping[str, float | None] | None = None

    @classmethod
    def of(cls, measurements: Sequence[Measurement]) -> WindowSummary | None:
        if not measurements:
            return None
        first = measurements[0]
        devices: dict[tuple, list[float]] = {}
        for m in measurements:
            for device in m.devices:
                devices.setdefault((device.index, device.uuid, device.name), []).append(device.joules)
        latency_keys = sorted({key for m in measurements for key in m.latency})
        return cls(
            joules=_median([m.joules for m in measurements]),
            seconds=_median([m.seconds for m in measurements]),
            average_watts=_median([m.average_watts for m in measurements]),
            power_limit_watts=first.power_limit_watts,
            power_share=_median_known([m.power_share for m in measurements]),
            busy_share=_median_known([m.busy_share for m in measurements]),
            idle_watts=first.idle_watts,
            joules_above_idle=_median([m.joules_above_idle for m in measurements]),
            joules_per_total_token=_median([m.joules_per_total_token for m in measurements]),
            joules_per_request=_median([m.joules_per_request for m in measurements]) if first.requests else None,
            output_tokens=first.output_tokens,
            input_tokens=first.input_tokens,
            requests=first.requests,
            repeats=first.repeats,
            devices=tuple(DeviceJoules(index, uuid, name, _median(values))
                          for (index, uuid, name), values in sorted(devices.items())),
            latency={key: _median([m.latency[key] for m in measurements if key in m.latency])
                     for key in latency_keys},
        )

    @property
    def tokens_per_call(self) -> float:
        """Output tokens of one call of the work (a window repeats short work)."""
        return (self.output_tokens or 0) / max(1, self.repeats or 0)

    def to_dict(self) -> dict:
        return {
            "joules": self.joules, "seconds": self.seconds, "average_watts": self.average_watts,
            "power_limit_watts": self.power_limit_watts, "power_share": self.power_share,
            "busy_share": self.busy_share, "idle_watts": self.idle_watts,
            "joules_above_idle": self.joules_above_idle, "joules_per_total_token": self.joules_per_total_token,
            "joules_per_request": self.joules_per_request, "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens, "requests": self.requests, "repeats": self.repeats,
            "devices": [{"index": d.index, "uuid": d.uuid, "name": d.name, "joules": d.joules}
                        for d in self.devices],
            "latency": dict(self.latency or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> WindowSummary:
        devices = tuple(DeviceJoules(d.get("index"), d.get("uuid"), d.get("name"), d.get("joules"))
                        for d in data.get("devices") or ())
        plain = {name: data.get(name) for name in cls.__dataclass_fields__ if name not in ("devices", "latency")}
        return cls(**plain, devices=devices, latency=data.get("latency"))


@dataclass(frozen=True)
class Arm:
    """In an A/B run: which arm a result is of (or PAIRED), the stack it ran, the GPU memory it held."""

    name: str | None
    stack: Mapping | None
    memory_gib: float | Mapping[str, float | None] | None  # an arm's own; a pair's, each arm's by name
    strict: bool | None  # whether the test runs under --energy-strict (the pair fails an inconclusive verdict)


@dataclass(frozen=True)
class ArmA:
    """What an A/B pair keeps of arm A's result, beside B's own numbers."""

    samples: tuple[float, ...]
    joules_per_token: float | None
    windows: WindowSummary | None
    backend: Mapping | None


@dataclass(frozen=True)
class TestResult:
    """One test's energy: what was measured, how it was judged, and what that says about it."""

    __test__ = False  # not a test class, for pytest, where a test module imports it

    nodeid: str
    samples: tuple[float, ...]  # J per output token of each compared window
    joules_per_token: float | None  # their median
    judgement: Judgement
    robust_cv: float | None
    outliers: tuple[int, ...]  # indices into samples, marked and never removed
    warmup_samples: tuple[float, ...]
    meter: str | None
    estimated: bool
    flags: tuple[str, ...]  # the windows' and the judgement's
    notes: tuple[str, ...]
    windows: WindowSummary | None  # the compared windows' medians
    workload: Mapping | None  # Workload.to_dict() of an energy.run() test
    backend: Mapping | None  # the backend's own description
    reference: Mapping | None = None  # the reference kernels of this run's card, kept with its run
    worker: str | None = None  # the xdist worker that measured it
    arm: Arm | None = None
    arm_a: ArmA | None = None  # a pair's arm A
    outcome: str | None = None  # the test's pytest outcome, once the controller has it

    @classmethod
    def of(cls, nodeid: str, measurements: Sequence[Measurement], judgement: Judgement, *, meter: str,
           estimated: bool, workload: Mapping | None, backend: Mapping | None,
           reference: Mapping | None = None) -> TestResult:
        """The result of one test's windows (warm-up ones kept apart) as its judgement judged them."""
        compared = [m for m in measurements if not m.warmup]
        samples = [m.joules_per_output_token for m in compared]
        summary = summarize(samples)
        return cls(
            nodeid=nodeid, samples=tuple(samples), joules_per_token=summary.median, judgement=judgement,
            robust_cv=summary.robust_cv, outliers=summary.outliers,
            warmup_samples=tuple(m.joules_per_output_token for m in measurements if m.warmup),
            meter=meter, estimated=estimated,
            flags=tuple(sorted({flag for m in compared for flag in m.flags} | set(judgement.flags))),
            notes=tuple(sorted({note for m in compared for note in m.notes} | set(judgement.notes))),
            windows=WindowSummary.of(compared), workload=workload, backend=backend, reference=reference,
        )

    # -- what readers ask ------------------------------------------------------------------------------
    @property
    def baseline_joules_per_token(self) -> float | None:
        return self.judgement.baseline_joules_per_token

    @property
    def decision(self) -> Decision:
        return self.judgement.decision

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict

    @property
    def refused(self) -> str | None:
        return self.judgement.refused

    @property
    def is_arm_half(self) -> bool:
        """One arm's half of an A/B pair, which the controller pairs before anything is judged."""
        return self.arm is not None and self.arm.name in ("A", "B")

    def with_outcome(self, outcome: str) -> TestResult:
        return replace(self, outcome=outcome)

    # -- the record's JSON form ------------------------------------------------------------------------
    def baseline_entry(self, fingerprint: dict, git_commit: str | None, recorded_at: str) -> dict:
        """What a baseline file keeps of the result: enough to compare, to explain, and to estimate a workload.

        It holds this run only; the store adds the runs recorded before it (`baseline.with_history`).
        """
        return {
            "joules_per_token": self.joules_per_token,
            "runs": [{**self._run(), "recorded_at": recorded_at, "git_commit": git_commit}],
            "samples": list(self.samples),
            "unit": UNIT,
            "robust_cv": self.robust_cv,
            "meter": self.meter,
            "estimated": self.estimated,
            # facts of the comparison, not of the data
            "flags": [flag for flag in self.flags if flag not in ("other-gpu", "workload-changed")],
            "measurement": self.windows.to_dict() if self.windows else {},
            "workload": self.workload,
            "backend": self.backend,
            "fingerprint": fingerprint,
            "git_commit": git_commit,
            "recorded_at": recorded_at,
        }

    def _run(self) -> dict:
        """This run as a baseline update records it, with its card's reference."""
        run = self.judgement.run.to_dict()
        if self.reference:
            run["reference"] = self.reference
        return run

    def to_dict(self) -> dict:
        """The record of the JSON report, its keys in the order the report has always written them."""
        judgement, decision = self.judgement, self.judgement.decision
        noise = decision.noise
        data = {
            "nodeid": self.nodeid,
            "joules_per_token": self.joules_per_token,
            "baseline_joules_per_token": self.baseline_joules_per_token,
            "delta": decision.delta,
            "card_adjustment": decision.card_adjustment,
            "verdict": str(judgement.verdict),
            "samples": list(self.samples),
            "unit": UNIT,
            "ci_low": decision.ci_low,
            "ci_high": decision.ci_high,
            "p_value": decision.p_value,
            "detectable": judgement.detectable,
            "too_noisy": judgement.too_noisy,
            "tolerance": decision.tolerance,
            "confidence": decision.confidence,
            "run_noise": noise.run if noise else None,  # the spreads the verdict used, each level
            "card_noise": noise.card if noise else None,  # 0 where every recorded run came from this card
            "noise": noise.to_dict() if noise else None,
            "runs": decision.runs,  # recorded runs in the baseline
            "run": self._run(),  # this run, as a baseline update records it
            "baseline_gpus": list(judgement.other_gpus),
            "reason": decision.reason,
            "refused": judgement.refused,
            "robust_cv": self.robust_cv,
            "outliers": list(self.outliers),
            "warmup_samples": list(self.warmup_samples),
            "meter": self.meter,
            "estimated": self.estimated,
            "flags": list(self.flags),
            "notes": list(self.notes),
            "measurement": self.windows.to_dict() if self.windows else {},
            "workload": self.workload,
            "backend": self.backend,
            "stack_changes": [{"component": c.component, "baseline": c.baseline, "current": c.current}
                              for c in judgement.stack_changes],
            "decision": decision.to_dict(),
        }
        if self.worker is not None:
            data["worker"] = self.worker
        if self.arm is not None:
            data.update(arm=self.arm.name, stack=self.arm.stack, memory_gib=self.arm.memory_gib,
                        strict=self.arm.strict)
        if self.arm_a is not None:
            arm_a = self.arm_a
            data["refused_note"] = judgement.refused_note
            data["arm_a"] = {"samples": list(arm_a.samples), "joules_per_token": arm_a.joules_per_token,
                             "measurement": arm_a.windows.to_dict() if arm_a.windows else {},
                             "backend": arm_a.backend}
        if self.outcome is not None:
            data["outcome"] = self.outcome
        if self.arm_a is None and judgement.refused_note is not None:  # an arm's half that found no pair
            data["refused_note"] = judgement.refused_note
        return data

    def junit_properties(self) -> list[tuple[str, object]]:
        """The result as JUnit XML properties; an A/B arm's half has no verdict of its own (the pair has)."""
        decision, arm = self.decision, self.arm.name if self.arm else None
        if self.is_arm_half:
            properties = {"joules_per_token": self.joules_per_token, "meter": self.meter, "arm": arm}
        else:
            properties = {
                "joules_per_token": self.joules_per_token, "baseline_joules_per_token": self.baseline_joules_per_token,
                "delta": decision.delta, "card_adjustment": decision.card_adjustment, "verdict": str(self.verdict),
                "ci_low": decision.ci_low, "ci_high": decision.ci_high, "detectable": self.judgement.detectable,
                "meter": self.meter, "arm": arm,
            }
        return [(f"energy_{key}", value) for key, value in properties.items() if value is not None]

    @classmethod
    def from_dict(cls, data: Mapping) -> TestResult:
        """A record as `to_dict` wrote it (or as an older report has it: a key it lacks reads as None)."""
        decision = Decision.from_dict(data.get("decision") or data)
        run = dict(data.get("run") or {})
        reference = run.pop("reference", None)
        samples = tuple(data.get("samples") or ())
        judgement = Judgement(
            decision=decision,
            run=Run.from_dict(run) if run else Run(data.get("joules_per_token") or 0.0, len(samples), 0.0),
            stack_changes=tuple(stack.Change(c["component"], c["baseline"], c["current"])
                                for c in data.get("stack_changes") or ()),
            hardware_changes=(),
            refused=data.get("refused"),
            other_gpus=tuple(data.get("baseline_gpus") or ()),
            verdict=Verdict(data.get("verdict") or decision.verdict),
            detectable=data["detectable"] if "detectable" in data else decision.detectable,
            too_noisy=data["too_noisy"] if "too_noisy" in data else decision.too_noisy,
            refused_note=data.get("refused_note"),
            flags=(), notes=(),  # of the result's own, which keep them
            baseline_joules_per_token=data.get("baseline_joules_per_token"),
        )
        arm_a = data.get("arm_a")
        return cls(
            nodeid=data.get("nodeid"),
            samples=samples,
            joules_per_token=data.get("joules_per_token"),
            judgement=judgement,
            robust_cv=data.get("robust_cv"),
            outliers=tuple(data.get("outliers") or ()),
            warmup_samples=tuple(data.get("warmup_samples") or ()),
            meter=data.get("meter"),
            estimated=bool(data.get("estimated")),
            flags=tuple(data.get("flags") or ()),
            notes=tuple(data.get("notes") or ()),
            windows=_windows(data.get("measurement")),
            workload=data.get("workload"),
            backend=data.get("backend"),
            reference=reference,
            worker=data.get("worker"),
            arm=(Arm(data.get("arm"), data.get("stack"), data.get("memory_gib"), data.get("strict"))
                 if any(key in data for key in ("arm", "stack", "memory_gib", "strict")) else None),
            arm_a=(ArmA(tuple(arm_a.get("samples") or ()), arm_a.get("joules_per_token"),
                        _windows(arm_a.get("measurement")), arm_a.get("backend")) if arm_a else None),
            outcome=data.get("outcome"),
        )


def _windows(data: Mapping | None) -> WindowSummary | None:
    return WindowSummary.from_dict(data) if data else None
