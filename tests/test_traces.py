"""Reading traces: the packaged Azure files (pinned), user CSV/JSONL files, and every kind of bad input."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llm_energy.core import traces
from pytest_llm_energy.core.binning import bin_table
from pytest_llm_energy.core.errors import TraceError
from pytest_llm_energy.core.traces import load_trace, read_trace_file


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_packaged_conv_trace_has_every_request():
    trace = load_trace("azure-conv")
    assert trace.requests == 19366
    # the first rows of conv.csv, read by eye
    assert trace.input_tokens[:3].tolist() == [374, 396, 879]
    assert trace.output_tokens[:3].tolist() == [44, 109, 55]


def test_packaged_code_trace_has_every_request():
    trace = load_trace("azure-code")
    assert trace.requests == 8819
    assert trace.input_tokens[:2].tolist() == [4808, 3180]
    assert trace.output_tokens[:2].tolist() == [10, 8]


def test_trace_arrays_are_read_only():
    trace = load_trace("azure-conv")
    with pytest.raises(ValueError):
        trace.input_tokens[0] = 1


def test_packaged_trace_pins_its_sha256(tmp_path, monkeypatch):
    copy = tmp_path / "traces"
    shutil.copytree(traces.PACKAGED_DIR, copy)
    (copy / "conv.csv").chmod(0o644)
    with open(copy / "conv.csv", "ab") as handle:
        handle.write(b"\r\n2023-11-16 19:00:00.0,1,1")
    monkeypatch.setattr(traces, "PACKAGED_DIR", copy)
    traces._load_packaged.cache_clear()
    try:
        with pytest.raises(TraceError, match="sha256.*restore it from git"):
            load_trace("azure-conv")
        with pytest.raises(TraceError, match="sha256"):  # naming the columns reads the same pinned file
            load_trace("azure-conv", input_column="ContextTokens")
    finally:
        traces._load_packaged.cache_clear()


def test_packaged_sources_keep_the_attribution():
    source = (traces.PACKAGED_DIR / "SOURCE.md").read_text(encoding="utf-8")
    assert traces.ATTRIBUTION in source
    assert "Splitwise" in source


def test_reading_the_conv_trace_is_fast():
    started = time.perf_counter()
    read_trace_file(traces.packaged_path("azure-conv"))
    assert time.perf_counter() - started < 2.0


def test_csv_with_generic_column_names(tmp_path):
    path = write(tmp_path, "t.csv", "id,input_tokens,output_tokens\na,100,20\nb,33,1\n")
    trace = load_trace(str(path))
    assert trace.input_tokens.tolist() == [100, 33]
    assert trace.output_tokens.tolist() == [20, 1]


def test_csv_with_named_columns_and_blank_lines(tmp_path):
    path = write(tmp_path, "t.csv", "prompt_len, gen_len\n\n10,2\n\n20.0,4\n")
    trace = load_trace(path, input_column="prompt_len", output_column="gen_len")
    assert trace.input_tokens.tolist() == [10, 20]


def test_tsv_by_suffix(tmp_path):
    path = write(tmp_path, "t.tsv", "input_tokens\toutput_tokens\n5\t6\n")
    assert load_trace(path).output_tokens.tolist() == [6]


def test_jsonl_with_default_and_named_keys(tmp_path):
    path = write(
        tmp_path,
        "t.jsonl",
        '{"input_tokens": 7, "output_tokens": 3}\n\n{"input_tokens": 9, "output_tokens": 0}\n',
    )
    assert load_trace(path).input_tokens.tolist() == [7, 9]
    named = write(tmp_path, "n.jsonl", '{"p": 7, "g": 3}\n')
    assert load_trace(named, input_column="p", output_column="g").output_tokens.tolist() == [3]


# --- bad input: one TraceError line that names the file, the line and what to do ----------------------


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_short_name():
    with pytest.raises(TraceError) as error:
        load_trace("azure-chat")
    message = one_line(error)
    assert "unknown trace 'azure-chat'" in message and "azure-conv" in message and "did you mean" in message


def test_missing_file_path():
    with pytest.raises(TraceError, match="no such file"):
        load_trace("/nonexistent/trace.csv")


def test_missing_columns(tmp_path):
    path = write(tmp_path, "t.csv", "TIMESTAMP,Prompt,Output\nx,1,2\n")
    with pytest.raises(TraceError) as error:
        load_trace(path)
    message = one_line(error)
    assert str(path) in message and "ContextTokens or input_tokens" in message and "--input-column" in message


def test_missing_named_column(tmp_path):
    path = write(tmp_path, "t.csv", "input_tokens,output_tokens\n1,2\n")
    with pytest.raises(TraceError, match="no column 'gen'.*--output-column"):
        load_trace(path, output_column="gen")


def test_non_numeric_length_names_the_line(tmp_path):
    path = write(tmp_path, "t.csv", "input_tokens,output_tokens\n1,2\n3,many\n")
    with pytest.raises(TraceError) as error:
        load_trace(path)
    message = one_line(error)
    assert "line 3" in message and "output_tokens is 'many'" in message and "fix or remove" in message


def test_fractional_length(tmp_path):
    path = write(tmp_path, "t.csv", "input_tokens,output_tokens\n1.5,2\n")
    with pytest.raises(TraceError, match="line 2.*not a whole number"):
        load_trace(path)


def test_negative_length(tmp_path):
    path = write(tmp_path, "t.csv", "input_tokens,output_tokens\n1,2\n-4,2\n")
    with pytest.raises(TraceError, match="line 3: input_tokens is negative"):
        load_trace(path)


def test_short_row(tmp_path):
    path = write(tmp_path, "t.csv", "a,input_tokens,output_tokens\nx,1\n")
    with pytest.raises(TraceError, match="line 2: 2 field"):
        load_trace(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "t.csv", "")
    with pytest.raises(TraceError, match="is empty"):
        load_trace(path)


def test_header_only(tmp_path):
    path = write(tmp_path, "t.csv", "input_tokens,output_tokens\n")
    with pytest.raises(TraceError, match="no requests"):
        load_trace(path)


def test_not_utf8(tmp_path):
    path = write(tmp_path, "t.csv", b"input_tokens,output_tokens\n\xff\xfe,1\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(path)


def test_jsonl_bad_line(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"input_tokens": 1, "output_tokens": 2}\n{oops\n')
    with pytest.raises(TraceError, match="line 2: not valid JSON"):
        load_trace(path)


def test_jsonl_not_an_object(tmp_path):
    path = write(tmp_path, "t.jsonl", "[1, 2]\n")
    with pytest.raises(TraceError, match="line 1: a JSON list, not an object"):
        load_trace(path)


def test_jsonl_boolean_is_not_a_length(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"input_tokens": true, "output_tokens": 2}\n')
    with pytest.raises(TraceError, match="not a whole number"):
        load_trace(path)


def test_jsonl_missing_key_later(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"input_tokens": 1, "output_tokens": 2}\n{"input_tokens": 1}\n')
    with pytest.raises(TraceError, match="line 2: no 'output_tokens' key"):
        load_trace(path)


def test_folder_is_not_a_trace(tmp_path):
    with pytest.raises(TraceError, match="is a folder"):
        load_trace(tmp_path)


# --- fuzz: any bytes give bins or a TraceError, never another exception --------------------------------

HEADERS = [
    b"",
    b"input_tokens,output_tokens\n",
    b"TIMESTAMP,ContextTokens,GeneratedTokens\r\n",
    b'{"input_tokens": 1, "output_tokens": 2}\n',
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.sampled_from(HEADERS), body=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"])
)
def test_any_bytes_give_bins_or_a_trace_error(tmp_path, header, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(header + body)
    try:
        table = bin_table(path)
    except TraceError as error:
        assert "\n" not in str(error)
    else:
        assert table.kept_requests + table.dropped_requests == table.total_requests


ROW = st.tuples(
    st.one_of(st.integers(-5, 10**10), st.floats(allow_nan=True), st.text(max_size=5)),
    st.one_of(st.integers(-5, 10**10), st.floats(allow_nan=True), st.text(max_size=5)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=6), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_structured_rows_give_bins_or_a_trace_error(tmp_path, rows, suffix):
    import json

    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        text = "input_tokens,output_tokens\n" + "".join(f"{a},{b}\n" for a, b in rows)
    else:
        text = "".join(json.dumps({"input_tokens": a, "output_tokens": b}) + "\n" for a, b in rows)
    path.write_text(text, encoding="utf-8")
    try:
        table = bin_table(path)
    except TraceError as error:
        assert "\n" not in str(error)
    else:
        assert table.total_requests == len(rows)
