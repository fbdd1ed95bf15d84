"""--energy-plots: J/token per bin (heatmaps per batch size) and baseline vs current, as PNG files."""

import sys

import pytest

from pytest_llm_energy.core.backend_options import BackendOptions
from pytest_llm_energy.core.errors import EnergyUsageError
from pytest_llm_energy.core.plots import comparison_bars, heatmaps, require_matplotlib, write_plots
from pytest_llm_energy.core.result import TestResult
from pytest_llm_energy.core.run_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, RunReport

BACKEND = {
    "backend": "hf",
    "model": {"name": "tiny-llama", "source": "packaged"},
    "options": {"dtype": "auto", "device": "cpu"},
    "dtype": "float32",
}
PNG = b"\x89PNG\r\n\x1a\n"


def run_record(input_tokens, output_tokens, batch_size, joules, baseline=None, verdict="new", ci=None):
    return {
        "nodeid": f"suites/test_bins.py::test_bin[{input_tokens}-{output_tokens}-{batch_size}]",
        "joules_per_token": joules,
        "baseline_joules_per_token": baseline,
        "verdict": verdict,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
        "samples": [joules] * 3,
        "meter": "nvml",
        "estimated": False,
        "backend": BACKEND,
        "workload": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "batch_size": batch_size,
            "decoding": {"kind": "greedy", "temperature": 1.0, "top_p": 1.0, "num_beams": 1},
            "seed": 0,
        },
    }


def document(records):
    """The report of these records, as `llm-energy plots` reads it from a file."""
    return RunReport.from_dict({
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "gpu": "h100",
        "meter": "nvml",
        "estimated": False,
        "results": records,
    })


def results(records):
    return [TestResult.from_dict(record) for record in records]


RECORDS = [
    run_record(128, 32, 1, 0.40),
    run_record(512, 32, 1, 0.55),
    run_record(128, 256, 1, 0.30),
    run_record(128, 32, 8, 0.08, baseline=0.06, verdict="regressed", ci=(1.25, 1.41)),
    dict(
        run_record(1, 1, 1, 0.2), nodeid="t.py::test_plain_measure", workload=None
    ),  # energy.measure(): no bin
]


def test_one_heatmap_per_batch_size_with_the_bins_as_axes():
    found = {h.file_name: h for h in heatmaps(document(RECORDS))}
    assert sorted(found) == [
        "bins-hf-tiny-llama-bf16-device-cpu-b1-greedy.png",
        "bins-hf-tiny-llama-bf16-device-cpu-b8-greedy.png",
    ]
    single = found["bins-hf-tiny-llama-bf16-device-cpu-b1-greedy.png"]
    assert (single.input_bins, single.output_bins) == ((128, 512), (32, 256))
    assert single.values == ((0.40, 0.55), (0.30, None))  # rows: output bins; no measurement: None
    assert "batch 1, greedy; h100, nvml (measured)" in single.title


def test_bars_put_the_largest_regression_first_with_the_interval_of_the_current_value():
    bars = comparison_bars(results(RECORDS))
    assert bars[0].nodeid.endswith("[128-32-8]") and bars[0].verdict == "regressed"
    assert (bars[0].low, bars[0].high) == (pytest.approx(0.06 * 1.25), pytest.approx(0.06 * 1.41))
    assert all(bar.low is None for bar in bars[1:]) and len(bars) == 5


def test_a_card_adjusted_interval_is_drawn_in_this_cards_joules():
    # another card with a 12% higher matmul reference: the interval is of J/token per unit of that reference
    adjusted = dict(RECORDS[3], ci_low=0.95, ci_high=1.05, card_adjustment=1.12, verdict="inconclusive")
    (bar,) = comparison_bars(results([adjusted]))
    assert (bar.low, bar.high) == (pytest.approx(0.06 * 1.12 * 0.95), pytest.approx(0.06 * 1.12 * 1.05))


def test_plots_are_png_files_drawn_without_pyplot(tmp_path):
    pytest.importorskip("matplotlib")
    had_pyplot = "matplotlib.pyplot" in sys.modules
    written = write_plots(document(RECORDS), tmp_path / "plots")
    assert sorted(p.name for p in written) == [
        "baseline-vs-current.png",
        "bins-hf-tiny-llama-bf16-device-cpu-b1-greedy.png",
        "bins-hf-tiny-llama-bf16-device-cpu-b8-greedy.png",
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    if not had_pyplot:  # the object API on the Agg canvas: the process's backend is left alone
        assert "matplotlib.pyplot" not in sys.modules


def test_many_tests_are_split_over_several_bar_charts(tmp_path):
    pytest.importorskip("matplotlib")
    records = [
        dict(run_record(1, 1, 1, 0.1 + i / 100), nodeid=f"t.py::test_{i}", workload=None) for i in range(45)
    ]
    names = sorted(p.name for p in write_plots(document(records), tmp_path))
    assert names == ["baseline-vs-current-1.png", "baseline-vs-current-2.png"]


def test_without_matplotlib_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what find_spec reports for a missing package
    with pytest.raises(
        EnergyUsageError, match=r"--energy-plots needs matplotlib.*pip install 'pytest-llm-energy\[plots\]'"
    ):
        require_matplotlib()


MEASURED = """
def test_measured(energy):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10
"""
ARGS = ("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05", "-p", "no:cacheprovider")


def test_the_option_writes_plots_at_the_end_of_the_run(pytester):
    pytest.importorskip("matplotlib")
    pytester.makepyfile(test_measured=MEASURED)
    result = pytester.runpytest(*ARGS, "--energy-plots=out/plots")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["energy plots: 1 PNG file in out/plots"])
    assert (pytester.path / "out/plots/baseline-vs-current.png").read_bytes().startswith(PNG)


def test_the_option_without_matplotlib_stops_before_any_test(pytester, monkeypatch):
    pytester.makepyfile(test_measured=MEASURED)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = pytester.runpytest(*ARGS, "--energy-plots=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--energy-plots needs matplotlib, which is not installed here*"])
    pytester.makeini("[pytest]\nenergy_plots = plots\n")  # the ini key comes with the option
    assert pytester.runpytest(*ARGS).ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("inf", id="as-written-now"),
        pytest.param(None, id="null-of-older-reports"),
        pytest.param(float("inf"), id="a-document-in-memory"),
    ],
)
def test_a_heatmap_title_leaves_out_options_at_their_defaults(stored):
    options = BackendOptions(device="cpu").to_dict() | {"request_rate": stored}
    record = dict(run_record(128, 32, 1, 0.4), backend={**BACKEND, "options": options})
    (heatmap,) = heatmaps(document([record]))
    assert heatmap.title.splitlines()[0] == "hf/tiny-llama/bf16+device=cpu"
    assert heatmap.file_name == "bins-hf-tiny-llama-bf16-device-cpu-b1-greedy.png"


def test_a_heatmap_title_names_an_option_set_away_from_its_default():
    options = BackendOptions(device="cpu", request_rate=3.0, compile=True).to_dict()
    record = dict(run_record(128, 32, 1, 0.4), backend={**BACKEND, "options": options})
    (heatmap,) = heatmaps(document([record]))
    assert heatmap.title.splitlines()[0] == "hf/tiny-llama/bf16+compile+device=cpu+request_rate=3"
