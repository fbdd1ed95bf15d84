"""The host probe (host.py): a fixed Python loop on each CPU, pinned in turn, and the header line it makes."""

import os

from pytest_llm_energy import host
from pytest_llm_energy.host import HostProbe, probe_host
from pytest_llm_energy.report import host_line


def test_readings_at_one_and_a_half_times_the_fastest_or_more_count_as_slow():
    probe = HostProbe.of(4, [0.020, 0.021, 0.030, 0.045, 0.0299, 0.022, 0.041, 0.020])
    assert probe == HostProbe(cpus=4, fastest_ms=20.0, readings=8, slow=3)


def test_header_line_says_whether_the_cpus_looked_shared():
    assert host_line(HostProbe.of(2, [0.006, 0.0062, 0.0061, 0.0065]).to_dict()) == (
        "Host: 2 CPUs, a fixed Python loop 6 ms at best, no reading 1.5x slower")
    shared = host_line(HostProbe(16, 21.3, 32, 14).to_dict())
    assert shared.startswith("Host: 16 CPUs, a fixed Python loop 21.3 ms at best; 14 of 32 readings 1.5x slower")
    assert "its CPUs are shared" in shared


def test_the_loop_runs_on_each_allowed_cpu_in_turn_and_the_cpu_set_is_restored():
    allowed = os.sched_getaffinity(0)
    seen = []

    def loop():
        seen.append(os.sched_getaffinity(0))
        return 0.01

    probe = probe_host(loop, rounds=2)
    assert probe == HostProbe(len(allowed), 10.0, 2 * len(allowed), 0)
    assert seen == [{cpu} for _ in range(2) for cpu in sorted(allowed) for _ in range(2)]  # best of two each
    assert os.sched_getaffinity(0) == allowed


def test_a_container_that_forbids_pinning_gives_no_probe_and_keeps_the_cpu_set(monkeypatch):
    allowed = os.sched_getaffinity(0)
    real = os.sched_setaffinity

    def refuse(pid, cpus):
        if set(cpus) != allowed:
            raise PermissionError("operation not permitted")
        real(pid, cpus)

    monkeypatch.setattr(host.os, "sched_setaffinity", refuse)
    assert probe_host(lambda: 0.01) is None
    assert os.sched_getaffinity(0) == allowed


def test_the_real_loop_reads_every_cpu():
    probe = probe_host()
    assert probe is not None and probe.readings == 2 * probe.cpus and probe.fastest_ms > 0
    assert 0 <= probe.slow < probe.readings  # the fastest reading is never slow


def test_without_thread_pinning_there_is_no_probe(monkeypatch):
    monkeypatch.delattr(host.os, "sched_setaffinity")  # as on macOS
    assert probe_host(lambda: 0.01) is None
