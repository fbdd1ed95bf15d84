"""Fuzz of the readers of user files: baselines give entries or a BaselineError, traces a Trace or a TraceError.

Never another exception. tests/test_traces.py fuzzes traces through bin_table, from bytes under fixed headers;
these add JSON values per line, any text and column names, and edits anywhere in a valid baseline file.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llm_energy.core import fingerprint
from pytest_llm_energy.core.baseline import SCHEMA, BaselineStore, read_file
from pytest_llm_energy.core.errors import BaselineError, TraceError
from pytest_llm_energy.core.traces import MAX_TOKENS, read_trace_file

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CURRENT_STACK = fingerprint.collect({"gpu_name": None, "gpu_count": 0, "driver": None, "power_limit_watts": None})

# JSON values a hand edit, a merge conflict or another tool may leave: huge and non-finite numbers included.
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30), st.sampled_from([0, 1, -1, 10**400, True, False]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), NUMBERS, st.text(max_size=12))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4)),
    max_leaves=12,
)
POSITIVE = st.floats(min_value=1e-6, max_value=10.0)
VALID_ENTRIES = st.fixed_dictionaries(
    {
        "joules_per_token": POSITIVE,
        "samples": st.lists(POSITIVE, min_size=1, max_size=3),
        "fingerprint": st.dictionaries(st.sampled_from(fingerprint.COMPONENTS), SCALARS, max_size=4),
    },
    optional={"meter": SCALARS, "robust_cv": NUMBERS},
)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def check_baseline(path: Path) -> None:
    """Entries, each fit to compare with and to merge on write; or a BaselineError of one line."""
    try:
        entries = read_file(path)
    except BaselineError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    for entry in entries.values():
        assert math.isfinite(entry.joules_per_token) and entry.joules_per_token > 0
        assert entry.samples and all(math.isfinite(s) and s > 0 for s in entry.samples)
        fingerprint.changes(entry.fingerprint, CURRENT_STACK)  # what every run does with a baseline
    # An update of another test merges with this file: it keeps every entry and writes a file it can read.
    root = path.parent / "root"
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    target = root / "cpu" / "test_fuzz.json"
    target.write_bytes(path.read_bytes())
    BaselineStore(root, "cpu").write({"test_fuzz.py::test_new": {"joules_per_token": 1.0, "samples": [1.0]}})
    assert set(read_file(target)) == set(entries) | {"test_fuzz.py::test_new"}


@FUZZ
@given(prefix=st.sampled_from([b"", b'{"schema": "pytest-llm-energy/baseline", "schema_version": 1, "entries": ']),
       data=st.binary(max_size=300))
def test_any_bytes_give_baseline_entries_or_a_baseline_error(folder, prefix, data):
    path = folder / "bytes.json"
    path.write_bytes(prefix + data)
    check_baseline(path)


@FUZZ
@given(data=st.data(), allow_nan=st.booleans())
def test_any_edit_of_a_baseline_document_gives_entries_or_a_baseline_error(folder, data, allow_nan):
    """A valid file, then a few edits anywhere (a value replaced or removed), as a hand or a merge leaves it."""
    entries = data.draw(st.dictionaries(st.text(max_size=20), VALID_ENTRIES, min_size=1, max_size=3))
    document = {"schema": SCHEMA, "schema_version": 1, "gpu": "cpu", "entries": entries}
    for _ in range(data.draw(st.integers(0, 3))):
        target = data.draw(st.sampled_from([document, *entries.values()]))
        key = data.draw(st.sampled_from(sorted(target) + ["fingerprint", "extra"]))
        if key in target and data.draw(st.booleans()):
            del target[key]
        else:
            target[key] = data.draw(JSON_VALUES)
    path = folder / "document.json"
    try:
        text = json.dumps(document, allow_nan=allow_nan)  # NaN and Infinity are what non-strict writers emit
    except ValueError:
        return
    path.write_text(text, encoding="utf-8")
    check_baseline(path)


def test_the_values_that_broke_the_reader_are_baseline_errors(folder):
    """Found by the fuzzers above: each raised OverflowError, ValueError or TypeError before."""
    huge = "1" + "0" * 400
    cases = {
        "a 400-digit joules_per_token": '{"joules_per_token": ' + huge + ', "samples": [1]}',
        "a 400-digit sample": '{"joules_per_token": 1, "samples": [' + huge + "]}",
        "a 5000-digit number": '{"joules_per_token": 1' + "0" * 5000 + ', "samples": [1]}',
        "a fingerprint that is not an object": '{"joules_per_token": 1, "samples": [1], "fingerprint": "h100"}',
        "NaN beside the numbers": '{"joules_per_token": 1, "samples": [1], "robust_cv": NaN}',
    }
    for case, entry in cases.items():
        path = folder / "case.json"
        path.write_text(f'{{"schema": "{SCHEMA}", "schema_version": 1, "entries": {{"t.py::t": {entry}}}}}')
        with pytest.raises(BaselineError, match=r"case\.json"):
            read_file(path)
            pytest.fail(case)


# --- traces ---------------------------------------------------------------------------------------------------

LENGTHS = st.one_of(NUMBERS, st.text(max_size=6), st.none(), st.lists(st.integers(), max_size=2))


def check_trace(path: Path, **columns) -> None:
    try:
        trace = read_trace_file(path, **columns)
    except TraceError as error:
        assert "\n" not in str(error)
        return
    assert trace.requests == len(trace.output_tokens) > 0
    assert all(0 <= n <= MAX_TOKENS for n in [*trace.input_tokens.tolist(), *trace.output_tokens.tolist()])


@FUZZ
@given(
    lines=st.lists(
        st.one_of(st.fixed_dictionaries({"input_tokens": LENGTHS, "output_tokens": LENGTHS}), JSON_VALUES),
        max_size=5,
    ),
    suffix=st.sampled_from([".jsonl", ".ndjson"]),
)
def test_any_json_lines_give_a_trace_or_a_trace_error(folder, lines, suffix):
    path = folder / f"trace{suffix}"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    check_trace(path)


@FUZZ
@given(
    text=st.text(alphabet=st.sampled_from(list('0123456789-.,\t"\r\n\x00 aeinpstu_')), max_size=120),
    header=st.sampled_from(["", "input_tokens,output_tokens\n", "input_tokens\toutput_tokens\n", "a,b\n"]),
    columns=st.one_of(st.just({}), st.fixed_dictionaries({"input_column": st.text(max_size=3),
                                                          "output_column": st.text(max_size=3)})),
    suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
)
def test_any_text_and_column_names_give_a_trace_or_a_trace_error(folder, text, header, columns, suffix):
    path = folder / f"trace{suffix}"
    path.write_text(header + text, encoding="utf-8", newline="")
    check_trace(path, **columns)
