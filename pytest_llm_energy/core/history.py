"""Each test's recorded runs over time, as values: what `llm-energy history` lists and plots.

A baseline entry keeps its last runs (`BaselineEntry.runs`, oldest first) and starts them afresh when the
stack or the workload changed, so every run of one history was measured on the same thing: the change of a
run against the first one kept is drift, not a new setup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .baseline import BaselineEntry, BaselineSet
from .stats import Run


@dataclass(frozen=True)
class RecordedRun:
    """One run of a test's history: its place in it, what it measured, and the commit it measured."""

    number: int  # 1 = the oldest run the entry keeps
    run: Run
    git_commit: str | None

    def to_dict(self) -> dict:
        return {"run": self.number, **self.run.to_dict(), "git_commit": self.git_commit}


@dataclass(frozen=True)
class History:
    """The recorded runs of one test on one GPU key, oldest first (never empty: an entry has a run)."""

    gpu: str
    nodeid: str
    runs: tuple[RecordedRun, ...]

    @property
    def first(self) -> RecordedRun:
        return self.runs[0]

    def change(self, recorded: RecordedRun) -> float:
        """The run's median against the first run's: 0.05 is 5% more J per output token."""
        return recorded.run.median / self.first.run.median - 1

    def relative(self) -> tuple[float, ...]:
        """Each run's median divided by the first run's: what the history plot draws."""
        return tuple(1 + self.change(recorded) for recorded in self.runs)

    def to_dict(self) -> dict:
        return {"runs": [recorded.to_dict() | {"change": self.change(recorded)} for recorded in self.runs]}


def _commits(entry: BaselineEntry) -> list[str | None]:
    """The commit of each run: schema 2 stores it per run; a schema-1 entry is one run, of the entry's commit."""
    raw = entry.data.get("runs")
    if not isinstance(raw, list) or len(raw) != len(entry.runs):
        raw = [entry.data] * len(entry.runs)
    return [run.get("git_commit") if isinstance(run, Mapping) and isinstance(run.get("git_commit"), str)
            else None for run in raw]


def history_of(gpu: str, entry: BaselineEntry) -> History:
    runs = tuple(RecordedRun(number, run, commit)
                 for number, (run, commit) in enumerate(zip(entry.runs, _commits(entry), strict=True), start=1))
    return History(gpu, entry.nodeid, runs)


def histories(baselines: BaselineSet, test: str | None = None) -> list[History]:
    """Every entry's history, by GPU key then test id; `test` keeps the tests whose id contains it."""
    return [history_of(gpu, entry) for (gpu, nodeid), entry in sorted(baselines.entries.items())
            if test is None or test in nodeid]
