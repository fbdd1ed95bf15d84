"""The NVML meter on real counters (runs where an NVIDIA GPU is visible; skipped elsewhere)."""

import time

import pytest

from pytest_llm_energy.errors import EnergyUsageError

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def meter():
    from pytest_llm_energy.meters.nvml import NvmlMeter

    try:
        return NvmlMeter()
    except EnergyUsageError as error:
        pytest.skip(f"no NVIDIA GPU here: {error}")


def test_idle_window_is_positive_and_near_idle_power(meter):
    idle = meter.idle_watts()
    start = meter.begin()
    time.sleep(1.2)
    reading = meter.end(start)
    assert reading.joules > 0
    assert reading.joules / reading.seconds == pytest.approx(idle, rel=0.5)
    assert [d.uuid for d in reading.devices] == [d.uuid for d in meter.devices]


def test_a_busy_window_uses_more_power_than_idle(meter):
    torch = pytest.importorskip("torch")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    start = meter.begin()
    deadline = time.perf_counter() + 1.5
    while time.perf_counter() < deadline:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
    reading = meter.end(start)
    assert reading.joules / reading.seconds > 1.5 * meter.idle_watts()
