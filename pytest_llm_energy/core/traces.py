"""Request traces: per-request input and output token counts, from the packaged Azure traces or CSV/JSONL.

A trace is only two integer columns. Everything that can go wrong with a user's file is a TraceError of one
line (file, line, what to do), so the CLI and a suite's collection never show a traceback for bad data.
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TraceError

PACKAGED_DIR = Path(__file__).parent / "traces"

# Short name -> (file in PACKAGED_DIR, pinned sha256). The files are byte-for-byte copies of the Azure
# Public Dataset (CC-BY 4.0, see traces/SOURCE.md); a changed byte changes every bin count the tests check.
PACKAGED_TRACES: dict[str, tuple[str, str]] = {
    "azure-conv": ("conv.csv", "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"),
    "azure-code": ("code.csv", "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"),
}
ATTRIBUTION = "Azure LLM inference trace 2023, Microsoft Azure Public Dataset, CC-BY 4.0"

# Column names recognized when none is given, in order of preference.
INPUT_COLUMNS = ("ContextTokens", "input_tokens")
OUTPUT_COLUMNS = ("GeneratedTokens", "output_tokens")

JSONL_SUFFIXES = (".jsonl", ".ndjson")
# No real request is this long; a larger number is a corrupt field, and it keeps sums inside int64.
MAX_TOKENS = 10**9


@dataclass(frozen=True, eq=False)
class Trace:
    """Token counts of every request of one trace, in file order (read-only arrays)."""

    name: str  # the short name or the path as the user gave it
    source: str  # the file read
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    @property
    def requests(self) -> int:
        return int(self.input_tokens.shape[0])

    @property
    def total_tokens(self) -> int:
        return int(self.input_tokens.sum() + self.output_tokens.sum())


def packaged_path(name: str) -> Path:
    return PACKAGED_DIR / PACKAGED_TRACES[name][0]


def attribution_for(source: str | Path) -> str | None:
    """The attribution that must travel with anything published from a packaged trace (CC-BY 4.0)."""
    packaged = {packaged_path(name).resolve() for name in PACKAGED_TRACES}
    return ATTRIBUTION if Path(source).resolve() in packaged else None


def load_trace(
    trace: str | Path | Trace, *, input_column: str | None = None, output_column: str | None = None
) -> Trace:
    """A packaged short name (`azure-conv`, `azure-code`), a CSV/TSV/JSONL path, or a Trace (as is)."""
    if isinstance(trace, Trace):
        return trace
    text = str(trace)
    if text in PACKAGED_TRACES:
        if input_column is None and output_column is None:
            return _load_packaged(text)
        return _parse(
            _packaged_bytes(text),
            packaged_path(text),
            name=text,
            input_column=input_column,
            output_column=output_column,
        )
    path = Path(text)
    if not path.exists():
        raise TraceError(_unknown_trace_message(text))
    return read_trace_file(path, name=text, input_column=input_column, output_column=output_column)


def _unknown_trace_message(text: str) -> str:
    looks_like_path = any(sep in text for sep in "/\\") or Path(text).suffix != ""
    names = ", ".join(PACKAGED_TRACES)
    if looks_like_path:
        return f"trace file {text}: no such file; give an existing CSV/JSONL path or one of {names}"
    close = difflib.get_close_matches(text, list(PACKAGED_TRACES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown trace {text!r}{hint}: use one of {names}, or a path to a CSV or JSONL file"


@functools.cache
def _load_packaged(name: str) -> Trace:
    # Cached: a suite calls bin_params once per parametrized test at collection time.
    return _parse(
        _packaged_bytes(name), packaged_path(name), name=name, input_column=None, output_column=None
    )


def _packaged_bytes(name: str) -> bytes:
    """The packaged file, checked against its pinned sha256: a changed byte would change every bin count."""
    path = packaged_path(name)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TraceError(
            f"packaged trace {name} ({path}): cannot read ({error.strerror}); reinstall the package"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    expected = PACKAGED_TRACES[name][1]
    if digest != expected:
        raise TraceError(
            f"packaged trace {name} ({path}): sha256 {digest[:12]}... is not the pinned {expected[:12]}...; "
            "the file was changed, restore it from git or reinstall the package"
        )
    return data


def read_trace_file(
    path: Path, *, name: str | None = None, input_column: str | None = None, output_column: str | None = None
) -> Trace:
    """Read a trace file: JSONL by suffix (.jsonl, .ndjson), else CSV (TSV for .tsv)."""
    path = Path(path)
    if path.is_dir():
        raise TraceError(f"trace file {path}: is a folder; give a CSV or JSONL file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TraceError(f"trace file {path}: cannot read ({error.strerror or error})") from None
    return _parse(data, path, name=name or str(path), input_column=input_column, output_column=output_column)


def _parse(
    data: bytes, path: Path, *, name: str, input_column: str | None, output_column: str | None
) -> Trace:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TraceError(
            f"trace file {path}: not UTF-8 text (bad byte at offset {error.start}); "
            "save it as UTF-8 CSV or JSONL"
        ) from None
    if not text.strip():
        raise TraceError(f"trace file {path}: is empty; it needs a header and one row per request")
    if path.suffix.lower() in JSONL_SUFFIXES:
        inputs, outputs = _parse_jsonl(text, path, input_column, output_column)
    else:
        inputs, outputs = _parse_csv(text, path, input_column, output_column)
    if not inputs:
        raise TraceError(f"trace file {path}: has no requests, only a header; add one row per request")
    input_tokens = np.asarray(inputs, dtype=np.int64)
    output_tokens = np.asarray(outputs, dtype=np.int64)
    input_tokens.flags.writeable = False
    output_tokens.flags.writeable = False
    return Trace(name=name, source=str(path), input_tokens=input_tokens, output_tokens=output_tokens)


def _pick_column(
    found: list[str], wanted: str | None, defaults: tuple[str, ...], path: Path, role: str
) -> str:
    candidates = (wanted,) if wanted is not None else defaults
    for candidate in candidates:
        if candidate in found:
            return candidate
    shown = ", ".join(ascii(column) for column in found[:8]) + (", ..." if len(found) > 8 else "")
    option = "--input-column" if role == "input" else "--output-column"
    if wanted is not None:
        missing = f"no column {ascii(wanted)}"
    else:
        missing = f"no {role} token column ({' or '.join(defaults)})"
    raise TraceError(
        f"trace file {path}: {missing}; columns found: {shown or 'none'}; name the column with {option}"
    )


def _token_count(value, path: Path, where: str, column: str) -> int:
    """A non-negative whole number of tokens, from a CSV string or a JSON number."""
    if isinstance(value, bool) or value is None:
        number = None
    elif isinstance(value, int):
        number = value
    else:
        number = None
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = math.nan
            if math.isfinite(as_float) and as_float.is_integer():
                number = int(as_float)
    if number is None:
        shown = ascii(value) if len(ascii(value)) <= 40 else ascii(value)[:36] + "...'"
        raise TraceError(
            f"trace file {path}, {where}: {column} is {shown}, not a whole number of tokens; "
            "fix or remove that row"
        )
    if number < 0:
        raise TraceError(
            f"trace file {path}, {where}: {column} is negative ({number}); fix or remove that row"
        )
    if number > MAX_TOKENS:
        raise TraceError(
            f"trace file {path}, {where}: {column} is {number}, over {MAX_TOKENS:,} tokens; "
            "fix or remove that row"
        )
    return number


def _parse_csv(text: str, path: Path, input_column: str | None, output_column: str | None):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    inputs: list[int] = []
    outputs: list[int] = []
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise TraceError(f"trace file {path}: is empty; it needs a header and one row per request")
        columns = [column.strip() for column in header]
        input_name = _pick_column(columns, input_column, INPUT_COLUMNS, path, "input")
        output_name = _pick_column(columns, output_column, OUTPUT_COLUMNS, path, "output")
        input_index, output_index = columns.index(input_name), columns.index(output_name)
        needed = max(input_index, output_index) + 1
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            where = f"line {reader.line_num}"
            if len(row) < needed:
                raise TraceError(
                    f"trace file {path}, {where}: {len(row)} field(s), the header has {len(columns)}; "
                    "fix or remove that row"
                )
            inputs.append(_token_count(row[input_index], path, where, input_name))
            outputs.append(_token_count(row[output_index], path, where, output_name))
    except csv.Error as error:
        raise TraceError(
            f"trace file {path}, line {reader.line_num}: not valid CSV ({error}); fix that line"
        ) from None
    return inputs, outputs


def _parse_jsonl(text: str, path: Path, input_column: str | None, output_column: str | None):
    inputs: list[int] = []
    outputs: list[int] = []
    input_name = output_name = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:
            if isinstance(error, json.JSONDecodeError):
                reason = error.msg
            else:  # RecursionError, or an integer literal too long to convert
                reason = "nested too deeply" if isinstance(error, RecursionError) else "a number too long"
            raise TraceError(
                f"trace file {path}, {where}: not valid JSON ({reason}); each line must be one JSON object"
            ) from None
        if not isinstance(record, dict):
            raise TraceError(
                f"trace file {path}, {where}: a JSON {type(record).__name__}, not an object; "
                'write one object per line, e.g. {"input_tokens": 512, "output_tokens": 128}'
            )
        if input_name is None:  # the first record decides the column names, like a CSV header
            keys = [str(key) for key in record]
            input_name = _pick_column(keys, input_column, INPUT_COLUMNS, path, "input")
            output_name = _pick_column(keys, output_column, OUTPUT_COLUMNS, path, "output")
        for column in (input_name, output_name):
            if column not in record:
                raise TraceError(f"trace file {path}, {where}: no {ascii(column)} key; every line needs it")
        inputs.append(_token_count(record[input_name], path, where, input_name))
        outputs.append(_token_count(record[output_name], path, where, output_name))
    return inputs, outputs
