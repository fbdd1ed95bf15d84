"""Where and in what precision a backend runs: device and dtype from BackendOptions, and freeing the device."""

from __future__ import annotations

import gc
import math
import sys

from ...core.errors import EnergyUsageError

DEVICES = ("auto", "cuda", "cpu")
# Names a user may write for each dtype; the value is the canonical name torch and vLLM both accept.
DTYPES = {
    "auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
    "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32",
}


def resolve_device(device: str) -> str:
    """'auto' means CUDA when torch sees a GPU, else the CPU."""
    if device not in DEVICES:
        raise EnergyUsageError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' is bf16 on a GPU (what serving uses) and fp32 on the CPU (bf16 is emulated, and slow, on most CPUs)."""
    canonical = DTYPES.get(str(dtype).lower())
    if canonical is None:
        raise EnergyUsageError(f"dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}")
    if canonical == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    return canonical


# vLLM's own default share of the card for an engine, and what is left free beside a smaller share.
VLLM_MEMORY_SHARE = 0.9
FREE_MARGIN = 0.03


def memory_share(free_bytes: int, total_bytes: int) -> float:
    """The share of a card a vLLM engine may ask for: vLLM's 0.9, or less where less is free (an engine
    refuses to start when its share exceeds the free memory: the test process's own CUDA context, what an
    earlier backend left cached), rounded down to a hundredth."""
    share = min(VLLM_MEMORY_SHARE, free_bytes / total_bytes - FREE_MARGIN)
    return math.floor(share * 100) / 100


def cuda_memory_share() -> float:
    import torch

    free_bytes, total_bytes = torch.cuda.mem_get_info()
    return memory_share(free_bytes, total_bytes)


def free_device_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back, so the next backend starts from an empty device."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory that torch never took
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
