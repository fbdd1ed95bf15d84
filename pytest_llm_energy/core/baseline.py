"""The baseline store: baselines/<gpu-key>/<test file>.json, keyed by test node id, written atomically.

Layout: the test file `suites/test_chat.py` keeps its entries in `baselines/h100/suites/test_chat.json`,
so a reviewer finds a test's baseline where the test is. Files are read as JSON only, checked against
the schema, and written only on purpose: under a lock, merged with what is on disk at that moment
(another process may have written since we read), to a temporary file that is then renamed.

An entry keeps the runs recorded for it (`runs`: one summary per pytest process: median, trials, spread,
GPUs, time), the latest run's samples, and the stack and workload they were measured on. An update adds
its run to the entry while stack and workload stay the same (the last `keep` runs), and starts the history
afresh when they changed or when the run showed the energy changed. Schema 1 entries (samples only) read
as one run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from . import fingerprint as stack
from .errors import BaselineError, EnergyUsageError
from .files import atomic_write, clean_for_json, display_path, positive_number, read_json, round_float
from .reference import card_scale
from .stats import Evidence, Run

SCHEMA = "pytest-llm-energy/baseline"
SCHEMA_VERSION = 2
SUFFIX = ".json"
DEFAULT_HISTORY = 10  # recorded runs an entry keeps
# Stack components whose change starts a fresh history: the plugin's own version and the host CPU of a GPU
# runner are not the measured stack (a new runner host is scatter to learn, like another card).
HISTORY_COMPONENTS = tuple(c for c in stack.COMPONENTS if c not in ("pytest_llm_energy", "cpu"))

_SAFE_PART = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class BaselineEntry:
    """One test's stored result: `runs` recorded for it, the latest run's `samples`, and the whole object."""

    nodeid: str
    path: Path
    joules_per_token: float
    samples: tuple[float, ...]
    runs: tuple[Run, ...]
    data: Mapping

    @property
    def fingerprint(self) -> dict:
        return dict(self.data.get("fingerprint") or {})

    @property
    def gpu_uuids(self) -> frozenset[str]:
        """The GPUs of its latest run (empty for older or hand-written entries without them)."""
        return self.runs[-1].gpus


@dataclass(frozen=True)
class WriteSummary:
    path: Path
    added: tuple[str, ...]
    updated: tuple[str, ...]  # this run added to the entry's history
    restarted: tuple[str, ...] = ()  # of the updated: the history started afresh (stack, workload or energy changed)
    removed: tuple[str, ...] = ()  # entries of tests that are no longer collected


def test_file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def relative_path_for(nodeid: str) -> Path:
    """The baseline file of a test, relative to the GPU folder; nothing can point outside that folder."""
    parts = []
    for part in Path(test_file_of(nodeid)).with_suffix(SUFFIX).parts:
        safe = _SAFE_PART.sub("_", part)
        if safe in ("", ".", ".."):
            safe = "_"
        parts.append(safe)
    return Path(*parts) if parts else Path("_" + SUFFIX)


_FIX_ENTRY = "fix that entry, delete it, or restore the file from git"


def _validate_entry(path: Path, nodeid: str, entry) -> BaselineEntry:
    where = f"{path}: entry {nodeid!r}"
    if not isinstance(entry, Mapping):
        raise BaselineError(f"{where} is not an object; fix it or restore the file from git")
    value = entry.get("joules_per_token")
    samples = entry.get("samples")
    if not positive_number(value):
        raise BaselineError(
            f"{where}: joules_per_token must be a positive number, got {_shown(value)}; {_FIX_ENTRY}"
        )
    if not isinstance(samples, list) or not samples or not all(positive_number(s) for s in samples):
        raise BaselineError(f"{where}: samples must be a non-empty list of positive numbers; {_FIX_ENTRY}")
    fingerprint = entry.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, Mapping):  # compared with every run's stack
        raise BaselineError(
            f"{where}: fingerprint must be an object, got {type(fingerprint).__name__}; {_FIX_ENTRY}"
        )
    runs = entry.get("runs")
    if runs is None:  # schema 1: the samples are the one run recorded
        runs = [run_of_entry(entry)]
    if not isinstance(runs, list) or not runs:
        raise BaselineError(f"{where}: runs must be a non-empty list of recorded runs; {_FIX_ENTRY}")
    return BaselineEntry(nodeid, path, float(value), tuple(float(s) for s in samples),
                         tuple(_run(where, number, run, entry.get("workload")) for number, run in enumerate(runs)),
                         entry)


def _run(where: str, number: int, item, workload) -> Run:
    """One recorded run of an entry, checked: a positive median, whole trials, a finite spread."""
    problem = None
    if not isinstance(item, Mapping):
        problem = "is not an object"
    elif not positive_number(item.get("median")):
        problem = f"median must be a positive number, got {_shown(item.get('median'))}"
    elif not isinstance(item.get("trials"), int) or isinstance(item.get("trials"), bool) or item["trials"] < 1:
        problem = f"trials must be a whole number >= 1, got {_shown(item.get('trials'))}"
    elif not (item.get("spread") == 0 or positive_number(item.get("spread"))):
        problem = f"spread must be a number >= 0, got {_shown(item.get('spread'))}"
    elif not isinstance(item.get("gpus", []), list) or not all(isinstance(g, str) for g in item.get("gpus", [])):
        problem = "gpus must be a list of GPU UUIDs"
    elif "reference" in item and not (isinstance(item["reference"], Mapping)
                                      and positive_number(item["reference"].get("compute_joules_per_tflop"))):
        problem = "reference must hold the matmul's compute_joules_per_tflop, a positive number"
    elif "reference" in item and not positive_number(item["reference"].get("memory_joules_per_gb", 1.0)):
        problem = "reference's memory_joules_per_gb (the copy's), where given, must be a positive number"
    if problem:
        raise BaselineError(f"{where}: run {number} {problem}; {_FIX_ENTRY}")
    recorded_at = item.get("recorded_at")
    scale = card_scale(item.get("reference"), workload if isinstance(workload, Mapping) else None)
    return Run(float(item["median"]), item["trials"], float(item["spread"]), frozenset(item.get("gpus", [])),
               recorded_at if isinstance(recorded_at, str) else None, scale)


def run_of_entry(entry: Mapping) -> dict:
    """A schema-1 entry's samples as the one run they were (with its GPUs and time, where it named them)."""
    measurement = entry.get("measurement")
    devices = measurement.get("devices") if isinstance(measurement, Mapping) else None
    gpus = [d["uuid"] for d in devices if isinstance(d, Mapping) and isinstance(d.get("uuid"), str)] \
        if isinstance(devices, list) else []
    samples = entry.get("samples")
    if not isinstance(samples, list) or not samples or not all(positive_number(s) for s in samples):
        return {}  # left for _run to name what is wrong
    recorded_at = entry.get("recorded_at")
    return Run.of(samples, gpus, recorded_at if isinstance(recorded_at, str) else None).to_dict()


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "..."


def read_file(path: Path) -> dict[str, BaselineEntry]:
    """Read one baseline file; any problem is a BaselineError that names the file and what to do."""
    return read_document(path)[1]


def read_document(path: Path) -> tuple[str | None, dict[str, BaselineEntry]]:
    """One baseline file: the GPU key it names (if any) and its entries, every one checked."""
    data = read_json(path, error=BaselineError, fix="restore it from git or delete it")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{path}: not a pytest-llm-energy baseline (missing \"schema\": \"{SCHEMA}\"); "
                            "move it out of the baselines folder or restore it from git")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BaselineError(
            f"{path}: schema_version must be an integer, got {_shown(version)}; "
            "restore it from git or delete it"
        )
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: written by a newer pytest-llm-energy (schema {version}; this one reads "
            f"{SCHEMA_VERSION}); upgrade the plugin"
        )
    if version < 1:
        raise BaselineError(f"{path}: unknown schema_version {version}; restore it from git or delete it")
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise BaselineError(
            f"{path}: \"entries\" must be an object of test id -> result; restore it from git or delete it"
        )
    gpu = data.get("gpu")
    return (str(gpu) if gpu else None), {nodeid: _validate_entry(path, nodeid, entry)
                                         for nodeid, entry in entries.items()}


def _render(gpu_key: str, entries: Mapping[str, Mapping]) -> str:
    document = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "gpu": gpu_key,
        "entries": {nodeid: entries[nodeid] for nodeid in sorted(entries)},
    }
    return json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the GPU folder itself, so two runs updating it at once lose no entry.

    The folder's own descriptor is locked (flock works on directories), so nothing but baseline JSON is
    ever written under the baselines folder: no lock file to ignore or to commit by mistake.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: merge-on-write still protects entries from one writer
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


class BaselineStore:
    """The baselines of one GPU key under one root folder."""

    def __init__(self, root: Path, gpu_key: str) -> None:
        self.root = Path(root)
        self.gpu_key = gpu_key
        self.folder = self.root / _SAFE_PART.sub("_", gpu_key)
        self._files: dict[Path, dict[str, BaselineEntry]] = {}

    def path_for(self, nodeid: str) -> Path:
        path = self.folder / relative_path_for(nodeid)
        resolved_folder = self.folder.resolve()
        if resolved_folder not in path.resolve().parents:  # a symlinked part could still escape
            raise BaselineError(f"{path}: resolves outside the baselines folder {self.folder}")
        return path

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.rglob("*" + SUFFIX) if not p.name.startswith("."))

    def check(self, nodeids: Iterable[str], *, writing: bool = False) -> int:
        """Read the baseline files of these tests now, so a broken one stops the run before any test (a
        broken file of tests that do not run stops nothing); `writing`: an update, which a read-only file
        refuses."""
        count = 0
        for path in sorted({self.path_for(nodeid) for nodeid in nodeids}):
            count += len(self._load(path))
            if writing:
                refuse_read_only(path)
        return count

    def _load(self, path: Path) -> dict[str, BaselineEntry]:
        if path not in self._files:
            self._files[path] = read_file(path) if path.exists() else {}
        return self._files[path]

    def lookup(self, nodeid: str) -> BaselineEntry | None:
        return self._load(self.path_for(nodeid)).get(nodeid)

    def evidence(self) -> Evidence:
        """What the recorded runs of every entry of this GPU key say about run and card scatter (a broken
        file says nothing; the tests it belongs to name it when they look up their baseline)."""
        histories = []
        for path in self.files():
            try:
                histories += [entry.runs for entry in self._load(path).values()]
            except BaselineError:
                continue
        return Evidence.of(histories)

    def unused(self, nodeids: Iterable[str]) -> list[str]:
        """Entries of these tests' baseline files that belong to none of them (renamed or removed tests)."""
        nodeids = set(nodeids)
        found = []
        for path in sorted({self.path_for(nodeid) for nodeid in nodeids}):
            try:
                found += [nodeid for nodeid in self._load(path) if nodeid not in nodeids]
            except BaselineError:
                continue  # named where it is read for the tests that need it
        return sorted(found)

    def write(self, entries: Mapping[str, Mapping], *, keep: int = DEFAULT_HISTORY,
              fresh: frozenset[str] = frozenset(), remove: Iterable[str] = ()) -> list[WriteSummary]:
        """Add these tests' runs to their entries, remove the entries in `remove`, keep every other entry.

        Each new entry holds one run; it joins the entry's history (the last `keep` runs) unless the stack
        or workload changed, or the test is in `fresh` (its run showed the energy changed): then the history
        starts again from it. Each file is re-read under the folder lock right before it is replaced, so
        runs and entries another process wrote since this session started are kept. A file that became
        unreadable is left untouched and reported, and no other file is skipped because of it.
        """
        by_file: dict[Path, tuple[dict[str, Mapping], set[str]]] = {}
        for nodeid, entry in entries.items():
            by_file.setdefault(self.path_for(nodeid), ({}, set()))[0][nodeid] = clean_for_json(entry)
        for nodeid in remove:
            by_file.setdefault(self.path_for(nodeid), ({}, set()))[1].add(nodeid)
        summaries, errors = [], []
        with _folder_lock(self.folder):
            for path, (new_entries, gone) in sorted(by_file.items()):
                try:
                    summaries.append(self._update_file(path, new_entries, gone, keep, fresh))
                except BaselineError as error:
                    errors.append(str(error))
        if errors:
            raise BaselineError("; ".join(errors) + " (other files were written)")
        return summaries

    def _update_file(self, path: Path, new_entries: Mapping[str, Mapping], gone: set[str], keep: int,
                     fresh: frozenset[str]) -> WriteSummary:
        refuse_read_only(path)
        on_disk = read_file(path) if path.exists() else {}
        merged = {nodeid: dict(entry.data) for nodeid, entry in on_disk.items() if nodeid not in gone}
        restarted = []
        for nodeid, entry in new_entries.items():
            merged[nodeid], appended = with_history(on_disk.get(nodeid), entry, keep, nodeid in fresh)
            if nodeid in on_disk and not appended:
                restarted.append(nodeid)
        text = _render(self.gpu_key, merged)
        if merged and (not path.exists() or path.read_text(encoding="utf-8") != text):
            atomic_write(path, text)
        elif not merged and path.exists():
            path.unlink()  # every entry of the file was removed
        self._files.pop(path, None)
        return WriteSummary(path, tuple(sorted(n for n in new_entries if n not in on_disk)),
                            tuple(sorted(n for n in new_entries if n in on_disk)), tuple(sorted(restarted)),
                            tuple(sorted(gone & set(on_disk))))


def refuse_read_only(path: Path) -> None:
    """A baseline file whose mode has no write bit is left alone, as a read-only folder is: its owner said so
    (and a rename over it would replace it, even for root)."""
    if path.exists() and not path.stat().st_mode & 0o222:
        raise BaselineError(f"{path} is read-only (mode {path.stat().st_mode & 0o777:o}): not replaced; make it "
                            "writable (chmod u+w) to record into it")


SHARED_CPU = "xdist-shared-cpu"  # the flag of a CPU estimate made while xdist workers shared the CPU


def history_changed(old: Mapping, new: Mapping) -> list[str]:
    """What differs between an entry and a new record of it that makes its old runs incomparable."""
    before, after = old.get("fingerprint") or {}, new.get("fingerprint") or {}
    changed = [c for c in HISTORY_COMPONENTS if before.get(c) is not None and before.get(c) != after.get(c)]
    for part in ("workload", "backend"):
        if _comparable(part, old.get(part)) != _comparable(part, new.get(part)):
            changed.append(part)
    # An estimate made while xdist workers shared the CPU is inflated: such runs and serial ones never meet.
    if (SHARED_CPU in (old.get("flags") or ())) != (SHARED_CPU in (new.get("flags") or ())):
        changed.append("xdist workers sharing the CPU")
    return changed


def entry_workload(entry: BaselineEntry | None) -> Mapping | None:
    """The workload a baseline entry measured, where it names one."""
    recorded = entry.data.get("workload") if entry is not None else None
    return recorded if isinstance(recorded, Mapping) else None


def workload_changed(entry: BaselineEntry | None, workload: Mapping | None) -> bool:
    """Whether a test's workload is not the one its baseline measured (both known)."""
    recorded = entry_workload(entry)
    return bool(recorded and workload) and _comparable("workload", recorded) != _comparable("workload", workload)


def _comparable(part: str, value):
    """A workload or backend as it decides the energy: a model by name and weights, not by where it lay."""
    value = clean_for_json(value)
    if part == "backend" and isinstance(value, dict) and isinstance(value.get("model"), dict):
        value = {**value, "model": {k: v for k, v in value["model"].items() if k in ("name", "weights")}}
    return value


def with_history(old: BaselineEntry | None, new: Mapping, keep: int, fresh: bool) -> tuple[dict, bool]:
    """The entry after an update: `new` (one run) with the runs of `old` before it when they are comparable.

    Returns the entry and whether the run joined an existing history. The entry's J/token is the geometric
    mean of its runs' medians: the level a later run is compared with.
    """
    runs = list(new.get("runs") or [run_of_entry(new)])  # a plain entry (samples only) is one run
    joined = old is not None and not fresh and not history_changed(old.data, new)
    if joined:
        before = list(old.data.get("runs") or [run_of_entry(old.data)])
        runs = before + [run for run in runs if not before or run != before[-1]]  # the same run, once
    runs = runs[-keep:]
    level = math.exp(sum(math.log(run["median"]) for run in runs) / len(runs))
    return {**new, "joules_per_token": round_float(level), "runs": runs}, joined


# --- a whole set of baselines: a root, one GPU folder or one file, on disk or at a git revision ---------


@dataclass(frozen=True)
class BaselineSet:
    """Every entry under one path, keyed by (GPU key, test id); `label` says where they came from."""

    label: str
    entries: Mapping[tuple[str, str], BaselineEntry]
    files: int

    def gpus(self) -> list[str]:
        return sorted({gpu for gpu, _ in self.entries})


def hidden(relative: Path | PurePosixPath) -> bool:
    """Temporary files of the store start with a dot, as may a folder a user hides (the lock takes no file)."""
    return any(part.startswith(".") for part in relative.parts)


def read_set(path: str | Path, label: str | None = None) -> BaselineSet:
    """A baselines root (`baselines/`), one GPU folder (`baselines/h100/`) or one baseline file.

    The GPU key of each entry is its file's "gpu" field, or else its GPU folder (the first folder under a
    baselines root), so any of the three levels reads the same way.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*" + SUFFIX) if not hidden(p.relative_to(path)))
    else:
        raise EnergyUsageError(f"{path}: no such baselines folder or file")
    entries: dict[tuple[str, str], BaselineEntry] = {}
    for file in files:
        named, stored = read_document(file)
        folder = file.relative_to(path).parts[0] if file != path and len(file.relative_to(path).parts) > 1 else None
        gpu = named or folder or "unknown"
        for nodeid, entry in stored.items():
            if (gpu, nodeid) in entries:
                raise BaselineError(
                    f"{file}: test {nodeid!r} on {gpu} is also in {entries[gpu, nodeid].path}; "
                    "give one GPU's baselines once"
                )
            entries[gpu, nodeid] = entry
    return BaselineSet(label or display_path(path), entries, len(files))


def read_set_at(revision: str, path: str | Path) -> BaselineSet:
    """The baselines committed at `revision` under `path` (a folder or file of the working tree).

    The files are copied out of git into a temporary folder and read exactly like files on disk, so both
    sides of a comparison pass the same checks; errors and entries name them as `REVISION:path`.
    """
    from . import git

    with tempfile.TemporaryDirectory(prefix="llm-energy-baselines-") as temporary:
        root = Path(temporary)
        copied, relative = git.export(revision, path, root, keep=lambda name: name.endswith(SUFFIX),
                                      hide=hidden)
        label = f"{revision}:{relative}"
        if not copied.exists():  # nothing there at that revision: every entry of the other side is new
            return BaselineSet(label, {}, 0)
        try:
            found = read_set(copied, label)
        except BaselineError as error:  # name the file as the reader knows it, not the temporary copy
            raise BaselineError(str(error).replace(f"{root}/", f"{revision}:")) from None
        entries = {
            key: replace(entry, path=Path(f"{revision}:{entry.path.relative_to(root).as_posix()}"))
            for key, entry in found.entries.items()
        }
        return BaselineSet(label, entries, found.files)
