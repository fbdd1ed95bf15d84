"""Parallelism: tensor parallel 1 vs 2 on the vLLM engine, where two GPUs are visible."""

import pytest

from pytest_llm_energy import Workload

pytestmark = pytest.mark.suite(profile="gpu")

WORKLOAD = Workload(input_tokens=1024, output_tokens=256, batch_size=32)


@pytest.mark.parametrize("tensor_parallel_size", [1, 2], ids=["tp1", "tp2"])
def test_tensor_parallel(energy, tensor_parallel_size):
    if len(getattr(energy.meter, "devices", ())) < tensor_parallel_size:
        pytest.skip(f"tensor parallel {tensor_parallel_size} needs {tensor_parallel_size} visible GPUs")
    energy.run(WORKLOAD, backend="vllm", tensor_parallel_size=tensor_parallel_size)
