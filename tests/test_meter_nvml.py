"""The NVML meter's logic against a fake NVML (simulated counters and time); the real run is GPU-marked."""

import os

import pytest

from pytest_llm_energy.core.errors import EnergyUsageError, MeterError
from pytest_llm_energy.core.measurement import (
    FLAG_BELOW_TICK,
    FLAG_OTHER_PROCESSES,
    FLAG_POWER_INTEGRATED,
    FLAG_POWER_LIMIT_CHANGED,
    FLAG_SHORT_WINDOW,
)
from pytest_llm_energy.plugin.meters.nvml import NvmlMeter, visible_devices

from .fake_nvml import Clock, FakeGpu, FakeNvml

WALL_OFFSET_S = 1.7e9  # wall-clock time (what NVML stamps samples with) runs far from perf_counter's


def make_meter(*gpus, **kwargs):
    clock = Clock()
    nvml = FakeNvml(list(gpus), clock, wall_offset_s=WALL_OFFSET_S, **kwargs)
    meter = NvmlMeter(visible_devices(nvml, None), nvml=nvml, clock=clock, sleep=clock.sleep, idle_seconds=1.0,
                      wall_clock=lambda: clock.now + WALL_OFFSET_S)
    return meter, nvml, clock


def measure(meter, clock, seconds, during=None):
    start = meter.begin()
    clock.sleep(seconds)
    if during:
        during()
    return meter.end(start)


def test_steady_load_energy_matches_power_times_time():
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=700.0))
    reading = measure(meter, clock, 2.0)
    assert reading.meter == "nvml" and not reading.estimated
    # The window is exact in simulated time; aligned ticks keep the energy within 0.5% of P x t.
    assert reading.joules == pytest.approx(700.0 * reading.seconds, rel=0.005)
    assert reading.flags == ()


def test_counter_wraparound_gives_the_true_delta():
    start_mj = 2**64 - 50_000  # the counter wraps 50 J into the window
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=100.0, start_mj=start_mj))
    reading = measure(meter, clock, 2.0)
    assert reading.joules == pytest.approx(100.0 * reading.seconds, rel=0.01)


def test_several_gpus_are_summed_per_device():
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=100.0), FakeGpu("GPU-b", watts=300.0))
    reading = measure(meter, clock, 2.0)
    assert [d.uuid for d in reading.devices] == ["GPU-a", "GPU-b"]
    assert reading.devices[0].joules == pytest.approx(100.0 * reading.seconds, rel=0.01)
    assert reading.devices[1].joules == pytest.approx(300.0 * reading.seconds, rel=0.01)
    assert reading.joules == pytest.approx(sum(d.joules for d in reading.devices))


POWER_CAP, SW_THERMAL, HW_THERMAL = 74, 269, 270  # NVML fields: nanoseconds each reason held the clocks


@pytest.mark.parametrize(("share", "flagged"), [(0.0, False), (0.05, False), (0.4, True), (1.0, True)])
def test_power_capped_only_when_the_cap_held_the_clocks_for_a_meaningful_share(share, flagged):
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=690.0, clock_event_shares={POWER_CAP: share}))
    reading = measure(meter, clock, 2.0)
    assert ("power-capped" in reading.flags) is flagged
    if flagged:
        (note,) = reading.notes
        assert note == f"GPU 0: clocks held at its power cap {share:.0%} of the window"
    assert "throttled" not in reading.flags


def test_throttled_names_each_reason_with_its_share_and_leaves_out_brief_ones():
    shares = {HW_THERMAL: 0.3, SW_THERMAL: 0.02, POWER_CAP: 0.5}
    meter, _, clock = make_meter(FakeGpu("GPU-a", clock_event_shares=shares))
    reading = measure(meter, clock, 2.0)
    assert set(reading.flags) == {"throttled", "power-capped"}
    assert "GPU 0: clocks slowed by hw-thermal 30% of the window" in reading.notes  # sw-thermal 2%: left out


def test_without_durations_the_reasons_at_the_window_ends_are_named_as_such():
    meter, _, clock = make_meter(FakeGpu("GPU-a", clock_event_bits=0x4 | 0x40))  # power cap, hw-thermal
    reading = measure(meter, clock, 2.0)
    assert set(reading.flags) == {"throttled", "power-capped"}
    assert "GPU 0: clocks slowed by hw-thermal at the window's start or end" in reading.notes
    assert "GPU 0: clocks held at its power cap at the window's start or end" in reading.notes


@pytest.mark.parametrize(("busy", "host_bound"), [(0.97, False), (0.55, False), (0.45, True)])
def test_busy_share_from_utilization_samples_and_host_bound_below_the_floor(busy, host_bound):
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=350.0, busy_share=busy))
    reading = measure(meter, clock, 2.0)
    assert reading.busy_share == pytest.approx(busy, abs=0.005)
    assert reading.power_limit_watts == 700.0
    assert ("host-bound" in reading.flags) is host_bound
    if host_bound:
        assert f"GPU busy {busy:.0%} of the window (NVML utilization samples)" in " ".join(reading.notes)


def test_busy_share_counts_only_the_samples_inside_the_window():
    meter, _, clock = make_meter(FakeGpu("GPU-a", busy_share=lambda t: 1.0 if 3.0 <= t < 5.0 else 0.2))
    clock.sleep(3.0)  # busy from here for 2 s: the window; idle before and after
    start = meter.begin()
    clock.sleep(1.8)
    reading = meter.end(start)
    clock.sleep(2.0)
    assert 0.9 <= reading.busy_share <= 1.0  # at most the sample that straddles an end is partly idle
    assert "host-bound" not in reading.flags


def test_busy_share_is_unknown_without_samples_and_averaged_over_gpus():
    meter, _, clock = make_meter(FakeGpu("GPU-a"))  # the driver keeps no utilization samples
    reading = measure(meter, clock, 2.0)
    assert reading.busy_share is None and "host-bound" not in reading.flags
    meter, _, clock = make_meter(FakeGpu("GPU-a", busy_share=1.0), FakeGpu("GPU-b", busy_share=0.5))
    assert measure(meter, clock, 2.0).busy_share == pytest.approx(0.75)


def test_window_shorter_than_a_tick_is_flagged_never_zero():
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=200.0))
    reading = measure(meter, clock, 0.02)
    assert reading.joules > 0
    assert FLAG_BELOW_TICK in reading.flags


def test_window_under_the_precise_minimum_is_flagged():
    meter, _, clock = make_meter(FakeGpu("GPU-a", watts=200.0))
    reading = measure(meter, clock, 0.5)
    assert FLAG_SHORT_WINDOW in reading.flags
    assert reading.joules == pytest.approx(200.0 * reading.seconds, rel=0.02)


def test_device_without_counter_falls_back_to_labelled_power_integration():
    # The integrator thread runs on real time here; 0.3 s at a constant 150 W.
    import time

    nvml = FakeNvml([FakeGpu("GPU-a", watts=150.0, has_counter=False)])
    meter = NvmlMeter(visible_devices(nvml, None), nvml=nvml)
    start = meter.begin()
    time.sleep(0.3)
    reading = meter.end(start)
    assert FLAG_POWER_INTEGRATED in reading.flags
    assert reading.joules == pytest.approx(150.0 * reading.seconds, rel=0.2)


def test_other_processes_on_the_gpu_are_flagged():
    meter, nvml, clock = make_meter(FakeGpu("GPU-a", pids=[os.getpid(), 4242]))
    assert FLAG_OTHER_PROCESSES in measure(meter, clock, 1.5).flags
    nvml.gpus[0].pids = [os.getpid()]
    assert FLAG_OTHER_PROCESSES not in measure(meter, clock, 1.5).flags
    # Host pids seen from a container: ours is invisible, one process is presumably us.
    nvml.gpus[0].pids = [777777]
    assert FLAG_OTHER_PROCESSES not in measure(meter, clock, 1.5).flags


def test_power_limit_change_during_a_window_is_flagged():
    meter, nvml, clock = make_meter(FakeGpu("GPU-a"))

    def lower_limit():
        nvml.gpus[0].power_limit_mw = 500_000

    reading = measure(meter, clock, 1.5, during=lower_limit)
    assert FLAG_POWER_LIMIT_CHANGED in reading.flags


def test_nvml_failing_mid_window_is_a_meter_error():
    meter, nvml, clock = make_meter(FakeGpu("GPU-a"))
    start = meter.begin()
    clock.sleep(1.0)
    nvml.gpus[0].fail_after_reads = nvml.reads  # the next read fails
    with pytest.raises(MeterError, match="NVML failed"):
        meter.end(start)


def test_idle_power_is_measured_once_and_subtracted_in_joules_above_idle():
    meter, nvml, clock = make_meter(FakeGpu("GPU-a", watts=80.0))
    assert meter.idle_watts() == pytest.approx(80.0, rel=0.01)
    reads = nvml.reads
    assert meter.idle_watts() == pytest.approx(80.0, rel=0.01)
    assert nvml.reads == reads  # cached: measured once per session
    nvml.gpus[0].watts = 300.0
    reading = measure(meter, clock, 2.0)
    assert reading.idle_watts == pytest.approx(80.0, rel=0.01)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, ["GPU-aaa", "GPU-bbb", "GPU-ccc"]),
        ("2,0", ["GPU-ccc", "GPU-aaa"]),
        ("GPU-bbb", ["GPU-bbb"]),
        ("bb", ["GPU-bbb"]),  # CUDA accepts a unique UUID prefix without "GPU-"
        ("1,7,0", ["GPU-bbb"]),  # CUDA stops at the first entry that names no device
        ("0,0", ["GPU-aaa"]),
        ("", []),
    ],
)
def test_cuda_visible_devices_map_to_nvml_by_uuid(visible, expected):
    nvml = FakeNvml([FakeGpu("GPU-aaa"), FakeGpu("GPU-bbb"), FakeGpu("GPU-ccc")])
    devices = visible_devices(nvml, visible)
    assert [d.uuid for d in devices] == expected
    assert [d.index for d in devices] == list(range(len(expected)))  # renumbered as CUDA does


def test_no_visible_gpu_is_a_usage_error():
    nvml = FakeNvml([FakeGpu("GPU-aaa")])
    with pytest.raises(EnergyUsageError, match="no GPU is visible"):
        NvmlMeter(visible_devices(nvml, ""), nvml=nvml)


def test_hardware_facts_for_the_fingerprint():
    meter, _, _ = make_meter(FakeGpu("GPU-a"))
    facts = meter.hardware()
    assert facts["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpu_count"] == 1
    assert facts["power_limit_watts"] == 700.0
    assert facts["driver"] == "580.159.04"
