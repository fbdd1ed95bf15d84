"""The reference kernels' place in a run: measured once on a GPU run, kept with each recorded run and in the
reports, skipped where asked, and the scale that makes runs of several cards comparable. Fake NVML, and the
kernels stubbed in the run's conftest (they need CUDA; the real ones run in tests/test_gpu_meter.py on a
GPU)."""

import json
import math
import re
from pathlib import Path

import pytest

from pytest_llm_energy.core import reference

CONFTEST = """
import sys
sys.path.insert(0, {tests!r})
import fake_nvml
from pytest_llm_energy.core import reference
from pytest_llm_energy.plugin import session

fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=300.0)])
CALLS = []

def fake_reference(meter, seconds=2.0):
    CALLS.append(meter.name)
    return reference.Reference("GPU-aaaa", 1.03, 0.109, 697.0, 465.0, ("power-capped",))

session.measure_reference = fake_reference

def pytest_sessionfinish(session):
    print("reference calls:", len(CALLS))
"""

TESTS = """
import time

def test_one(energy):
    with energy.measure() as m:
        time.sleep(0.05)
        m.output_tokens = 10

def test_two(energy):
    with energy.measure() as m:
        time.sleep(0.05)
        m.output_tokens = 10
"""

ARGS = ("--energy-gpu=h100", "--energy-trials=3", "--energy-warmup=0", "--energy-min-window=0.02", "-s",
        "-p", "no:cacheprovider", "--energy-json=r.json", "--energy-md=r.md", "--energy-baselines=b")


@pytest.fixture
def run(pytester):
    pytester.makeconftest(CONFTEST.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_work=TESTS)
    (pytester.path / "b").mkdir()
    return pytester


def test_measured_once_and_kept_with_each_recorded_run_and_in_the_reports(run):
    result = run.runpytest_subprocess(*ARGS, "--energy-update-baselines")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*reference calls: 1", "Reference kernels on GPU-aaaa: matmul 1.03 J/TFLOP at 697 W, "
                                 "copy 0.109 J/GB at 465 W"])
    document = json.loads((run.path / "r.json").read_text())
    assert [reference["compute_joules_per_tflop"] for reference in document["references"]] == [1.03]
    assert "Reference kernels on GPU-aaaa" in (run.path / "r.md").read_text()
    (stored,) = (run.path / "b" / "h100").glob("*.json")
    entries = json.loads(stored.read_text())["entries"]
    assert [entry["runs"][-1]["reference"]["gpu"] for entry in entries.values()] == ["GPU-aaaa", "GPU-aaaa"]


def test_skipped_when_asked(run):
    result = run.runpytest_subprocess(*ARGS, "--energy-no-reference")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*reference calls: 0"])
    assert "Reference kernels" not in result.stdout.str()
    assert json.loads((run.path / "r.json").read_text())["references"] == []


TWO_CARDS = """
import os, sys
sys.path.insert(0, {tests!r})
import fake_nvml
from pytest_llm_energy.core import reference
from pytest_llm_energy.plugin import session

watts = float(os.environ.get("FAKE_WATTS", "100"))
fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=watts),
                                   fake_nvml.FakeGpu("GPU-bbbb", watts=watts)])
gpu = os.environ["CUDA_VISIBLE_DEVICES"]
matmul = float(os.environ.get("FAKE_MATMUL", "1.0"))
copy = float(os.environ.get("FAKE_COPY", 0.1 * matmul))
session.measure_reference = lambda meter, seconds=2.0: reference.Reference(gpu, matmul, copy, 700.0, 450.0)
"""


@pytest.fixture
def two_cards(pytester, monkeypatch):
    pytester.makeconftest(TWO_CARDS.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_work=TESTS)
    (pytester.path / "b").mkdir()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    for _ in range(2):
        pytester.runpytest_subprocess(*ARGS, "--energy-update-baselines").assert_outcomes(passed=2)
    # another card that draws 12% more for everything, the reference kernels included
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    monkeypatch.setenv("FAKE_WATTS", "112")
    monkeypatch.setenv("FAKE_MATMUL", "1.12")
    return pytester


def test_another_card_is_judged_per_unit_of_its_reference_kernels(two_cards):
    result = two_cards.runpytest_subprocess(*ARGS)
    result.stdout.fnmatch_lines(["*card-adjusted*"])
    for record in json.loads((two_cards.path / "r.json").read_text())["results"]:
        assert record["card_adjustment"] == pytest.approx(1.12)
        assert "card-adjusted" in record["flags"] and "other-gpu" in record["flags"]
        raw = record["joules_per_token"] / record["baseline_joules_per_token"]
        assert 1 + record["delta"] == pytest.approx(raw / 1.12, rel=1e-3)
        assert "reference kernels (this card's +12.0% on theirs)" in record["reason"]


def test_a_test_that_names_no_workload_is_judged_per_unit_of_both_kernels(two_cards, monkeypatch):
    monkeypatch.setenv("FAKE_COPY", "0.1")  # only the matmul is 12% higher on this card
    two_cards.runpytest_subprocess(*ARGS).assert_outcomes(passed=2)
    for record in json.loads((two_cards.path / "r.json").read_text())["results"]:
        assert record["card_adjustment"] == pytest.approx(math.sqrt(1.12))


def test_a_prefill_bound_baseline_is_judged_per_unit_of_the_matmul(two_cards, monkeypatch):
    # the baseline entries measured a prefill-bound workload: its figure decides for this run too
    (stored,) = (two_cards.path / "b" / "h100").glob("*.json")
    document = json.loads(stored.read_text())
    for entry in document["entries"].values():
        entry["workload"] = {"input_tokens": 2048, "output_tokens": 16, "batch_size": 8}
    stored.write_text(json.dumps(document))
    monkeypatch.setenv("FAKE_COPY", "0.1")  # only the matmul is 12% higher on this card
    two_cards.runpytest_subprocess(*ARGS).assert_outcomes(passed=2)
    for record in json.loads((two_cards.path / "r.json").read_text())["results"]:
        assert record["card_adjustment"] == pytest.approx(1.12)


@pytest.mark.parametrize(("output_tokens", "scale"), [(16, 1.2), (32, 1.2), (33, math.sqrt(1.2 * 0.1)),
                                                      (512, math.sqrt(1.2 * 0.1)), (None, math.sqrt(1.2 * 0.1))])
def test_the_card_figure_follows_the_work_prefill_by_the_matmul_decode_by_both(output_tokens, scale):
    workload = {"input_tokens": 2048, "output_tokens": output_tokens} if output_tokens else None
    found = reference.card_scale({"compute_joules_per_tflop": 1.2, "memory_joules_per_gb": 0.1}, workload)
    assert found == pytest.approx(scale)


def test_no_card_figure_without_the_kernels_it_needs():
    matmul_only = {"compute_joules_per_tflop": 1.2}
    assert reference.card_scale(None, None) is None
    assert reference.card_scale(matmul_only, {"output_tokens": 512}) is None  # decode needs the copy too
    assert reference.card_scale(matmul_only, {"output_tokens": 16}) == 1.2
    assert reference.card_scale({"compute_joules_per_tflop": 0, "memory_joules_per_gb": 0.1}, None) is None


def test_a_run_without_the_reference_is_judged_in_plain_joules(two_cards):
    two_cards.runpytest_subprocess(*ARGS, "--energy-no-reference")
    for record in json.loads((two_cards.path / "r.json").read_text())["results"]:
        assert record["card_adjustment"] is None and "card-adjusted" not in record["flags"]
        raw = record["joules_per_token"] / record["baseline_joules_per_token"]
        assert 1 + record["delta"] == pytest.approx(raw, rel=1e-3)


def test_a_regression_on_another_card_says_it_was_judged_per_unit_of_the_reference(two_cards, monkeypatch):
    monkeypatch.setenv("FAKE_WATTS", "200")  # +100% against reference kernels 12% higher: a real rise
    result = two_cards.runpytest_subprocess(*ARGS, "--energy-card-noise=0.01", "--junitxml=j.xml")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*energy regressed: J per output token per unit of the card reference +*",
                                 "*card adjustment (this card's reference figure on the baseline runs')*+12.0%*"])
    (adjustment,) = set(re.findall(r'name="energy_card_adjustment" value="([^"]+)"', (two_cards.path / "j.xml").read_text()))
    assert float(adjustment) == pytest.approx(1.12)


TWO_GPUS = """
import sys
sys.path.insert(0, {tests!r})
import fake_nvml
from pytest_llm_energy.core import reference
from pytest_llm_energy.plugin import session

fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=300.0),
                                   fake_nvml.FakeGpu("GPU-bbbb", watts=300.0)])

def fake_reference(meter, seconds=2.0):  # each worker measures the card it was given
    return reference.Reference(meter.devices[0].uuid, 1.03, 0.109, 697.0, 465.0, ())

session.measure_reference = fake_reference
"""

MANY = """
import time
import pytest

@pytest.mark.parametrize("n", range(6))
def test_case(energy, n):
    with energy.measure() as m:
        time.sleep(0.05)
        m.output_tokens = 10
"""


def test_each_xdist_workers_card_has_its_line_in_the_header_and_the_reports(pytester, monkeypatch):
    pytest.importorskip("xdist")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makeconftest(TWO_GPUS.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_work=MANY)
    (pytester.path / "b").mkdir()
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    document = json.loads((pytester.path / "r.json").read_text())
    cards = {record["run"]["gpus"][0] for record in document["results"]}
    assert len(cards) == 2  # six tests: xdist gives each worker some
    assert sorted(reference["gpu"] for reference in document["references"]) == sorted(cards)
    header = [line for line in result.stdout.lines if line.startswith("Reference kernels on")]
    assert sorted(line.split()[3].rstrip(":") for line in header) == sorted(cards)
    assert (pytester.path / "r.md").read_text().count("Reference kernels on") == len(cards)


def test_without_a_cuda_device_the_kernels_measure_nothing():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: tests/test_gpu_meter.py runs the kernels")
    from pytest_llm_energy.plugin.reference_kernels import measure_reference

    assert measure_reference(meter=None) is None  # the meter is never read: nothing ran
