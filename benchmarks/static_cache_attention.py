"""Which attention path transformers' SDPA takes in each decode step, dynamic cache against static cache.

Why the compiled suites' long-context bins cost more than eager (benchmarks/README.md section 10): with a
static cache every step passes an attention mask (the cache's unfilled slots must be hidden), and
transformers' SDPA uses grouped-query attention natively only without a mask; with one it expands keys and
values to every head (`repeat_kv`) over the whole allocated cache, in every layer, every step. Runs on the CPU
with a one-layer model of the Llama-3.2-1B shape family (8 heads, 2 key/value heads); no weights, no GPU.

    python benchmarks/static_cache_attention.py
"""

from __future__ import annotations

import collections

import torch
import transformers
import transformers.integrations.sdpa_attention as sdpa

from pytest_llm_energy.core.models import resolve_model

PROMPT, NEW_TOKENS, BATCH = 64, 8, 4


def small_model():
    config = transformers.AutoConfig.from_pretrained(resolve_model("llama-3.2-1b").local_folder())
    config.update({"num_hidden_layers": 1, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 8,
                   "num_key_value_heads": 2, "head_dim": 32})
    return transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa").eval()


def paths(model, **cache) -> collections.Counter:
    """(path, mask, keys attended) of every attention call of one generate."""
    seen: collections.Counter = collections.Counter()
    choose = sdpa.use_gqa_in_sdpa

    def spy(mask, key, value):
        native = choose(mask, key, value)
        seen["native GQA" if native else "repeat_kv", "mask" if mask is not None else "no mask", key.shape[2]] += 1
        return native

    sdpa.use_gqa_in_sdpa = spy
    try:
        ids = torch.randint(100, 1000, (BATCH, PROMPT))
        model.generate(ids, attention_mask=torch.ones_like(ids), min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS,
                       do_sample=False, pad_token_id=0, **cache)
    finally:
        sdpa.use_gqa_in_sdpa = choose
    return seen


def main() -> None:
    model = small_model()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {PROMPT} in, {NEW_TOKENS} out")
    for label, cache in (("dynamic cache", {}),
                         ("static cache", {"cache_implementation": "static", "disable_compile": True})):
        for (path, mask, keys), calls in sorted(paths(model, **cache).items()):
            print(f"{label:14s} {path:11s} {mask:8s} over {keys:3d} keys: {calls} call(s)")


if __name__ == "__main__":
    main()
