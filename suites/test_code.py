"""Code completion: the largest bins of the Azure code trace, almost all prefill (long in, short out)."""

import pytest

pytestmark = [pytest.mark.suite(profile="gpu"), pytest.mark.energy(compile=True)]


@pytest.mark.trace_workloads(trace="azure-code", top_k=3)
def test_code(energy, workload):
    energy.run(workload)
