"""A baseline measured on other GPUs of the same model is judged with card-to-card noise added.

Two fake H100s (fake NVML, pure logic of the plugin's flow), three runs recorded on one of them; the real
card-to-card spread the default prior comes from was measured on H200s (benchmarks/README.md section 6).
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import INNER_RUNS_WITHOUT

CONFTEST = """
import os, sys
sys.path.insert(0, {tests!r})
import fake_nvml

watts = float(os.environ.get("FAKE_WATTS", "100"))
fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=watts),
                                   fake_nvml.FakeGpu("GPU-bbbb", watts=watts)])
"""

STEADY = """
import time
from pathlib import Path

def test_steady(energy):
    with energy.measure() as m:
        time.sleep(0.1)
        m.output_tokens = 10
"""

# A fake GPU's runs agree to the watt: the team says its runs are that steady (a 1% prior), so three recorded
# runs can show a 12% rise on the card that recorded them.
ARGS = ("--energy-gpu=h100", "--energy-trials=6", "--energy-warmup=0", "--energy-min-window=0.05",
        "--energy-run-noise=0.01", "-p", "no:cacheprovider", "--energy-json=r.json")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three runs recorded on GPU-aaaa, each its own process, as a team starts a history (once a module)."""
    folder = tmp_path_factory.mktemp("recorded")
    (folder / "conftest.py").write_text(CONFTEST.format(tests=str(Path(__file__).parent)))
    (folder / "test_steady.py").write_text(STEADY)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environment |= {"CUDA_VISIBLE_DEVICES": "GPU-aaaa", "PYTEST_ADDOPTS": INNER_RUNS_WITHOUT}
    for _ in range(3):
        done = subprocess.run([sys.executable, "-m", "pytest", *ARGS, "--energy-update-baselines"], cwd=folder,
                              env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:]
    return folder / "baselines"


@pytest.fixture
def cards(pytester, recorded):
    """A fresh copy of the recorded baselines, and the run's files, for one test to change."""
    pytester.makeconftest(CONFTEST.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_steady=STEADY)
    shutil.copytree(recorded, pytester.path / "baselines")
    return pytester


def _rerun(pytester, monkeypatch, gpu, watts, *extra):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpu)
    monkeypatch.setenv("FAKE_WATTS", str(watts))
    result = pytester.runpytest_subprocess(*ARGS, *extra)
    (record,) = json.loads((pytester.path / "r.json").read_text())["results"]
    return result, record


def test_twelve_percent_more_on_the_same_gpu_is_a_regression(cards, monkeypatch):
    result, record = _rerun(cards, monkeypatch, "GPU-aaaa", 112)
    result.assert_outcomes(failed=1)
    assert record["verdict"] == "regressed"
    assert record["card_noise"] == 0 and record["baseline_gpus"] == [] and "other-gpu" not in record["flags"]


def test_the_same_change_against_another_cards_baseline_is_not_called_a_regression(cards, monkeypatch):
    result, record = _rerun(cards, monkeypatch, "GPU-bbbb", 112)
    result.assert_outcomes(passed=1)
    assert record["verdict"] == "inconclusive"
    assert record["baseline_gpus"] == ["GPU-aaaa"] and "other-gpu" in record["flags"]
    # one baseline card: the card spread counts for both cards, (1 + 1/1) x 5%^2
    assert record["card_noise"] == pytest.approx(math.expm1(math.sqrt(2) * math.log1p(0.05)), rel=1e-4)
    assert record["noise"]["run_source"] == "recorded runs" and record["runs"] == 3
    assert "baseline measured on other GPUs (GPU-aaaa)" in " ".join(record["notes"])


def test_card_noise_zero_treats_every_card_of_a_model_as_one(cards, monkeypatch):
    result, record = _rerun(cards, monkeypatch, "GPU-bbbb", 112, "--energy-card-noise=0")
    result.assert_outcomes(failed=1)
    assert record["verdict"] == "regressed" and "other-gpu" in record["flags"]


def test_the_marker_sets_card_noise_per_test(cards, monkeypatch):
    cards.makepyfile(test_steady="import pytest\n" + STEADY.replace(
        "def test_steady", "@pytest.mark.energy(card_noise=0)\ndef test_steady"))
    result, record = _rerun(cards, monkeypatch, "GPU-bbbb", 112)
    result.assert_outcomes(failed=1)
    assert record["verdict"] == "regressed" and record["card_noise"] == 0, record["reason"]


def test_a_large_change_on_another_card_is_still_caught(cards, monkeypatch):
    result, record = _rerun(cards, monkeypatch, "GPU-bbbb", 150)
    result.assert_outcomes(failed=1)
    assert record["verdict"] == "regressed"


def test_recording_on_another_card_stores_no_comparison_flag(cards, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    cards.runpytest_subprocess(*ARGS, "--energy-update-baselines").assert_outcomes(passed=1)
    (entry,) = json.loads((cards.path / "baselines/h100/test_steady.json").read_text())["entries"].values()
    assert "other-gpu" not in entry["flags"]
    assert [d["uuid"] for d in entry["measurement"]["devices"]] == ["GPU-bbbb"]


def test_a_baseline_without_device_uuids_is_compared_as_before(cards, monkeypatch):
    path = cards.path / "baselines/h100/test_steady.json"
    document = json.loads(path.read_text())
    for entry in document["entries"].values():
        for run in entry["runs"]:
            del run["gpus"]  # as an older or hand-written entry
    path.write_text(json.dumps(document))
    result, record = _rerun(cards, monkeypatch, "GPU-bbbb", 112)
    result.assert_outcomes(failed=1)
    assert record["verdict"] == "regressed" and record["baseline_gpus"] == [] and record["card_noise"] == 0
