"""The NVML meter on real counters (runs where an NVIDIA GPU is visible; skipped elsewhere)."""

import time

import pytest

from pytest_llm_energy.core.errors import EnergyUsageError

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def meter():
    from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

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
    from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

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


def test_busy_share_tells_a_busy_gpu_from_one_that_waits_on_the_host(meter):
    """NVML's utilization samples: back-to-back matmuls keep the GPU busy; a host that sleeps between small
    kernels leaves it idle most of the window, which the meter flags host-bound."""
    torch = pytest.importorskip("torch")
    start = meter.begin()
    _busy(torch, meter.devices[0].index, 1.5)
    busy = meter.end(start)
    small = torch.ones(1024, device=f"cuda:{meter.devices[0].index}")
    start = meter.begin()
    deadline = time.perf_counter() + 1.5
    while time.perf_counter() < deadline:
        small.add_(1)
        torch.cuda.synchronize()
        time.sleep(0.01)
    waiting = meter.end(start)
    assert busy.busy_share is not None and waiting.busy_share is not None, "no NVML utilization samples"
    assert busy.busy_share > 0.75 and "host-bound" not in busy.flags
    assert waiting.busy_share < 0.3 and "host-bound" in waiting.flags
    assert busy.power_limit_watts and busy.power_limit_watts > 100


def test_reference_kernels_measure_compute_and_memory_energy(meter):
    pytest.importorskip("torch")
    from pytest_llm_energy.plugin.reference_kernels import measure_reference

    reference = measure_reference(meter, seconds=1.2)
    assert reference is not None
    # An H100 or H200 at 700 W: about 1 J per bf16 TFLOP and under 1 J per GB copied, far above zero.
    assert 0.05 < reference.compute_joules_per_tflop < 20
    assert 0.001 < reference.memory_joules_per_gb < 5
    assert reference.compute_watts > 1.5 * meter.idle_watts()
