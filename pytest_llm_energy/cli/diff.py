"""Baseline changes for review: two baseline sets compared test by test, and the tables a reviewer reads.

A pull request that re-records baselines changes JSON files; a reviewer wants the table instead: per GPU
key, each test's old and new J per output token, the change, and the verdict of the same judgement the
plugin gives a test run (`judge.judge`, new entry against old), with tests added and removed, and the stack
components (driver, torch, vLLM, ...) that changed between the two fingerprints. The sets are read by
`baseline.read_set` / `baseline.read_set_at`; `diff_baselines` is a pure function of two sets; the
`render_*` functions turn its value into a terminal table, GitHub Markdown or JSON. Baselines keep no
per-test tolerance (that lives in the marker), so one tolerance applies to every test of a diff.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..core import fingerprint as stack
from ..core.baseline import BaselineEntry, BaselineSet
from ..core.cells import card_adjusted_note, noise_note
from ..core.files import clean_for_json
from ..core.gpus import CPU_KEY
from ..core.judge import Judgement, judge
from ..core.stats import DEFAULT_CONFIDENCE, DEFAULT_PRIOR, NO_EVIDENCE, Evidence, Prior, Verdict
from ..core.words import counted

DIFF_SCHEMA = "pytest-llm-energy/diff"
DIFF_SCHEMA_VERSION = 2  # 2: new_joules_per_token is the latest run, which delta judges (1: the new entry's level)
REMOVED = "removed"  # a diff's own verdict: the old set has the test and the new one does not
# Row order: what a reviewer must look at first; inside a verdict, the largest change first.
VERDICT_ORDER = (Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.NEW, REMOVED)


# --- comparing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryDiff:
    """One test on one GPU key: its old and new entry, and the verdict of new against old."""

    gpu: str
    nodeid: str
    verdict: Verdict | str  # a stats verdict, or REMOVED
    old_joules_per_token: float | None  # the old entry's level: its recorded runs' geometric mean
    new_joules_per_token: float | None  # the new entry's latest run, the one judged
    delta: float | None  # new / old - 1 (per unit of the card reference where card_adjustment is set)
    ci_low: float | None  # interval of that ratio
    ci_high: float | None
    p_value: float | None
    detectable: float | None
    too_noisy: bool
    n_old: int
    n_new: int
    identical: bool  # the same samples on both sides: the entry was not re-recorded
    stack_changes: tuple[stack.Change, ...]
    notes: tuple[str, ...]
    reason: str
    card_adjustment: float | None = None  # where runs of several cards met (stats.per_card_scale)
    new_entry_joules_per_token: float | None = None  # the new entry's level, all of its runs

    def sort_key(self) -> tuple:
        return (VERDICT_ORDER.index(self.verdict), -abs(self.delta or 0.0), self.nodeid)

    def to_dict(self) -> dict:
        return {
            "nodeid": self.nodeid,
            "verdict": self.verdict,
            "old_joules_per_token": self.old_joules_per_token,
            "new_joules_per_token": self.new_joules_per_token,
            "new_entry_joules_per_token": self.new_entry_joules_per_token,
            "delta": self.delta,
            "card_adjustment": self.card_adjustment,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "detectable": self.detectable,
            "too_noisy": self.too_noisy,
            "n_old": self.n_old,
            "n_new": self.n_new,
            "identical": self.identical,
            "stack_changes": [
                {"component": c.component, "old": c.baseline, "new": c.current} for c in self.stack_changes
            ],
            "notes": list(self.notes),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StackChange:
    """A component that changed between old and new fingerprints, and in how many entries."""

    component: str
    old: object
    new: object
    entries: int

    def __str__(self) -> str:
        return f"{self.component} {self.old} -> {self.new} ({counted(self.entries, 'entry')})"


@dataclass(frozen=True)
class GpuDiff:
    gpu: str
    rows: tuple[EntryDiff, ...]  # every test of either side, in VERDICT_ORDER, largest change first
    stack_changes: tuple[StackChange, ...]

    @property
    def changed(self) -> tuple[EntryDiff, ...]:
        return tuple(row for row in self.rows if not row.identical)

    @property
    def identical(self) -> int:
        return sum(row.identical for row in self.rows)

    def counts(self, rows: Sequence[EntryDiff] | None = None) -> dict[str, int]:
        found = Counter(row.verdict for row in (self.rows if rows is None else rows))
        return {verdict: found[verdict] for verdict in VERDICT_ORDER if found[verdict]}


@dataclass(frozen=True)
class BaselineDiff:
    old: str
    new: str
    tolerance: float
    confidence: float
    gpus: tuple[GpuDiff, ...]

    @property
    def regressed(self) -> tuple[EntryDiff, ...]:
        return tuple(row for gpu in self.gpus for row in gpu.rows if row.verdict == Verdict.REGRESSED)

    def to_dict(self) -> dict:
        return clean_for_json(round_floats=False, value=
            {
                "schema": DIFF_SCHEMA,
                "schema_version": DIFF_SCHEMA_VERSION,
                "old": self.old,
                "new": self.new,
                "tolerance": self.tolerance,
                "confidence": self.confidence,
                "regressed": len(self.regressed),
                "gpus": [
                    {
                        "gpu": gpu.gpu,
                        "counts": gpu.counts(),
                        "identical": gpu.identical,
                        "stack_changes": [
                            {"component": c.component, "old": c.old, "new": c.new, "entries": c.entries}
                            for c in gpu.stack_changes
                        ],
                        "rows": [row.to_dict() for row in gpu.rows],
                    }
                    for gpu in self.gpus
                ],
            }
        )


def _entry_notes(old: BaselineEntry, new: BaselineEntry, judgement: Judgement) -> list[str]:
    notes = []
    if judgement.hardware_changes:  # the plugin refuses such a comparison; a reviewer should see why
        notes.append("hardware changed: " + "; ".join(map(str, judgement.hardware_changes)))
    old_meter, new_meter = old.data.get("meter"), new.data.get("meter")
    if old_meter != new_meter:
        notes.append(f"meter {old_meter} -> {new_meter}")
    if new.data.get("estimated") or old.data.get("estimated"):
        notes.append("estimated")
    if judgement.other_gpus:
        notes.append("other GPUs: " + ", ".join(judgement.other_gpus) + " -> " + ", ".join(sorted(new.gpu_uuids)))
    if judgement.decision.card_adjustment is not None:
        notes.append(card_adjusted_note(judgement.decision.card_adjustment))
    if judgement.decision.too_noisy:
        notes.append(noise_note(judgement.decision.detectable))
    return notes


def _removed(gpu: str, nodeid: str, old: BaselineEntry) -> EntryDiff:
    return EntryDiff(
        gpu=gpu, nodeid=nodeid, verdict=REMOVED, old_joules_per_token=old.joules_per_token,
        new_joules_per_token=None, delta=None, ci_low=None, ci_high=None, p_value=None, detectable=None,
        too_noisy=False, n_old=len(old.samples), n_new=0, identical=False, stack_changes=(), notes=(),
        reason="no entry in the new baselines",
    )


def compare_entries(
    gpu: str,
    nodeid: str,
    old: BaselineEntry | None,
    new: BaselineEntry | None,
    tolerance: float,
    confidence: float = DEFAULT_CONFIDENCE,
    prior: Prior = DEFAULT_PRIOR,
    evidence: Evidence = NO_EVIDENCE,
) -> EntryDiff:
    """The row of one test: the plugin's judgement of the new entry's latest run against the old entry, whose
    figures the row shows (old: the entry's level; new: that run), so that its delta is of its own columns.

    As in the plugin, the old entry's recorded runs and the rest of its set (`evidence`) tell how far runs
    and cards move; a diff compares what was recorded, so another GPU model is noted rather than refused.
    """
    if new is None:
        assert old is not None
        return _removed(gpu, nodeid, old)
    judgement = judge(old, new.runs[-1], tolerance=tolerance, confidence=confidence, prior=prior,
                      evidence=evidence, fingerprint=new.fingerprint, on_cpu=gpu == CPU_KEY,
                      allow_hardware_change=True)
    decision = judgement.decision
    if old:
        notes = _entry_notes(old, new, judgement)
    else:
        notes = ["estimated"] if new.data.get("estimated") else []
    return EntryDiff(
        gpu=gpu,
        nodeid=nodeid,
        verdict=decision.verdict,
        old_joules_per_token=old.joules_per_token if old else None,
        new_joules_per_token=new.runs[-1].median,
        delta=decision.delta,
        ci_low=decision.ci_low,
        ci_high=decision.ci_high,
        p_value=decision.p_value,
        detectable=decision.detectable,
        too_noisy=decision.too_noisy,
        n_old=decision.n_baseline,
        n_new=decision.n_current,
        identical=old is not None and old.samples == new.samples and old.runs == new.runs,
        stack_changes=judgement.stack_changes,
        notes=tuple(notes),
        reason=decision.reason,
        card_adjustment=decision.card_adjustment,
        new_entry_joules_per_token=new.joules_per_token,
    )


def _stack_changes(rows: Sequence[EntryDiff]) -> tuple[StackChange, ...]:
    counted = Counter(
        (c.component, repr(c.baseline), repr(c.current)) for row in rows for c in row.stack_changes
    )
    values = {(c.component, repr(c.baseline), repr(c.current)): c for row in rows for c in row.stack_changes}
    order = {component: i for i, component in enumerate(stack.COMPONENTS)}
    return tuple(
        StackChange(values[key].component, values[key].baseline, values[key].current, n)
        for key, n in sorted(counted.items(), key=lambda item: (order.get(item[0][0], len(order)), item[0]))
    )


def diff_baselines(
    old: BaselineSet, new: BaselineSet, tolerance: float, confidence: float = DEFAULT_CONFIDENCE,
    prior: Prior = DEFAULT_PRIOR,
) -> BaselineDiff:
    """Every test of either set, per GPU key, judged new against old (with the old set's recorded runs)."""
    gpus = []
    for gpu in sorted(set(old.gpus()) | set(new.gpus())):
        nodeids = sorted({n for g, n in old.entries if g == gpu} | {n for g, n in new.entries if g == gpu})
        evidence = Evidence.of(entry.runs for (g, _), entry in old.entries.items() if g == gpu)
        rows = sorted(
            (compare_entries(gpu, nodeid, old.entries.get((gpu, nodeid)), new.entries.get((gpu, nodeid)),
                             tolerance, confidence, prior, evidence)
             for nodeid in nodeids),
            key=EntryDiff.sort_key,
        )
        gpus.append(GpuDiff(gpu, tuple(rows), _stack_changes(rows)))
    return BaselineDiff(old.label, new.label, tolerance, confidence, tuple(gpus))
