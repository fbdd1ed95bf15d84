"""What a run leaves for people: Markdown report, GitHub job summary, JUnit properties, pytest-benchmark's
extra_info, and the progress line of long tests."""

import io
import json
import types
from xml.etree import ElementTree

import pytest

from pytest_llm_energy.core.cells import DETAILS_AFTER_ROWS
from pytest_llm_energy.core.run_report import RunReport
from pytest_llm_energy.plugin import progress
from pytest_llm_energy.plugin.summary import markdown

ARGS = ("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05", "-p", "no:cacheprovider")

TWO_TESTS = """
import pytest

def burn():
    return sum(i * i for i in range(100000))

@pytest.mark.energy(tolerance=0.3)
def test_generate(energy):
    with energy.measure() as m:
        burn()
        m.output_tokens = 100

def test_odd_id(energy):
    with energy.measure() as m:
        burn()
        m.output_tokens = 100

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_gen=TWO_TESTS)
    return pytester


def junit_properties(path):
    return {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ElementTree.parse(path).getroot().iter("testcase")
    }


# --- Markdown and the GitHub job summary --------------------------------------------------------------------


def test_markdown_report_names_gpu_meter_estimate_and_baselines(suite):
    suite.runpytest(*ARGS, "--energy-md=out/report.md").assert_outcomes(passed=3)
    text = (suite.path / "out/report.md").read_text()
    assert text.startswith("## Energy report\n")
    assert "J per output token on cpu, meter cpu-time (ESTIMATED), baselines baselines/cpu." in text
    assert "> **ESTIMATED**" in text and "Meter: cpu-time" in text
    assert "2 tests: 2 new." in text
    assert "| test_gen.py::test_generate " in text and "test_plain" not in text
    assert "<details>" not in text


def test_job_summary_is_appended_once_and_only_when_energy_was_measured(suite, monkeypatch):
    summary = suite.path / "summary.md"
    summary.write_text("# Earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    suite.runpytest(*ARGS).assert_outcomes(passed=3)
    text = summary.read_text()
    assert text.startswith("# Earlier step\n") and text.count("## Energy report") == 1
    suite.runpytest(*ARGS, "-k", "test_plain").assert_outcomes(passed=1, deselected=2)
    assert summary.read_text() == text


def test_a_report_file_asked_for_is_written_even_without_energy_tests(suite):
    suite.runpytest(*ARGS, "-k", "test_plain", "--energy-md=r.md", "--energy-json=r.json")
    assert "0 tests: none measured." in (suite.path / "r.md").read_text()
    assert json.loads((suite.path / "r.json").read_text())["results"] == []


def record(nodeid, verdict, delta):
    return {
        "nodeid": nodeid,
        "joules_per_token": 1 + delta,
        "baseline_joules_per_token": 1.0,
        "delta": delta,
        "verdict": verdict,
        "ci_low": 1 + delta - 0.01,
        "ci_high": 1 + delta + 0.01,
        "estimated": False,
        "flags": [],
        "stack_changes": [],
        "outcome": "passed",
    }


def test_long_markdown_tables_fold_but_regressions_stay_in_the_open():
    records = [record(f"t.py::test_{i}[<x>|{i}]", "unchanged", 0.0) for i in range(DETAILS_AFTER_ROWS + 3)]
    records[5] = record("t.py::test_slow[<x>|5]", "regressed", 0.4)
    document = {
        "gpu": "h100",
        "meter": "nvml",
        "estimated": False,
        "baselines": "/r/baselines",
        "baselines_folder": "/r/baselines/h100",
        "results": records,
        "written": [],
        "workers": {"gw0": "GPU-aaaa", "gw1": "GPU-bbbb"},
    }
    text = markdown(RunReport.from_dict(document))
    before, folded = text.split("<details>")
    assert "t.py::test_slow[&lt;x>\\|5]" in before and "test_0[" not in before
    assert (
        f"<summary>All {DETAILS_AFTER_ROWS + 3} results</summary>" in folded
        and "test_0[&lt;x>\\|0]" in folded
    )
    assert "1 regressed" in before and "meter nvml (measured), baselines /r/baselines/h100" in before
    assert "xdist workers, one GPU each: gw0 `GPU-aaaa`, gw1 `GPU-bbbb`." in before


# --- JUnit XML --------------------------------------------------------------------------------------------


def test_junit_properties_carry_the_energy_result(pytester, fake_gpus, monkeypatch):
    # A steady fake GPU (its watts x the time slept): the CPU estimate's runs jump 1.7x on a shared box
    from .fake_nvml import FakeGpu, steady_tests

    fake_gpus(FakeGpu("GPU-aaaa", watts=100.0))
    pytester.makepyfile(test_gen=steady_tests(tolerance=0.3, odd_id=True))
    steady = ("--energy-gpu=h100", "--energy-trials=5", "--energy-min-window=0.05", "-p", "no:cacheprovider")
    pytester.runpytest(*steady, "--energy-update-baselines").assert_outcomes(passed=3)
    monkeypatch.setenv("ENERGY_TEST_WORK", "0.25")  # 2.5 times as long regresses both tests
    result = pytester.runpytest(*steady, "--junitxml=junit.xml", "--energy-json=r.json")
    result.assert_outcomes(passed=1, failed=2)  # their properties are there although they failed
    properties = junit_properties(pytester.path / "junit.xml")
    generate = properties["test_generate"]
    assert generate["energy_verdict"] == "regressed" and generate["energy_meter"] == "nvml"
    records = {r["nodeid"]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    expected = records["test_gen.py::test_generate"]
    for key in ("joules_per_token", "baseline_joules_per_token", "delta"):
        assert float(generate[f"energy_{key}"]) == pytest.approx(expected[key])
    assert properties["test_plain"] == {}


# --- pytest-benchmark -------------------------------------------------------------------------------------

BENCHMARKED = """
def work():
    return sum(i * i for i in range(30000))

def test_timed_and_metered(benchmark, energy):
    benchmark.pedantic(work, rounds=3, iterations=1)
    for trial in energy.trials():
        with energy.measure() as m:
            work()
            m.output_tokens = 10

def test_metered_once_around_benchmark(benchmark, energy):
    with energy.measure() as m:
        benchmark(work)
        m.output_tokens = 10
"""


def test_benchmark_json_carries_the_energy_result(pytester):
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_bench=BENCHMARKED)
    # A fresh process: in-process, plugins imported by earlier runs raise assertion-rewrite warnings that
    # `-W error` would turn into errors unrelated to this plugin.
    result = pytester.runpytest_subprocess(
        *ARGS, "--benchmark-json=bench.json", "--energy-json=r.json", "-W", "error::pytest.PytestWarning"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*uses pytest-benchmark's `benchmark`, which runs once per test*energy.trials()*"]
    )
    assert "warnings summary" not in result.stdout.str()
    (benchmarked,) = [
        b
        for b in json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
        if b["name"] == "test_timed_and_metered"
    ]
    energy = benchmarked["extra_info"]["energy"]
    (record,) = [
        r
        for r in json.loads((pytester.path / "r.json").read_text())["results"]
        if r["nodeid"].endswith("test_timed_and_metered")
    ]
    assert energy["joules_per_token"] == pytest.approx(record["joules_per_token"])
    assert energy["verdict"] == "new" and energy["meter"] == "cpu-time" and energy["estimated"] is True
    assert len(energy["samples"]) == 3


# --- the progress line ------------------------------------------------------------------------------------

PROGRESS_CONFTEST = """
import pytest_llm_energy.plugin.progress
pytest_llm_energy.plugin.progress.PROGRESS_AFTER_S = 0.0  # every trial, not only those of tests longer than 2 s
"""


def test_progress_lines_reach_the_terminal_past_capture_with_v_and_not_under_q(suite):
    suite.makeconftest(PROGRESS_CONFTEST)
    (suite.path / "test_gen.py").write_text(
        TWO_TESTS.replace("def burn():", "def burn():\n    print('from the test')")
    )
    result = suite.runpytest_subprocess(*ARGS, "-p", "no:randomly", "-rP", "-v")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    result.stdout.re_match_lines(
        [
            r"  \[energy\] test_gen.py::test_generate trial 1/3 \(\d+\.\d s\)$",
            r"  \[energy\] test_gen.py::test_generate trial 3/3 \(\d+\.\d s\)$",
            r"  \[energy\] test_gen.py::test_odd_id trial 1/3 \(\d+\.\d s\)$",
        ]
    )
    captured = out.split("PASSES")[1]  # what pytest captured from the tests: the test's print, no progress
    assert "from the test" in captured and "[energy]" not in captured
    quiet = suite.runpytest_subprocess(*ARGS, "-q")
    quiet.assert_outcomes(passed=3)
    assert "[energy]" not in quiet.stdout.str()


def test_progress_leaves_pytests_row_of_dots_intact(suite):
    # In a log (not a terminal) dot mode shows no progress: the row of dots stays one line, the file named once
    suite.makeconftest(PROGRESS_CONFTEST)
    result = suite.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=3)
    rows = [line for line in result.stdout.lines if line.startswith("test_gen.py .")]
    assert len(rows) == 1 and rows[0].startswith("test_gen.py ...") and "[energy]" not in result.stdout.str()


def test_progress_under_xdist_comes_from_the_workers(suite):
    suite.makeconftest(PROGRESS_CONFTEST)
    result = suite.runpytest_subprocess(*ARGS, "-n", "2", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.re_match_lines([r"\s*\[gw\d\]  \[energy\] test_gen.py::test_\w+ trial \d/3 \(\d+\.\d s\)$"])


class FakeTerminal:
    """pytest's TerminalWriter as the progress line uses it: the current row, and the stream behind it."""

    def __init__(self, row: str) -> None:
        self._current_line = row
        self.fullwidth = 80
        self._file = io.StringIO()


def test_on_a_terminal_dot_mode_gets_a_transient_line_under_the_row(monkeypatch):
    writer = FakeTerminal("test_gen.py ..")
    reporter = types.SimpleNamespace(isatty=True, _tw=writer, flush=lambda: None, write_line=None)
    plugins = {"terminalreporter": reporter, "capturemanager": None}
    config = types.SimpleNamespace(pluginmanager=types.SimpleNamespace(get_plugin=plugins.get),
                                   get_verbosity=lambda: 0)
    monkeypatch.setattr(progress, "PROGRESS_AFTER_S", 0.0)
    line = progress.ProgressLine(config)
    line.start("t.py::test_a")
    line("t.py::test_a trial 1/5")
    shown = writer._file.getvalue()
    # a line of its own under the row, then back up to the end of the row, where pytest goes on writing
    assert shown.startswith("\n" + progress.ERASE_LINE + "  [energy] t.py::test_a trial 1/5")
    assert shown.endswith(progress.UP + "\rtest_gen.py ..")
    line.clear()
    assert writer._file.getvalue()[len(shown):] == f"\n{progress.ERASE_LINE}{progress.UP}\rtest_gen.py .."


def test_one_progress_writer_follows_the_current_test(monkeypatch):
    lines = []
    reporter = types.SimpleNamespace(write_line=lines.append, flush=lambda: None)
    plugins = {"terminalreporter": reporter, "capturemanager": None}
    verbosity = [1]
    config = types.SimpleNamespace(
        pluginmanager=types.SimpleNamespace(get_plugin=plugins.get), get_verbosity=lambda: verbosity[0]
    )
    monkeypatch.setattr(progress, "PROGRESS_AFTER_S", 0.0)
    line = progress.ProgressLine(config)
    runner_keeps = line  # the workload runner is built once and keeps this object
    line.start("t.py::test_a")
    runner_keeps("t.py::test_a warm-up 1/1")
    line.start("t.py::test_b")
    runner_keeps("t.py::test_b trial 1/5")
    verbosity[0] = -1
    runner_keeps("t.py::test_b trial 2/5")
    assert [text.split(" (")[0] for text in lines] == [
        "  [energy] t.py::test_a warm-up 1/1",
        "  [energy] t.py::test_b trial 1/5",
    ]
    monkeypatch.setattr(progress, "PROGRESS_AFTER_S", 2.0)
    verbosity[0] = 1
    runner_keeps("t.py::test_b trial 3/5")  # a quick test stays quiet
    assert len(lines) == 2


def test_counts_are_written_in_the_singular_for_one():
    # "1 PNG files", "1 tests": every count goes through one function.
    from pytest_llm_energy.cli.views import render_written_plots
    from pytest_llm_energy.core.cells import runs_text, tests_text
    from pytest_llm_energy.core.words import counted

    assert (tests_text(1), tests_text(2), runs_text(1), runs_text(3)) == (
        "1 test", "2 tests", "1 recorded run", "3 recorded runs")
    assert (counted(1, "entry"), counted(2, "identical entry"), counted(2, "day")) == (
        "1 entry", "2 identical entries", "2 days")
    assert render_written_plots("r.json", "plots", ["plots/a.png"]).splitlines()[-1] == "1 PNG file in plots"
