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


def _busy(torch, cuda_index: int, seconds: float) -> None:
    a = torch.randn(8192, 8192, device=f"cuda:{cuda_index}", dtype=torch.bfloat16)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize(cuda_index)


def test_a_meter_on_one_gpu_does_not_count_work_on_another(meter):
    """What xdist's one-GPU-per-worker relies on: a window on GPU A is blind to work on GPU B."""
    torch = pytest.importorskip("torch")
    from pytest_llm_energy.meters.nvml import NvmlMeter

    if len(meter.devices) < 2 or torch.cuda.device_count() < 2:
        pytest.skip("needs two visible GPUs")
    first, second = (NvmlMeter(devices=[device], nvml=meter.nvml) for device in meter.devices[:2])
    # CUDA may number GPUs differently from NVML: find the busy GPU's CUDA index by its UUID.
    cuda_uuids = {"GPU-" + str(torch.cuda.get_device_properties(i).uuid): i for i in range(torch.cuda.device_count())}
    _busy(torch, cuda_uuids[second.devices[0].uuid], 0.5)  # warm-up outside the window
    idle_first = first.idle_watts()
    start_first, start_second = first.begin(), second.begin()
    _busy(torch, cuda_uuids[second.devices[0].uuid], 2.0)
    busy_reading, quiet_reading = second.end(start_second), first.end(start_first)
    quiet_watts = quiet_reading.joules / quiet_reading.seconds
    busy_watts = busy_reading.joules / busy_reading.seconds
    print(f"quiet GPU {quiet_watts:.0f} W (idle {idle_first:.0f} W), busy GPU {busy_watts:.0f} W")
    assert quiet_watts < 1.3 * idle_first
    assert busy_watts > 2 * quiet_watts
