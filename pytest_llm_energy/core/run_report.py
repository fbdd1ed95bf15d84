"""The JSON report of a run as a value: what was in force, the stack, one result per test; its schema and form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .baseline import WriteSummary
from .result import TestResult

REPORT_SCHEMA = "pytest-llm-energy/report"
REPORT_SCHEMA_VERSION = 2  # 2: "references", one per card (1: "reference", one)


@dataclass(frozen=True)
class RunReport:
    """One run as its reports tell it (`--energy-json`, `--energy-md`, the terminal summary, the plots)."""

    gpu: str
    meter: str
    estimated: bool
    results: tuple[TestResult, ...] = ()  # by test id
    meter_description: str | None = None
    baselines: str | None = None  # the baselines root
    baselines_folder: str | None = None  # its folder of this GPU key
    updated_baselines: bool = False
    fingerprint: Mapping | None = None
    git_commit: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    python: str | None = None
    references: tuple[Mapping, ...] = ()  # the reference kernels of each card that ran tests
    host: Mapping | None = None  # the host probe (host.py)
    unused_baseline_entries: tuple[str, ...] = ()
    unmeasured_tests: tuple[str, ...] = ()  # tests that took the energy fixture and measured nothing
    mode: str = "baseline"  # "ab": arm B judged against arm A
    arms: Mapping | None = None  # A/B: what each arm is
    written: tuple[WriteSummary, ...] = ()
    workers: Mapping[str, str] = field(default_factory=dict)  # xdist worker id -> the UUID of its GPU

    def to_dict(self) -> dict:
        document = {
            "schema": REPORT_SCHEMA,
            "schema_version": REPORT_SCHEMA_VERSION,
            "gpu": self.gpu,
            "meter": self.meter,
            "estimated": self.estimated,
            "meter_description": self.meter_description,
            "baselines": self.baselines,
            "baselines_folder": self.baselines_folder,
            "updated_baselines": self.updated_baselines,
            "fingerprint": self.fingerprint,
            "git_commit": self.git_commit,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "python": self.python,
            "results": [result.to_dict() for result in self.results],
            "references": list(self.references),
            "host": self.host,
            "unused_baseline_entries": list(self.unused_baseline_entries),
            "mode": self.mode,
            "arms": self.arms,
            "written": [
                {"path": str(w.path), "added": list(w.added), "updated": list(w.updated),
                 "restarted": list(w.restarted), "removed": list(w.removed)}
                for w in self.written
            ],
        }
        if self.workers:
            document["workers"] = dict(self.workers)
        if self.unmeasured_tests:
            document["unmeasured_tests"] = list(self.unmeasured_tests)
        return document

    @classmethod
    def from_dict(cls, data: Mapping) -> RunReport:
        """A report as `to_dict` wrote it, already checked (`results.read_report_document`); older reports
        lack some keys, which read as None or empty."""
        return cls(
            gpu=data.get("gpu"), meter=data.get("meter"), estimated=bool(data.get("estimated")),
            results=tuple(TestResult.from_dict(result) for result in data.get("results") or ()),
            meter_description=data.get("meter_description"), baselines=data.get("baselines"),
            baselines_folder=data.get("baselines_folder"), updated_baselines=bool(data.get("updated_baselines")),
            fingerprint=data.get("fingerprint"), git_commit=data.get("git_commit"),
            started_at=data.get("started_at"), duration_s=data.get("duration_s"), python=data.get("python"),
            references=tuple(data.get("references") or ()), host=data.get("host"),
            unused_baseline_entries=tuple(data.get("unused_baseline_entries") or ()),
            unmeasured_tests=tuple(data.get("unmeasured_tests") or ()),
            mode=data.get("mode") or "baseline", arms=data.get("arms"),
            written=tuple(_written(w) for w in data.get("written") or ()),
            workers=dict(data.get("workers") or {}),
        )


def _written(data: Mapping) -> WriteSummary:
    return WriteSummary(Path(data["path"]), *(tuple(data.get(key) or ()) for key in
                                               ("added", "updated", "restarted", "removed")))


def results_by_test(results: Mapping[str, TestResult]) -> tuple[TestResult, ...]:
    """The results of a run in the order every report lists them: by test id."""
    return tuple(results[nodeid] for nodeid in sorted(results))
