"""`llm-energy --version`, `llm-energy plots REPORT` and `llm-energy history`, run as a user runs them.

Reports come from a real pytest run (pytester, the CPU-time meter); baselines are written by the store, so a
second write of a test adds a run to its history exactly as `--energy-update-baselines` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llm_energy import __version__
from pytest_llm_energy.cli import main
from pytest_llm_energy.core.baseline import SCHEMA, BaselineStore

PNG = b"\x89PNG\r\n\x1a\n"
CHAT = "suites/test_chat.py::test_chat[in512-out128-b8-greedy]"
CODE = "suites/test_code.py::test_code[in1024-out64-b1-greedy]"
CARD = "GPU-0a43807b-5892-18fa-f65b-53200236d958"
OTHER_CARD = "GPU-44f393d0-1111-2222-3333-444455556666"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("llm-energy: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


# --- --version --------------------------------------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    assert run(capsys, "--version") == (0, f"llm-energy {__version__}\n", "")


def test_version_as_a_user_types_it():
    done = subprocess.run([sys.executable, "-m", "pytest_llm_energy.cli", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"llm-energy {__version__}\n", "")


# --- plots of a report --------------------------------------------------------------------------------------

MEASURED = """
import time

def generate():
    deadline = time.process_time() + 0.02
    while time.process_time() < deadline:
        pass

def test_generate(energy):
    energy(generate, output_tokens=8)
"""


@pytest.fixture
def report(pytester) -> Path:
    """A JSON report of a real run; the current folder is the run's folder (pytester changes into it)."""
    pytester.makepyfile(test_generate=MEASURED)
    result = pytester.runpytest("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05",
                                "-p", "no:cacheprovider", "--energy-json=out/r.json")
    result.assert_outcomes(passed=1)
    return pytester.path / "out" / "r.json"


def test_plots_of_a_report_go_beside_it(report, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = run(capsys, "plots", str(report))
    assert (code, err) == (0, "")
    assert out.splitlines() == ["out/plots/baseline-vs-current.png", "1 PNG file in out/plots"]
    assert (report.parent / "plots" / "baseline-vs-current.png").read_bytes().startswith(PNG)


def test_plots_into_another_folder_as_json(report, capsys):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "plots", str(report), "--out", "drawn", "--json")
    assert code == 0
    assert json.loads(out) == {"report": "out/r.json", "folder": "drawn", "files": ["drawn/baseline-vs-current.png"]}
    assert Path("drawn/baseline-vs-current.png").read_bytes().startswith(PNG)
    assert not (report.parent / "plots").exists()


def test_plots_refuse_a_file_that_is_not_a_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    BaselineStore(tmp_path / "baselines", "h100").write({CHAT: entry(1.0)})
    Path("other.json").write_text('{"schema": "something/else"}')
    Path("broken.json").write_text('{"schema": ')
    assert_one_line_error(*run(capsys, "plots", "baselines/h100/suites/test_chat.json"),
                          "a baseline file, not a report", "pytest --energy-json=PATH")
    assert_one_line_error(*run(capsys, "plots", "other.json"), "other.json: not a pytest-llm-energy report",
                          "'something/else'")
    assert_one_line_error(*run(capsys, "plots", "broken.json"), "broken.json: not valid JSON")
    assert_one_line_error(*run(capsys, "plots", "missing.json"), "missing.json: no such report file")
    assert not Path("plots").exists()


def test_plots_without_matplotlib_say_how_to_install_it(report, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what find_spec reports for a missing package
    assert_one_line_error(*run(capsys, "plots", str(report)), "llm-energy plots needs matplotlib",
                          "pip install 'pytest-llm-energy[plots]'")


# --- history of recorded runs -------------------------------------------------------------------------------


def entry(median: float, *, trials: int = 5, spread: float = 0.02, gpu: str = CARD, day: int = 1,
          commit: str | None = COMMIT) -> dict:
    """A baseline entry of one run, as a pytest process writes it."""
    return {
        "joules_per_token": median,
        "samples": [median] * trials,
        "runs": [{"median": median, "trials": trials, "spread": spread, "gpus": [gpu],
                  "recorded_at": f"2026-11-{day:02d}T10:00:00+00:00", "git_commit": commit}],
    }


@pytest.fixture
def baselines(tmp_path, monkeypatch) -> Path:
    """Three runs of the chat test (+5%, then -10% against the first) and one of the code test on an H100,
    one run of the chat test on an H200: the store adds each write's run to the test's history."""
    monkeypatch.chdir(tmp_path)
    h100 = BaselineStore(tmp_path / "baselines", "h100")
    h100.write({CHAT: entry(0.2, day=1), CODE: entry(0.5, trials=1, spread=0.0, day=1, commit=None)})
    h100.write({CHAT: entry(0.21, day=2, gpu=OTHER_CARD)})
    h100.write({CHAT: entry(0.18, day=3, commit=COMMIT + "-dirty")})
    BaselineStore(tmp_path / "baselines", "h200").write({CHAT: entry(0.15, day=4)})
    return tmp_path / "baselines"


def cells(out: str, nodeid: str) -> list[list[str]]:
    """The terminal table rows of one test, split into cells (tabulate pads cells with two or more spaces)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith(nodeid)]


def test_history_lists_each_run_against_the_tests_first(baselines, capsys):
    code, out, err = run(capsys, "history")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "baselines: 3 tests, 5 recorded runs"
    assert "h100: 2 tests, 4 recorded runs" in out and "h200: 1 test, 1 recorded run" in out
    assert out.index("h100:") < out.index("h200:")
    assert cells(out.split("h200:")[0], CHAT) == [
        [CHAT, "1", "2026-11-01T10:00:00+00:00", "0.2", "+0.0%", "5", "2.0%", "GPU-0a43807b", "0123456789ab"],
        [CHAT, "2", "2026-11-02T10:00:00+00:00", "0.21", "+5.0%", "5", "2.0%", "GPU-44f393d0", "0123456789ab"],
        [CHAT, "3", "2026-11-03T10:00:00+00:00", "0.18", "-10.0%", "5", "2.0%", "GPU-0a43807b",
         "0123456789ab-dirty"],
    ]
    assert cells(out, CODE) == [[CODE, "1", "2026-11-01T10:00:00+00:00", "0.5", "+0.0%", "1", "-", "GPU-0a43807b",
                                 "-"]]


def test_history_of_one_test_by_substring(baselines, capsys):
    code, out, _ = run(capsys, "history", "baselines/h100", "--test", "test_code")
    assert code == 0
    assert out.splitlines()[0] == "baselines/h100: 1 test, 1 recorded run (tests matching 'test_code')"
    assert CODE in out and CHAT not in out


def test_history_as_markdown(baselines, capsys):
    code, out, _ = run(capsys, "history", "--format", "markdown")
    assert code == 0
    assert out.startswith("## Energy history in `baselines`\n")
    assert "### h100" in out and "### h200" in out
    assert "| test " in out and "| vs first run " in out
    rows = [line for line in out.splitlines() if line.startswith(f"| {CHAT}")]
    assert len(rows) == 4 and "| -10.0% " in rows[2]


def test_history_as_json_carries_the_runs_as_plain_data(baselines, capsys):
    code, out, _ = run(capsys, "history", "--json", "--test", "test_chat")
    assert code == 0
    document = json.loads(out)
    assert (document["source"], document["test"], document["plot"]) == ("baselines", "test_chat", None)
    assert sorted(document["gpus"]) == ["h100", "h200"] and list(document["gpus"]["h100"]) == [CHAT]
    runs = document["gpus"]["h100"][CHAT]["runs"]
    assert runs[1] == {"run": 2, "median": 0.21, "trials": 5, "spread": 0.02, "gpus": [OTHER_CARD],
                       "recorded_at": "2026-11-02T10:00:00+00:00", "git_commit": COMMIT,
                       "change": pytest.approx(0.05)}
    assert [run["change"] for run in runs] == [0, pytest.approx(0.05), pytest.approx(-0.1)]


def test_history_plot_is_a_png_drawn_without_pyplot(baselines, capsys):
    pytest.importorskip("matplotlib")
    had_pyplot = "matplotlib.pyplot" in sys.modules
    code, out, err = run(capsys, "history", "--plot", "drawn/history.png")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "plot: drawn/history.png"
    drawn = Path("drawn/history.png").read_bytes()
    assert drawn.startswith(PNG) and len(drawn) > 5000
    if not had_pyplot:  # the object API on the Agg canvas: the process's backend is left alone
        assert "matplotlib.pyplot" not in sys.modules


def test_history_plot_needs_a_png_name_matplotlib_and_runs(baselines, capsys, monkeypatch):
    code, _, err = run(capsys, "history", "--plot", "history.svg")
    assert code == 2 and "--plot: 'history.svg' is not a .png file name" in err
    assert_one_line_error(*run(capsys, "history", "--test", "no-such-test", "--plot", "h.png"),
                          "baselines: no recorded runs of tests matching 'no-such-test'; nothing to plot")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert_one_line_error(*run(capsys, "history", "--plot", "h.png"), "llm-energy history --plot needs matplotlib")
    assert not Path("h.png").exists()


def test_history_of_a_schema_1_entry_is_its_one_run_with_the_entrys_commit(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": SCHEMA, "schema_version": 1, "gpu": "h100", "entries": {
        CHAT: {"joules_per_token": 0.2, "samples": [0.19, 0.2, 0.21], "git_commit": COMMIT,
               "recorded_at": "2025-01-01T00:00:00+00:00"}}}))
    code, out, _ = run(capsys, "history", str(path), "--json")
    assert code == 0
    (recorded,) = json.loads(out)["gpus"]["h100"][CHAT]["runs"]
    assert (recorded["median"], recorded["trials"], recorded["git_commit"]) == (0.2, 3, COMMIT)


def test_history_of_a_folder_without_baselines(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "history", str(tmp_path / "empty"))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "no baseline entries"
    code, out, _ = run(capsys, "history", str(tmp_path / "empty"), "--json")
    assert json.loads(out)["gpus"] == {}
    assert_one_line_error(*run(capsys, "history", str(tmp_path / "missing")), "no such baselines folder or file")


def test_history_plot_ticks_say_the_change_they_stand_at():
    # Runs within about 1% of the first: ticks 0.25% apart were labelled 0%, 0%, 0%, 1% (no decimals).
    pytest.importorskip("matplotlib")
    from pytest_llm_energy.core.history import History, RecordedRun
    from pytest_llm_energy.core.plots import history_figure
    from pytest_llm_energy.core.stats import Run

    medians = (1.0, 1.004, 0.997, 1.009, 1.002)
    history = History("h200", "t.py::test_x", tuple(RecordedRun(i, Run.of([m] * 3), None)
                                                      for i, m in enumerate(medians, start=1)))
    figure = history_figure([history], "title")
    figure.canvas.draw()
    (axes,) = figure.axes
    shown = [(tick, label.get_text()) for tick, label in zip(axes.get_yticks(), axes.get_yticklabels(),
                                                               strict=True)]
    labels = [text for _, text in shown]
    assert len(set(labels)) == len(labels)  # no two ticks read alike
    for value, text in shown:  # and each reads as its own value
        assert float(text.rstrip("%").replace("\N{MINUS SIGN}", "-")) == pytest.approx(value, abs=0.051)
