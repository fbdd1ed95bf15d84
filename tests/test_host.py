"""The host probe (host.py): a fixed Python loop on each CPU, in a thread pinned to each in turn, and the
header line it makes. It needs Linux's per-thread CPU sets; elsewhere it gives no probe."""

import json
import os
from pathlib import Path

import pytest

from pytest_llm_energy.plugin import host
from pytest_llm_energy.plugin.host import HostProbe, probe_host
from pytest_llm_energy.plugin.summary import host_line

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs per-thread CPU sets")


def test_readings_at_one_and_a_half_times_the_fastest_or_more_count_as_slow():
    probe = HostProbe.of(4, [0.020, 0.021, 0.030, 0.045, 0.0299, 0.022, 0.041, 0.020])
    assert probe == HostProbe(cpus=4, fastest_ms=20.0, readings=8, slow=3)


def test_header_line_says_whether_the_cpus_looked_shared_or_held_by_a_quota():
    assert host_line(HostProbe.of(2, [0.006, 0.0062, 0.0061, 0.0065]).to_dict()) == (
        "Host: 2 CPUs, a fixed Python loop 6 ms at best, no reading 1.5x slower")
    shared = host_line(HostProbe(16, 21.3, 32, 14).to_dict())
    assert shared == ("Host: 16 CPUs, a fixed Python loop 21.3 ms at best; 14 of 32 readings 1.5x slower or more: "
                      "its CPUs are shared, and what waits on the host (bins under about 80% GPU busy) moves with them")
    quota = host_line(HostProbe(4, 7.0, 8, 3, throttled_ms=40.0).to_dict())
    assert quota.endswith("3 of 8 readings 1.5x slower or more, while the container's CPU quota held it 40 ms")


@linux_only
def test_a_thread_of_its_own_runs_the_loop_on_each_cpu_in_turn_and_the_callers_cpu_set_is_untouched():
    allowed = os.sched_getaffinity(0)
    seen = []

    def loop():
        seen.append(os.sched_getaffinity(0))
        return 0.01

    probe = probe_host(loop, rounds=2)
    assert probe == HostProbe(len(allowed), 10.0, 2 * len(allowed), 0, probe.throttled_ms)
    assert seen == [{cpu} for _ in range(2) for cpu in sorted(allowed) for _ in range(2)]  # best of two each
    assert os.sched_getaffinity(0) == allowed


@linux_only
def test_a_container_that_forbids_pinning_gives_no_probe(monkeypatch):
    def refuse(pid, cpus):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(host.os, "sched_setaffinity", refuse)
    assert probe_host(lambda: 0.01) is None


def test_a_large_host_is_read_on_at_most_max_cpus_spread_over_its_range(monkeypatch):
    read = []
    monkeypatch.setattr(host.os, "sched_getaffinity", lambda pid: set(range(100)), raising=False)
    monkeypatch.setattr(host, "cpu_readings", lambda loop, cpus, rounds: read.extend(cpus) or [(0, 0.01)])
    assert probe_host(lambda: 0.01).cpus == 100
    assert read == list(range(0, 100, 4)) and len(read) <= host.MAX_CPUS


@linux_only
def test_the_cgroup_quota_throttling_during_the_probe_is_reported(tmp_path, monkeypatch):
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 100\nthrottled_usec 5000\n")
    monkeypatch.setattr(host, "CGROUP_CPU_STAT", stat)

    def loop():  # the quota holds the container while the probe runs
        stat.write_text("usage_usec 200\nthrottled_usec 45000\n")
        return 0.01

    assert probe_host(loop).throttled_ms == 40.0
    monkeypatch.setattr(host, "CGROUP_CPU_STAT", tmp_path / "absent")  # cgroup v1, or no cgroup
    assert probe_host(lambda: 0.01).throttled_ms is None


@linux_only
def test_the_real_loop_reads_every_cpu():
    probe = probe_host()
    assert probe is not None and probe.readings == 2 * min(probe.cpus, host.MAX_CPUS) and probe.fastest_ms > 0


def test_without_thread_pinning_there_is_no_probe(monkeypatch):
    monkeypatch.delattr(host.os, "sched_setaffinity", raising=False)  # as on macOS
    assert probe_host(lambda: 0.01) is None


GPU_RUN_CONFTEST = """
import sys
sys.path.insert(0, {tests!r})
import fake_nvml

fake_nvml.install_for_plugin_run([fake_nvml.FakeGpu("GPU-aaaa", watts=300.0)])
"""

GPU_RUN_TEST = """
import time

def test_one(energy):
    with energy.measure() as m:
        time.sleep(0.05)
        m.output_tokens = 10
"""


@linux_only
def test_a_gpu_run_says_in_its_header_and_reports_how_fast_its_cpus_ran_python(pytester):
    """A run on (fake) NVML, in its own process as users run it: the probe's line and its JSON object."""
    pytester.makeconftest(GPU_RUN_CONFTEST.format(tests=str(Path(__file__).parent)))
    pytester.makepyfile(test_work=GPU_RUN_TEST)
    (pytester.path / "b").mkdir()
    result = pytester.runpytest_subprocess(
        "--energy-gpu=h100", "--energy-trials=2", "--energy-warmup=0", "--energy-min-window=0.02",
        "--energy-no-reference", "--energy-baselines=b", "--energy-json=r.json", "--energy-md=r.md",
        "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    cpus = len(os.sched_getaffinity(0))
    result.stdout.fnmatch_lines([f"Host: {cpus} CPUs, a fixed Python loop * ms at best*"])
    probe = json.loads((pytester.path / "r.json").read_text())["host"]
    assert probe["cpus"] == cpus and probe["readings"] == 2 * min(cpus, host.MAX_CPUS)
    assert f"Host: {cpus} CPUs" in (pytester.path / "r.md").read_text()
