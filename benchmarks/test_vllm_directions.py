"""The paper's directions on vLLM, through energy.run on one card in one process (benchmarks/README.md §11).

Each case is one row of the directions table: CUDA graphs against `enforce_eager`, greedy against sampling,
batch size on the Llama-3.1-8B shapes (offline, and the server at a matching concurrency). HF against vLLM on
the same bins comes from the suites (`suites/test_backends.py`). Cases are ordered so that cases of one engine
(backend, model, options, batch size) run one after another: an engine starts once for them. Reproduce on a GPU
with vLLM installed:

    pytest benchmarks/test_vllm_directions.py --energy-gpu=auto -p no:cacheprovider -s \
        --energy-baselines=SCRATCH --energy-update-baselines --energy-json=directions.json

(a scratch baselines folder, so no committed baseline is compared or touched; three trials a case.)
"""

import pytest

from pytest_llm_energy import Workload

BIN = dict(input_tokens=512, output_tokens=128)
CASES = [
    # 1B shapes, batch 32: CUDA graphs (vLLM's default) and eager, greedy and sampling on the graphs engine.
    ("vllm", "llama-3.2-1b", Workload(**BIN, batch_size=32), {}),
    ("vllm", "llama-3.2-1b", Workload(**BIN, batch_size=32, decoding="sampling:t=0.7,p=0.9"), {}),
    ("vllm", "llama-3.2-1b", Workload(**BIN, batch_size=32), {"cuda_graphs": False}),
    # 8B shapes: batch 8 to 512 offline, then the server at the same concurrency (all requests at once).
    ("vllm", "llama-3.1-8b", Workload(**BIN, batch_size=8), {}),
    ("vllm", "llama-3.1-8b", Workload(**BIN, batch_size=64), {}),
    ("vllm", "llama-3.1-8b", Workload(**BIN, batch_size=512), {}),
    ("vllm-server", "llama-3.1-8b", Workload(**BIN, batch_size=64), {}),
]


def case_id(case) -> str:
    backend, model, workload, options = case
    extra = "".join(f"-{key}={value}" for key, value in options.items())
    return f"{backend}-{model}-{workload.label}{extra}"


@pytest.mark.energy(trials=3)
@pytest.mark.parametrize(("backend", "model", "workload", "options"), CASES, ids=[case_id(c) for c in CASES])
def test_direction(energy, backend, model, workload, options):
    energy.run(workload, backend=backend, model=model, **options)
