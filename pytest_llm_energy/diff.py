"""Baseline changes for review: two baseline sets (folders, files, or a git revision) compared test by test.

A pull request that re-records baselines changes JSON files; a reviewer wants the table instead: per GPU
key, each test's old and new J per output token, the change, and the verdict of the same decision rule the
plugin applies to a test run (`stats.decide(old samples, new samples, tolerance)`), with tests added and
removed, and the stack components (driver, torch, vLLM, ...) that changed between the two fingerprints.

Reading and comparing are separate: `read_baseline_set` / `read_baseline_set_at` load entries,
`diff_baselines` is a pure function of two sets, and the `render_*` functions turn its value into a terminal
table, GitHub Markdown or JSON. Baselines keep no per-test tolerance (that lives in the marker), so one
tolerance applies to every test of a diff.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from tabulate import tabulate

from . import fingerprint as stack
from .baseline import SUFFIX, BaselineEntry, read_file
from .errors import BaselineError, EnergyUsageError
from .gpus import CPU_KEY
from .report import (
    ATTENTION,
    clean_json,
    display_path,
    interval,
    joules,
    markdown_cell,
    markdown_results,
    percent,
)
from .stats import DEFAULT_CONFIDENCE, IMPROVED, INCONCLUSIVE, NEW, REGRESSED, UNCHANGED, decide

DIFF_SCHEMA = "pytest-llm-energy/diff"
DIFF_SCHEMA_VERSION = 1
REMOVED = "removed"  # a diff's own verdict: the old set has the test and the new one does not
# Row order: what a reviewer must look at first; inside a verdict, the largest change first.
VERDICT_ORDER = (REGRESSED, INCONCLUSIVE, IMPROVED, UNCHANGED, NEW, REMOVED)
DIFF_COLUMNS = ("test", "old J/token", "new J/token", "delta", "CI", "verdict", "notes")
GIT_TIMEOUT_S = 60


# --- reading baseline sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSet:
    """Every entry under one path, keyed by (GPU key, test id); `label` says where they came from."""

    label: str
    entries: Mapping[tuple[str, str], BaselineEntry]
    files: int

    def gpus(self) -> list[str]:
        return sorted({gpu for gpu, _ in self.entries})


def _hidden(relative: Path | PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relative.parts)  # the store's lock and temporary files


def _gpu_key_of(file: Path, root: Path) -> str:
    """The file's own "gpu" field; else its GPU folder (the first folder under a baselines root).

    The same reading as results.read_baselines, so `llm-energy estimate` and `diff` agree on GPU keys.
    """
    try:
        gpu = json.loads(file.read_text(encoding="utf-8")).get("gpu")
    except (OSError, ValueError, AttributeError):
        gpu = None  # read_file has already named what is wrong with the file
    if not gpu and file != root and len(file.relative_to(root).parts) > 1:
        gpu = file.relative_to(root).parts[0]
    return str(gpu or "unknown")


def read_baseline_set(path: str | Path, label: str | None = None) -> BaselineSet:
    """A baselines root (`baselines/`), one GPU folder (`baselines/h100/`) or one baseline file."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*" + SUFFIX) if not _hidden(p.relative_to(path)))
    else:
        raise EnergyUsageError(f"{path}: no such baselines folder or file")
    entries: dict[tuple[str, str], BaselineEntry] = {}
    for file in files:
        stored = read_file(file)
        gpu = _gpu_key_of(file, path)
        for nodeid, entry in stored.items():
            if (gpu, nodeid) in entries:
                raise BaselineError(
                    f"{file}: test {nodeid!r} on {gpu} is also in {entries[gpu, nodeid].path}; "
                    "give one GPU's baselines once"
                )
            entries[gpu, nodeid] = entry
    return BaselineSet(label or display_path(path), entries, len(files))


def _git(arguments: Sequence[str], cwd: Path, failure: str) -> bytes:
    """Run git without a shell; a failure is one line: `failure`, then git's own last line."""
    try:
        done = subprocess.run(["git", *arguments], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise EnergyUsageError("--git needs the git command, which is not installed here") from None
    except subprocess.TimeoutExpired:
        raise EnergyUsageError(f"--git: git took over {GIT_TIMEOUT_S} s ({failure})") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise EnergyUsageError(f"--git: {failure}" + (f" ({said[-1]})" if said else ""))
    return done.stdout


def _under(name: PurePosixPath, folder: PurePosixPath) -> PurePosixPath:
    """`name` relative to the folder that was asked for (the file's own name when a file was asked for)."""
    if name == folder:
        return PurePosixPath(name.name)
    return name.relative_to(folder) if folder.parts else name


def read_baseline_set_at(revision: str, path: str | Path) -> BaselineSet:
    """The baselines committed at `revision` under `path` (a folder or file of the working tree).

    Files are listed with `git ls-tree` and read with `git show REV:path` (no shell), copied into a
    temporary folder and read exactly like files on disk, so both sides pass the same schema checks.
    """
    if not revision or revision.startswith("-"):
        raise EnergyUsageError(f"--git {revision!r}: give a revision such as main, HEAD~1 or a commit hash")
    path = Path(path).absolute()
    start = path if path.is_dir() else path.parent
    while not start.is_dir() and start != start.parent:  # a folder deleted in the working tree
        start = start.parent
    top = Path(
        _git(["rev-parse", "--show-toplevel"], start, f"{path} is not in a git repository").decode().strip()
    )
    commit = (
        _git(
            ["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
            top,
            f"{revision!r} is not a commit in {top}",
        )
        .decode()
        .strip()
    )
    try:
        relative = PurePosixPath(path.resolve().relative_to(top.resolve()).as_posix())
    except ValueError:
        raise EnergyUsageError(f"--git: {path} is outside the repository {top}") from None
    listing = _git(
        ["ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--", str(relative)],
        top,
        f"cannot list {relative} at {revision}",
    )
    names = [
        PurePosixPath(name)
        for name in listing.decode().split("\0")
        if name.endswith(SUFFIX) and not _hidden(_under(PurePosixPath(name), relative))
    ]
    label = f"{revision}:{relative}"
    with tempfile.TemporaryDirectory(prefix="llm-energy-diff-") as temporary:
        root = Path(temporary)
        for name in names:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git(["show", f"{commit}:{name}"], top, f"cannot read {name} at {revision}"))
        copied = root / relative
        if not copied.exists():  # nothing there at that revision: every entry of the other side is new
            return BaselineSet(label, {}, 0)
        try:
            found = read_baseline_set(copied, label)
        except BaselineError as error:  # name the file as the reader knows it, not the temporary copy
            raise BaselineError(str(error).replace(f"{root}/", f"{revision}:")) from None
        entries = {
            key: replace(entry, path=Path(f"{revision}:{entry.path.relative_to(root).as_posix()}"))
            for key, entry in found.entries.items()
        }
        return BaselineSet(label, entries, found.files)


# --- comparing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryDiff:
    """One test on one GPU key: its old and new entry, and the verdict of new against old."""

    gpu: str
    nodeid: str
    verdict: str  # a stats verdict, or REMOVED
    old_joules_per_token: float | None
    new_joules_per_token: float | None
    delta: float | None  # median(new) / median(old) - 1
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

    def sort_key(self) -> tuple:
        return (VERDICT_ORDER.index(self.verdict), -abs(self.delta or 0.0), self.nodeid)

    def to_dict(self) -> dict:
        return {
            "nodeid": self.nodeid,
            "verdict": self.verdict,
            "old_joules_per_token": self.old_joules_per_token,
            "new_joules_per_token": self.new_joules_per_token,
            "delta": self.delta,
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
        return f"{self.component} {self.old} -> {self.new} ({self.entries} entr{'y' if self.entries == 1 else 'ies'})"


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
        return tuple(row for gpu in self.gpus for row in gpu.rows if row.verdict == REGRESSED)

    def to_dict(self) -> dict:
        return clean_json(
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


def _entry_notes(gpu: str, old: BaselineEntry, new: BaselineEntry, changes: list[stack.Change]) -> list[str]:
    notes = []
    hardware = stack.hardware_changed(changes, on_cpu=gpu == CPU_KEY)
    if hardware:  # the plugin refuses such a comparison; a reviewer should see why the numbers moved
        notes.append("hardware changed: " + "; ".join(map(str, hardware)))
    old_meter, new_meter = old.data.get("meter"), new.data.get("meter")
    if old_meter != new_meter:
        notes.append(f"meter {old_meter} -> {new_meter}")
    if new.data.get("estimated") or old.data.get("estimated"):
        notes.append("estimated")
    if _other_gpus(old, new):
        notes.append("other GPUs: " + ", ".join(sorted(old.gpu_uuids)) + " -> " + ", ".join(sorted(new.gpu_uuids)))
    return notes


def _other_gpus(old: BaselineEntry | None, new: BaselineEntry) -> bool:
    """Measured on different physical GPUs (both entries name theirs): judged with card-to-card noise."""
    return bool(old and old.gpu_uuids and new.gpu_uuids and old.gpu_uuids != new.gpu_uuids)


def compare_entries(
    gpu: str,
    nodeid: str,
    old: BaselineEntry | None,
    new: BaselineEntry | None,
    tolerance: float,
    confidence: float = DEFAULT_CONFIDENCE,
    card_noise: float = 0.0,
) -> EntryDiff:
    """The row of one test: the plugin's decision rule on new samples against old ones.

    As in the plugin, entries measured on different GPUs are compared with `card_noise`; baselines keep no
    run noise, so the comparison otherwise trusts each entry's trials.
    """
    if new is None:
        assert old is not None
        return EntryDiff(
            gpu=gpu,
            nodeid=nodeid,
            verdict=REMOVED,
            old_joules_per_token=old.joules_per_token,
            new_joules_per_token=None,
            delta=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            detectable=None,
            too_noisy=False,
            n_old=len(old.samples),
            n_new=0,
            identical=False,
            stack_changes=(),
            notes=(),
            reason="no entry in the new baselines",
        )
    decision = decide(old.samples if old else None, new.samples, tolerance, confidence=confidence,
                      run_noise=card_noise if _other_gpus(old, new) else 0.0)
    changes = stack.changes(old.fingerprint, new.fingerprint) if old else []
    if old:
        notes = _entry_notes(gpu, old, new, changes)
    else:
        notes = ["estimated"] if new.data.get("estimated") else []
    if decision.too_noisy and old:
        found = decision.detectable
        notes.append("too noisy: detects " + (f">={found:.0%}" if math.isfinite(found) else "nothing"))
    return EntryDiff(
        gpu=gpu,
        nodeid=nodeid,
        verdict=decision.verdict,
        old_joules_per_token=old.joules_per_token if old else None,
        new_joules_per_token=new.joules_per_token,
        delta=decision.delta,
        ci_low=decision.ci_low,
        ci_high=decision.ci_high,
        p_value=decision.p_value,
        detectable=decision.detectable,
        too_noisy=decision.too_noisy,
        n_old=decision.n_baseline,
        n_new=decision.n_current,
        identical=old is not None and old.samples == new.samples,
        stack_changes=tuple(changes),
        notes=tuple(notes),
        reason=decision.reason,
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
    card_noise: float = 0.0,
) -> BaselineDiff:
    """Every test of either set, per GPU key, judged new against old."""
    gpus = []
    for gpu in sorted(set(old.gpus()) | set(new.gpus())):
        nodeids = sorted({n for g, n in old.entries if g == gpu} | {n for g, n in new.entries if g == gpu})
        rows = sorted(
            (
                compare_entries(
                    gpu,
                    nodeid,
                    old.entries.get((gpu, nodeid)),
                    new.entries.get((gpu, nodeid)),
                    tolerance,
                    confidence,
                    card_noise,
                )
                for nodeid in nodeids
            ),
            key=EntryDiff.sort_key,
        )
        gpus.append(GpuDiff(gpu, tuple(rows), _stack_changes(rows)))
    return BaselineDiff(old.label, new.label, tolerance, confidence, tuple(gpus))


# --- rendering ------------------------------------------------------------------------------------------


def diff_rows(rows: Sequence[EntryDiff]) -> list[list[str]]:
    return [
        [
            row.nodeid,
            joules(row.old_joules_per_token),
            joules(row.new_joules_per_token),
            percent(row.delta),
            interval({"ci_low": row.ci_low, "ci_high": row.ci_high}),
            row.verdict,
            "; ".join(row.notes),
        ]
        for row in rows
    ]


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) or "no entries"


def _shown(gpu: GpuDiff, show_identical: bool) -> tuple[EntryDiff, ...]:
    return gpu.rows if show_identical else gpu.changed


def _gpu_summary(gpu: GpuDiff, show_identical: bool) -> str:
    shown = _shown(gpu, show_identical)
    text = _counts_text(gpu.counts(shown)) if shown else "no entry changed"
    if gpu.identical and not show_identical:
        text += f" ({gpu.identical} identical entr{'y' if gpu.identical == 1 else 'ies'} not shown)"
    return text


def _title(diff: BaselineDiff) -> str:
    return (
        f"{diff.old} -> {diff.new}: J per output token, tolerance {diff.tolerance:.0%}, "
        f"confidence {diff.confidence:.0%}"
    )


def render_terminal(diff: BaselineDiff, *, show_identical: bool = False) -> str:
    lines = [_title(diff)]
    if not diff.gpus:
        lines.append("no baseline entries on either side")
    for gpu in diff.gpus:
        shown = _shown(gpu, show_identical)
        lines += ["", f"{gpu.gpu}: {_gpu_summary(gpu, show_identical)}"]
        if shown:
            lines.append(
                tabulate(diff_rows(shown), headers=DIFF_COLUMNS, tablefmt="simple", disable_numparse=True)
            )
        if gpu.stack_changes:
            lines.append("stack changes: " + "; ".join(map(str, gpu.stack_changes)))
    regressed = len(diff.regressed)
    lines += ["", f"{regressed} regressed" if regressed else "no regression"]
    return "\n".join(lines)


def render_markdown(diff: BaselineDiff, *, show_identical: bool = False) -> str:
    regressed = len(diff.regressed)
    lines = [
        f"## Energy baselines: `{markdown_cell(diff.old)}` → `{markdown_cell(diff.new)}`",
        "",
        f"J per output token, tolerance {diff.tolerance:.0%}, confidence {diff.confidence:.0%}: "
        + (f"**{regressed} regressed**." if regressed else "no regression."),
        "",
    ]
    if not diff.gpus:
        lines.append("No baseline entries on either side.")
    for gpu in diff.gpus:
        shown = _shown(gpu, show_identical)
        summary = _gpu_summary(gpu, show_identical)
        lines += [
            f"### {markdown_cell(gpu.gpu)}",
            "",
            markdown_cell(summary[:1].upper() + summary[1:]) + ".",
            "",
        ]
        if gpu.stack_changes:
            lines += [
                "Stack changes: " + "; ".join(markdown_cell(str(c)) for c in gpu.stack_changes) + ".",
                "",
            ]
        if shown:
            lines += markdown_results(
                DIFF_COLUMNS,
                diff_rows(shown),
                what="changed entries",
                attention=[row.verdict in ATTENTION for row in shown],
            )
    return "\n".join(lines).rstrip() + "\n"


def render_json(diff: BaselineDiff) -> str:
    return json.dumps(diff.to_dict(), indent=2, allow_nan=False)


# --- one set, for `llm-energy show` ---------------------------------------------------------------------

SHOW_COLUMNS = ("test", "J/token", "trials", "robust CV", "meter", "recorded", "commit")


def entry_rows(baselines: BaselineSet, gpu: str) -> list[list[str]]:
    rows = []
    for (entry_gpu, nodeid), entry in sorted(baselines.entries.items()):
        if entry_gpu != gpu:
            continue
        data = entry.data
        cv = data.get("robust_cv")
        meter = str(data.get("meter") or "-") + (" (estimated)" if data.get("estimated") else "")
        commit = str(data.get("git_commit") or "-")
        short_commit = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
        spread = f"{cv:.1%}" if isinstance(cv, (int, float)) and math.isfinite(cv) else "-"
        rows.append(
            [
                nodeid,
                joules(entry.joules_per_token),
                str(len(entry.samples)),
                spread,
                meter,
                str(data.get("recorded_at") or "-"),
                short_commit,
            ]
        )
    return rows


def render_entries(baselines: BaselineSet, fmt: str = "terminal") -> str:
    """Every entry of a baselines folder, one table per GPU key."""
    if fmt == "json":
        return json.dumps(
            clean_json(
                {
                    "source": baselines.label,
                    "gpus": {
                        gpu: {
                            nodeid: dict(entry.data)
                            for (g, nodeid), entry in sorted(baselines.entries.items())
                            if g == gpu
                        }
                        for gpu in baselines.gpus()
                    },
                }
            ),
            indent=2,
            allow_nan=False,
        )
    markdown = fmt == "markdown"
    lines = [
        f"## Energy baselines in `{markdown_cell(baselines.label)}`"
        if markdown
        else f"{baselines.label}: {len(baselines.entries)} entries in {baselines.files} files"
    ]
    for gpu in baselines.gpus():
        rows = entry_rows(baselines, gpu)
        if markdown:
            lines += ["", f"### {markdown_cell(gpu)}", ""]
            lines += markdown_results(SHOW_COLUMNS, rows, what="entries", attention=[False] * len(rows))
        else:
            lines += [
                "",
                f"{gpu}: {len(rows)} entries",
                tabulate(rows, headers=SHOW_COLUMNS, tablefmt="simple", disable_numparse=True),
            ]
    if not baselines.entries:
        lines.append("no baseline entries")
    return "\n".join(lines).rstrip() + "\n"
