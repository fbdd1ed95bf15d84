"""Ctrl-C during a run that updates baselines: no baseline file changes or is half-written."""

import json
import signal
import sys
import time

import pytest

SLOW_TESTS = """
import time

def test_fast(energy):
    with energy.measure() as m:
        sum(i * i for i in range(200000))
        m.output_tokens = 10

def test_slow(energy):
    with energy.measure() as m:
        sum(i * i for i in range(200000))
        m.output_tokens = 10
    time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_sigint_during_update_changes_no_baseline(pytester):
    pytester.makepyfile(test_int=SLOW_TESTS)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    existing = {"schema": "pytest-llm-energy/baseline", "schema_version": 1, "gpu": "cpu",
                "entries": {"test_int.py::test_fast": {"joules_per_token": 9.0, "samples": [9.0, 9.0]}}}
    (folder / "test_int.json").write_text(json.dumps(existing))
    before = (folder / "test_int.json").read_bytes()
    process = pytester.popen(
        [sys.executable, "-m", "pytest", "--energy-gpu=cpu", "--energy-update-baselines", "--energy-trials=2",
         "--energy-min-window=0.05", "-p", "no:cacheprovider", "-v", "-s"],
        stdout=open(pytester.path / "out.txt", "wb"), stderr=open(pytester.path / "err.txt", "wb"),
    )
    deadline = time.time() + 60
    while b"test_slow" not in (pytester.path / "out.txt").read_bytes() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # inside test_slow's sleep, after test_fast passed and its result was collected
    process.send_signal(signal.SIGINT)
    assert process.wait(90) == pytest.ExitCode.INTERRUPTED  # generous: a loaded 2-core CI machine
    assert (folder / "test_int.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["test_int.json"]  # no temporary left behind
    assert b"baselines NOT written: the run was interrupted" in (pytester.path / "out.txt").read_bytes()
