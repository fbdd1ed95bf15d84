"""The baseline store: baselines/<gpu-key>/<test file>.json, keyed by test node id, written atomically.

Layout: the test file `suites/test_chat.py` keeps its entries in `baselines/h100/suites/test_chat.json`,
so a reviewer finds a test's baseline where the test is. Files are read as JSON only, checked against
the schema, and written only on purpose: under a lock, merged with what is on disk at that moment
(another process may have written since we read), to a temporary file that is then renamed.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .errors import BaselineError, EnergyUsageError
from .files import atomic_write, clean_for_json, display_path, positive_number, read_json

SCHEMA = "pytest-llm-energy/baseline"
SCHEMA_VERSION = 1
SUFFIX = ".json"
LOCK_NAME = ".lock"

_SAFE_PART = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class BaselineEntry:
    """One test's stored result. `data` is the whole JSON object, `samples` its J per output token."""

    nodeid: str
    path: Path
    joules_per_token: float
    samples: tuple[float, ...]
    data: Mapping

    @property
    def fingerprint(self) -> dict:
        return dict(self.data.get("fingerprint") or {})

    @property
    def gpu_uuids(self) -> frozenset[str]:
        """The GPUs its samples were measured on (empty for older or hand-written entries without them)."""
        measurement = self.data.get("measurement")
        devices = measurement.get("devices") if isinstance(measurement, Mapping) else None
        if not isinstance(devices, list):
            return frozenset()
        return frozenset(d["uuid"] for d in devices if isinstance(d, Mapping) and isinstance(d.get("uuid"), str))


@dataclass(frozen=True)
class WriteSummary:
    path: Path
    added: tuple[str, ...]
    updated: tuple[str, ...]


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
    return BaselineEntry(nodeid, path, float(value), tuple(float(s) for s in samples), entry)


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
    """An exclusive lock on the GPU folder, so two runs updating it at once lose no entry."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: merge-on-write still protects entries from one writer
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    def check(self) -> int:
        """Read every file of this GPU key now, so a broken file stops the run before any test."""
        count = 0
        for path in self.files():
            count += len(self._load(path))
        return count

    def _load(self, path: Path) -> dict[str, BaselineEntry]:
        if path not in self._files:
            self._files[path] = read_file(path) if path.exists() else {}
        return self._files[path]

    def lookup(self, nodeid: str) -> BaselineEntry | None:
        return self._load(self.path_for(nodeid)).get(nodeid)

    def write(self, entries: Mapping[str, Mapping]) -> list[WriteSummary]:
        """Store these tests' entries, keeping every other entry of every file.

        Each file is re-read under the folder lock right before it is replaced, so entries another
        process wrote since this session started are kept. A file that became unreadable is left
        untouched and reported, and no other file is skipped because of it.
        """
        by_file: dict[Path, dict[str, Mapping]] = {}
        for nodeid, entry in entries.items():
            by_file.setdefault(self.path_for(nodeid), {})[nodeid] = clean_for_json(entry)
        summaries = []
        errors = []
        with _folder_lock(self.folder):
            for path, new_entries in sorted(by_file.items()):
                try:
                    on_disk = read_file(path) if path.exists() else {}
                except BaselineError as error:
                    errors.append(str(error))
                    continue
                merged = {nodeid: dict(entry.data) for nodeid, entry in on_disk.items()}
                added = tuple(sorted(n for n in new_entries if n not in merged))
                updated = tuple(sorted(n for n in new_entries if n in merged))
                merged.update(new_entries)
                text = _render(self.gpu_key, merged)
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    atomic_write(path, text)
                self._files.pop(path, None)
                summaries.append(WriteSummary(path, added, updated))
        if errors:
            raise BaselineError("; ".join(errors) + " (other files were written)")
        return summaries


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
    """Lock and temporary files of the store start with a dot, as may a folder a user hides."""
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
