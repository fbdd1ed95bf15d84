"""Decoding: greedy vs sampling vs beam search on one fixed bin (512 in, 128 out, batch 32).

Batch 32: at batch 8 beam search left the GPU idle most of the time (the beams' bookkeeping runs on the
host), and such a bin moves with the runner's CPU (benchmarks/README.md section 10).
"""

import pytest

from pytest_llm_energy import Workload

pytestmark = [pytest.mark.suite(profile="gpu"), pytest.mark.energy(compile=True)]


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.7,p=0.9", "beam:4"])
def test_decoding(energy, decoding):
    energy.run(Workload(input_tokens=512, output_tokens=128, batch_size=32, decoding=decoding))
