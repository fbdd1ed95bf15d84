"""Decoding: greedy vs sampling vs beam search on one fixed bin (512 in, 128 out, batch 8)."""

import pytest

from pytest_llm_energy import Workload

# Batch 8 HF eager: whole runs moved up to 9% on an H200 (sampling): a larger prior than the suites' RUN_NOISE.
pytestmark = [pytest.mark.suite(profile="gpu"), pytest.mark.energy(run_noise=0.08)]


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.7,p=0.9", "beam:4"])
def test_decoding(energy, decoding):
    energy.run(Workload(input_tokens=512, output_tokens=128, batch_size=8, decoding=decoding))
