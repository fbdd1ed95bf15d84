"""The baseline store: baselines/<gpu-key>/<test file>.json, keyed by test node id, written atomically.

Layout: the test file `suites/test_chat.py` keeps its entries in `baselines/h100/suites/test_chat.json`,
so a reviewer finds a test's baseline where the test is. Files are read as JSON only, checked against
the schema, and written only on purpose: under a lock, merged with what is on disk at that moment
(another process may have written since we read), to a temporary file that is then renamed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import BaselineError

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


def _round(value: float) -> float:
    # Six significant digits keep diffs readable; the meter is not more precise than that.
    return float(f"{value:.6g}")


def clean_for_json(value, *, round_floats: bool = True):
    """Plain strict JSON: inf/nan become None, tuples lists, keys strings, str subclasses str.

    The last matters beyond JSON: xdist's execnet refuses str subclasses such as `torch.__version__`.

    Baselines round floats to six significant digits (readable diffs); reports keep full precision.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return _round(value) if round_floats else float(value)
    if isinstance(value, Mapping):
        return {str(k): clean_for_json(v, round_floats=round_floats) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_for_json(v, round_floats=round_floats) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():  # numpy scalars: execnet refuses them too
        return clean_for_json(value.item(), round_floats=round_floats)
    return value


_FIX_ENTRY = "fix that entry, delete it, or restore the file from git"


def _validate_entry(path: Path, nodeid: str, entry) -> BaselineEntry:
    where = f"{path}: entry {nodeid!r}"
    if not isinstance(entry, Mapping):
        raise BaselineError(f"{where} is not an object; fix it or restore the file from git")
    value = entry.get("joules_per_token")
    samples = entry.get("samples")
    if not _positive(value):
        raise BaselineError(
            f"{where}: joules_per_token must be a positive number, got {_shown(value)}; {_FIX_ENTRY}"
        )
    if not isinstance(samples, list) or not samples or not all(_positive(s) for s in samples):
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


def _positive(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an integer of hundreds of digits is no energy reading
        return False


class _NotStrictJson(ValueError):
    pass


def _refuse_constant(name: str):
    # Python reads NaN and Infinity, but this store writes strict JSON: a file it could not write back
    # would stop the next update of any test in it.
    raise _NotStrictJson(name)


def read_file(path: Path) -> dict[str, BaselineEntry]:
    """Read one baseline file; any problem is a BaselineError that names the file and what to do."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not UTF-8 text; restore it from git or delete it") from None
    except OSError as error:
        raise BaselineError(
            f"{path}: cannot read ({error.strerror or error}); make it a readable file or move it away"
        ) from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise BaselineError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "restore it from git or delete it"
        ) from None
    except _NotStrictJson as error:
        raise BaselineError(
            f"{path}: {error} is not valid JSON (strict JSON has no NaN or Infinity); write null instead, "
            "or restore it from git"
        ) from None
    except RecursionError:
        raise BaselineError(f"{path}: JSON nested too deeply; restore it from git or delete it") from None
    except ValueError:  # an integer literal longer than Python converts (4300 digits)
        raise BaselineError(
            f"{path}: JSON holds a number too long to read; restore it from git or delete it"
        ) from None
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
    return {nodeid: _validate_entry(path, nodeid, entry) for nodeid, entry in entries.items()}


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


def _mode_for(path: Path) -> int:
    """The permissions a replaced file keeps; a new file gets what open() would give it under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # mkstemp makes the file 0600: a shared baseline would become unreadable to the rest of the team.
            os.chmod(temp, _mode_for(path))
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
                    _atomic_write(path, text)
                self._files.pop(path, None)
                summaries.append(WriteSummary(path, added, updated))
        if errors:
            raise BaselineError("; ".join(errors) + " (other files were written)")
        return summaries


def iter_entries(root: Path) -> Iterator[tuple[str, BaselineEntry]]:
    """Every entry under a baselines root, a GPU folder, or one file, with the GPU key its file names."""
    root = Path(root)
    if root.is_file():
        paths = [root]
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*" + SUFFIX)
                       if not any(part.startswith(".") for part in p.relative_to(root).parts))
    else:
        raise BaselineError(f"{root}: no such baselines folder or file")
    for path in paths:
        entries = read_file(path)
        gpu = json.loads(path.read_text(encoding="utf-8")).get("gpu")  # read_file checked it is JSON
        for entry in entries.values():
            yield str(gpu or path.parent.name), entry
