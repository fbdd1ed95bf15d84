"""Chat: the largest bins of the Azure conversation trace (by share of requests) x batch sizes."""

import pytest

pytestmark = [pytest.mark.suite(profile="gpu"), pytest.mark.energy(compile=True)]


@pytest.mark.trace_workloads(trace="azure-conv", top_k=3)
def test_chat(energy, workload):
    energy.run(workload)
