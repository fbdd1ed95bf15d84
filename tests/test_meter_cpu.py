"""The CPU-time meter on real processes: the labelled estimate of the machines without RAPL."""

import subprocess
import sys
import time

import psutil

from pytest_llm_energy.plugin.meters.cpu import CpuTimeMeter, cpu_seconds_between, process_tree_cpu_seconds

BURN_THEN_WAIT = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(60)"


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_descendant_that_ends_during_a_window_takes_none_of_its_cpu_time_out():
    """A server killed mid-run left the tree; its earlier CPU seconds once made a window negative."""
    child = subprocess.Popen([sys.executable, "-c", BURN_THEN_WAIT])
    try:
        deadline = time.monotonic() + 30
        while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.45 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter = CpuTimeMeter(watts_per_core=10.0)
        start = meter.begin()
        child.kill()
        child.wait()
        _burn(0.2)
        reading = meter.end(start)
    finally:
        child.kill()
        child.wait()
    cpu_seconds = reading.joules / 10.0
    assert 0.15 < cpu_seconds < 0.5  # this process's 0.2 s, not minus the child's 0.5 s


def test_new_descendants_count_whole_and_each_process_is_differenced_alone():
    before = {"self": 1.0, (10, 5.0): 3.0, (11, 6.0): 2.0}
    after = {"self": 1.5, (10, 5.0): 3.25, (12, 7.0): 0.5}  # 11 ended, 12 started in the window
    assert cpu_seconds_between(before, after) == 0.5 + 0.25 + 0.5


def test_a_reading_names_this_process_and_its_live_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        reading = process_tree_cpu_seconds()
        assert "self" in reading
        assert any(key != "self" and key[0] == child.pid for key in reading)
    finally:
        child.kill()
        child.wait()


def test_a_short_cpu_window_says_why_it_is_flagged():
    # `short-window` on the CPU had no explanation: the CPU-time estimate's 0.5 s minimum was nowhere.
    meter = CpuTimeMeter()
    start = meter.begin()
    sum(i * i for i in range(20_000))
    reading = meter.end(start)
    assert reading.flags == ("short-window",)
    (note,) = [note for note in reading.notes if "short work" in note]
    assert "is under 0.5 s: child processes' CPU time is counted in 10 ms ticks" in note
    assert "energy(fn, ...)" in note and "--energy-min-window" in note
