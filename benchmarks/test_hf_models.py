"""J per output token of the HF backend on the Llama-3.2-1B and Llama-3.1-8B configs, through energy.run.

The shapes of MEASUREMENTS.md (an H200), to compare on the card this runs on. Reproduce on a GPU:

    pytest benchmarks/test_hf_models.py --energy-gpu=auto -p no:cacheprovider \
        --energy-baselines=benchmarks/no-baselines --energy-update-baselines --energy-json=hf_models.json

(`--energy-update-baselines` into a scratch folder only so no committed baseline is compared or touched.)
The JSON report holds every sample, the meter, the card and the stack.
"""

import pytest

from pytest_llm_energy import Workload

CASES = [
    ("llama-3.2-1b", Workload(256, 128, 1)),
    ("llama-3.2-1b", Workload(256, 128, 8)),
    ("llama-3.2-1b", Workload(256, 128, 32)),
    ("llama-3.2-1b", Workload(1024, 256, 32)),
    ("llama-3.1-8b", Workload(512, 128, 1)),
    ("llama-3.1-8b", Workload(512, 128, 16)),
]


@pytest.mark.parametrize(("model", "workload"), CASES, ids=[f"{m}-{w.label}" for m, w in CASES])
def test_hf_model(energy, model, workload):
    energy.run(workload, model=model, backend="hf")
