"""A user's generate tests, run by `--energy-ab` in two arms on one GPU (benchmarks/ab_check.py runs them).

Compiled HF `generate` (static cache + CUDA graphs) of Llama-3.2-1B shapes with random weights, 512 tokens
in and 256 out, written with `energy(fn, ...)`. Arm A (the reference) runs with AB_REFERENCE=1. Tests of
the `plus5` group give arm B a real change of known size: 5% more decode steps, counted as the same tokens.
The `aa` group is the same work in both arms. Repeats of one shape (`r0`, `r1`, ...) reuse its compiled
graphs, so one compile per shape and arm serves many comparisons.
"""

import os

import pytest
import torch
import transformers

from pytest_llm_energy.core.models import resolve_model

INPUT_TOKENS, OUTPUT_TOKENS = 512, 256
EXTRA_DECODE = 0.05
REPEATS = int(os.environ.get("AB_REPEATS", "10"))
GROUPS = os.environ.get("AB_GROUPS", "aa-8,aa-32,plus5-32").split(",")
MODEL = os.environ.get("AB_MODEL", "llama-3.2-1b")  # a tiny one for a dry run on the CPU
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REFERENCE = bool(os.environ.get("AB_REFERENCE"))
TRIALS = int(os.environ.get("AB_TRIALS", "0"))  # trials per arm for every group (0: plus5 10, others the default)


@pytest.fixture(scope="module")
def model():
    config = transformers.AutoConfig.from_pretrained(resolve_model(MODEL).local_folder())
    with torch.device(DEVICE):
        built = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return built.eval()


def generate(model, batch: int, new_tokens: int):
    prompts = torch.randint(1000, model.config.vocab_size, (batch, INPUT_TOKENS), device=DEVICE,
                            generator=torch.Generator(DEVICE).manual_seed(0))
    compiled = {"cache_implementation": "static",
                "compile_config": transformers.CompileConfig(mode="reduce-overhead")} if DEVICE == "cuda" else {}
    return model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                          min_new_tokens=new_tokens, max_new_tokens=new_tokens, pad_token_id=0, **compiled)


def marks(group: str) -> list:
    trials = TRIALS or (10 if group == "plus5" else 0)
    return [pytest.mark.energy(trials=trials)] if trials else []


CASES = [pytest.param(group, int(batch), marks=marks(group), id=f"{group}-b{batch}-r{repeat}")
         for group, batch in (item.split("-") for item in GROUPS) for repeat in range(REPEATS)]


@pytest.mark.parametrize(("group", "batch"), CASES)
def test_generate(energy, model, group, batch):
    extra = EXTRA_DECODE if group == "plus5" and not REFERENCE else 0.0
    new_tokens = round(OUTPUT_TOKENS * (1 + extra))  # the extra steps are work, not counted tokens
    out = energy(generate, model, batch, new_tokens, output_tokens=batch * OUTPUT_TOKENS)
    assert out.shape == (batch, INPUT_TOKENS + new_tokens)
