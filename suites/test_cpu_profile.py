"""CPU profile: the largest short bins of the Azure conversation trace on the tiny model, in a few minutes.

The three largest bins of azure-conv with at most 1024 input and 128 output tokens (together 25% of its
requests); the longer bins that dominate the trace run in the GPU suites.

What `pytest suites/ --energy-gpu=cpu` runs on a machine without a GPU. Energy here is an ESTIMATE
(CPU time x watts per core, or RAPL where readable); it exercises the whole flow, not a GPU's joules.
"""

import pytest

pytestmark = [pytest.mark.suite(profile="cpu"), pytest.mark.energy(backend="hf")]


@pytest.mark.trace_workloads(trace="azure-conv", top_k=3, max_input_tokens=1024, max_output_tokens=128)
def test_chat_bins(energy, workload):
    energy.run(workload)
