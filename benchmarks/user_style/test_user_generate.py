"""A user's own energy tests, as a team would write them around its model (benchmarks/verdict_check.py runs them).

Compiled HF `generate` (static cache + CUDA graphs) of Llama-3.2-1B shapes with random weights, 512 tokens in
and 256 out; the plugin's default settings. `energy.measure()` around one generate per batch size, and one
short generate (about 0.3 s) written with `energy(fn, ...)`, which repeats it inside each window.
"""

import pytest
import torch
import transformers

from pytest_llm_energy.core.models import resolve_model

INPUT_TOKENS, OUTPUT_TOKENS = 512, 256


@pytest.fixture(scope="module")
def model():
    config = transformers.AutoConfig.from_pretrained(resolve_model("llama-3.2-1b").local_folder())
    with torch.device("cuda"):
        built = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return built.eval()


def generate(model, batch: int, new_tokens: int):
    prompts = torch.randint(1000, model.config.vocab_size, (batch, INPUT_TOKENS), device="cuda",
                            generator=torch.Generator("cuda").manual_seed(0))
    return model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                          min_new_tokens=new_tokens, max_new_tokens=new_tokens, pad_token_id=0,
                          cache_implementation="static",
                          compile_config=transformers.CompileConfig(mode="reduce-overhead"))


@pytest.mark.parametrize("batch", [8, 16, 32, 64])
def test_generate(energy, model, batch):
    with energy.measure() as m:
        generate(model, batch, OUTPUT_TOKENS)
        m.output_tokens = batch * OUTPUT_TOKENS


def test_short_generate(energy, model):
    out = energy(generate, model, 1, 64, output_tokens=64)
    assert out.shape == (1, INPUT_TOKENS + 64)
