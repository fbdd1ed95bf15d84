"""Backends: HF transformers vs the vLLM engine on the same bins (the paper's headline comparison).

HF runs compiled like the other GPU suites, vLLM with its own CUDA graphs. A backend that is not installed
here is skipped with the reason (e.g. vLLM on a runner without it).
"""

import pytest

pytestmark = pytest.mark.suite(profile="gpu")

OPTIONS = {"hf": {"compile": True}, "vllm": {}}


@pytest.mark.parametrize("backend", ["hf", "vllm"])
@pytest.mark.trace_workloads(trace="azure-conv", top_k=2)
def test_backend(energy, backend, workload):
    energy.run(workload, backend=backend, **OPTIONS[backend])
