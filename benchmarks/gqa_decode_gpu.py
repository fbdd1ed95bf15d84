"""Time and energy of one decode step's attention on the GPU: transformers' path under a static cache
(keys and values expanded to every head, `repeat_kv`, then masked SDPA) against native grouped-query SDPA.

The GPU check of benchmarks/static_cache_attention.py's finding (benchmarks/README.md section 10): the
compiled suites' long-context bins draw more energy per token than eager. Shapes of Llama-3.2-1B (16 layers,
32 query heads, 8 key/value heads, head dim 64), batch 32, a static cache of 2048 + 512 slots with the
decode at its middle. Each variant runs eager and compiled, in one NVML window of about `--seconds`.

    python benchmarks/gqa_decode_gpu.py [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import math
import time
import types

import torch
import transformers.integrations.sdpa_attention as sdpa

from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

LAYERS, HEADS, KV_HEADS, HEAD_DIM = 16, 32, 8, 64
BATCH, CACHE, FILLED = 32, 2048 + 512, 2048 + 256


def step_functions():
    """One decode step's attention over all layers, three ways (each takes query, keys, values, mask)."""
    module = types.SimpleNamespace(num_key_value_groups=HEADS // KV_HEADS, is_causal=True)

    def transformers_static(q, k, v, mask):  # what a static cache's masked call does
        return [sdpa.sdpa_attention_forward(module, q, k[i], v[i], mask)[0] for i in range(LAYERS)]

    def native_masked(q, k, v, mask):  # the same mask, grouped-query heads kept
        return [torch.nn.functional.scaled_dot_product_attention(q, k[i], v[i], attn_mask=mask, enable_gqa=True)
                for i in range(LAYERS)]

    def native_filled(q, k, v, mask):  # a dynamic cache: no mask, only the filled keys
        return [torch.nn.functional.scaled_dot_product_attention(q, k[i][:, :, :FILLED], v[i][:, :, :FILLED],
                                                                 enable_gqa=True) for i in range(LAYERS)]

    return {"repeat_kv + mask (static cache)": transformers_static, "native GQA + mask": native_masked,
            "native GQA, filled keys, no mask": native_filled}


def measure(meter: NvmlMeter, call, seconds: float) -> tuple[float, float, float]:
    """Milliseconds and joules per step, and the average watts, over one window of about `seconds`."""
    for _ in range(3):  # compile, pick kernels
        call()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    repeats = max(1, math.ceil(seconds / max((time.perf_counter() - started) / 5, 1e-6)))
    with meter.window() as window:
        for _ in range(repeats):
            call()
        torch.cuda.synchronize()
    reading = window.reading
    return 1000 * reading.seconds / repeats, reading.joules / repeats, reading.joules / reading.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args(argv)
    meter = NvmlMeter()
    meter.idle_watts()
    q = torch.randn(BATCH, HEADS, 1, HEAD_DIM, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(LAYERS, BATCH, KV_HEADS, CACHE, HEAD_DIM, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    mask = (torch.arange(CACHE, device="cuda") < FILLED).view(1, 1, 1, CACHE).expand(BATCH, 1, 1, CACHE)
    cache_gb = 2 * k.numel() * k.element_size() / 1e9
    print(f"{meter.devices[0].name} {meter.devices[0].uuid}; torch {torch.__version__}; batch {BATCH}, "
          f"{LAYERS} layers, {HEADS}/{KV_HEADS} heads, {CACHE} cache slots ({FILLED} filled), "
          f"keys+values {cache_gb:.2f} GB a step")
    print("| attention of one decode step | mode | ms/step | J/step | W |\n| --- | --- | --- | --- | --- |")
    for name, step in step_functions().items():
        for mode, call in (("eager", step), ("compiled", torch.compile(step, fullgraph=True, dynamic=False))):
            ms, joules, watts = measure(meter, lambda call=call: call(q, k, v, mask), args.seconds)
            print(f"| {name} | {mode} | {ms:.2f} | {joules:.4f} | {watts:.0f} |", flush=True)
    meter.close()


if __name__ == "__main__":
    main()
