"""Which HF path keeps the GPU busy on the suites' bins: eager vs compiled (static cache + CUDA graphs), the
Llama-3.2-1B and Llama-3.1-8B configs, batch 8 and 32. Each result carries the share of its windows the GPU
ran kernels (NVML utilization samples) and its average power against the power limit; the suites' paths are
chosen from these (benchmarks/README.md section 10).

    pytest benchmarks/gpu_bound --energy-gpu=auto --energy-trials=3 --energy-json=OUT.json --durations=0
"""

import pytest

from pytest_llm_energy import Workload

CHAT = dict(input_tokens=512, output_tokens=128)  # azure-conv's in512-out128 bin
CODE = dict(input_tokens=2048, output_tokens=16)  # azure-code's in2048-out16 bin

# In the order that loads each model once (the pool keeps one loaded backend).
CASES = [
    ("llama-3.2-1b", False, CHAT, 8, "greedy"),
    ("llama-3.2-1b", False, CHAT, 32, "greedy"),
    ("llama-3.2-1b", False, CODE, 8, "greedy"),
    ("llama-3.2-1b", False, CODE, 32, "greedy"),
    ("llama-3.2-1b", True, CHAT, 8, "greedy"),
    ("llama-3.2-1b", True, CHAT, 32, "greedy"),
    ("llama-3.2-1b", True, CHAT, 8, "beam:4"),
    ("llama-3.2-1b", True, CODE, 8, "greedy"),
    ("llama-3.1-8b", True, CHAT, 8, "greedy"),
    ("llama-3.1-8b", True, CHAT, 32, "greedy"),
]


@pytest.mark.parametrize(
    ("model", "compiled", "lengths", "batch", "decoding"), CASES,
    ids=[f"{m.removeprefix('llama-')}-{'compiled' if c else 'eager'}-in{n['input_tokens']}-out{n['output_tokens']}"
         f"-b{b}-{d.replace(':', '')}" for m, c, n, b, d in CASES],
)
def test_path(energy, model, compiled, lengths, batch, decoding):
    energy.run(Workload(**lengths, batch_size=batch, decoding=decoding), backend="hf", model=model,
               compile=compiled)
