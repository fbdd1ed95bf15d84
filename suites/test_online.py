"""Online vs offline: the vLLM server at a few request rates against offline batches of the same bin.

The online numbers come from the steady-state window (target concurrency reached until the tail),
with TTFT and inter-token latency beside J per token. Skipped where vLLM is not installed.
"""

import pytest

from pytest_llm_energy import Workload

pytestmark = pytest.mark.suite(profile="gpu")

WORKLOAD = Workload(input_tokens=512, output_tokens=128, batch_size=16)


@pytest.mark.parametrize("request_rate", [2.0, 8.0, float("inf")], ids=["2rps", "8rps", "burst"])
def test_online(energy, request_rate):
    result = energy.run(WORKLOAD, backend="vllm-server", request_rate=request_rate)
    assert result.latency.get("ttft_s_median") is not None


def test_offline(energy):
    energy.run(WORKLOAD, backend="vllm")
