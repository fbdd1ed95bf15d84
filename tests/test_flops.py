"""The FLOPs ideal: the formula against a hand computation, parameter counts, and the GPU table."""

from __future__ import annotations

import pytest

from pytest_llm_energy.cli.flops import (
    ModelShape,
    decode_flops,
    ideal_energy,
    prefill_flops,
    request_flops,
    workload_flops,
    workload_ideal,
)
from pytest_llm_energy.core.errors import EnergyUsageError
from pytest_llm_energy.core.workload import Workload

TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 1000,
    "model_type": "llama",
}
# Llama-3.2-1B shapes (from its public config.json)
LLAMA_1B = {
    "num_hidden_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "model_type": "llama",
}


def test_parameters_by_hand():
    shape = ModelShape.from_config(TINY)
    # attention: 64 x 16 x (2x4 + 2x2) = 12,288; gated MLP: 3 x 64 x 128 = 24,576
    assert shape.layer_parameters == 36_864
    assert shape.block_parameters == 73_728
    assert shape.lm_head_parameters == 64_000


def test_llama_1b_matrix_parameters_match_the_published_count():
    shape = ModelShape.from_config(LLAMA_1B)
    # 16 x (2048x64x80 + 3x2048x8192) + 2048x128256; HF's 1,235,814,400 adds 67,584 norm weights
    assert shape.block_parameters + shape.lm_head_parameters == 1_235_746_816


def test_flops_by_hand_for_one_request():
    shape = ModelShape.from_config(TINY)
    # P = 4, G = 3.
    # prefill: 2 x 73,728 x 4 = 589,824; LM head once: 2 x 64,000 = 128,000;
    #          attention: 4 x 2 layers x 64 x (1+2+3+4 = 10 keys) = 5,120          -> 722,944
    assert prefill_flops(shape, 4) == 722_944
    # decode, 2 steps: 2 x (2 x 73,728 + 2 x 64,000) = 550,912;
    #          attention: 4 x 2 x 64 x (5+6 = 11 keys) = 5,632                       -> 556,544
    assert decode_flops(shape, 4, 3) == 556_544
    assert request_flops(shape, 4, 3) == 1_279_488
    assert workload_flops(shape, Workload(4, 3, batch_size=2)) == 2 * 1_279_488


def test_one_output_token_is_prefill_only():
    shape = ModelShape.from_config(TINY)
    assert decode_flops(shape, 100, 1) == 0


def test_head_dim_and_kv_heads_default_from_the_config():
    config = dict(TINY)
    del config["head_dim"], config["num_key_value_heads"]
    shape = ModelShape.from_config(config)
    assert (shape.head_dim, shape.kv_heads) == (16, 4)


def test_ideal_energy_on_h100_and_none_on_cpu():
    ideal = ideal_energy(989e12, "h100")  # one second at the bf16 peak
    assert ideal.joules == pytest.approx(700.0)  # ... at the 700 W TDP
    assert ideal.ratio(1400.0) == pytest.approx(2.0)
    cpu = ideal_energy(1e12, "cpu")
    assert cpu.joules is None and "no FLOPs ideal on the CPU" in cpu.reason and cpu.ratio(1.0) is None
    unknown = ideal_energy(1e12, "b200")
    assert unknown.joules is None and "gpus.py" in unknown.reason


def test_workload_ideal_by_hand():
    ideal = workload_ideal(TINY, Workload(4, 3, batch_size=2), "h100")
    assert ideal.joules == pytest.approx(2 * 1_279_488 * 700 / 989e12)


def test_bad_configs_say_what_is_missing():
    with pytest.raises(EnergyUsageError, match="lacks intermediate_size"):
        ModelShape.from_config({k: v for k, v in TINY.items() if k != "intermediate_size"})
    with pytest.raises(EnergyUsageError, match="mixture-of-experts"):
        ModelShape.from_config(TINY | {"num_local_experts": 8})
