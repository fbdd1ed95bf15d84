"""Decoding: greedy vs sampling vs beam search on one fixed bin (512 in, 128 out, batch 8)."""

import pytest

from pytest_llm_energy import Workload

pytestmark = pytest.mark.suite(profile="gpu")


@pytest.mark.parametrize("decoding", ["greedy", "sampling:t=0.7,p=0.9", "beam:4"])
def test_decoding(energy, decoding):
    energy.run(Workload(input_tokens=512, output_tokens=128, batch_size=8, decoding=decoding))
