"""Where joules come from: pick the meter for a GPU key, and check the key against the visible devices."""

from __future__ import annotations

import difflib

from ...core.errors import EnergyUsageError
from ...core.gpus import CPU_KEY, GPU_AUTO, GPU_KINDS, key_for_name
from .base import Meter
from .cpu import DEFAULT_WATTS_PER_CORE, CpuTimeMeter, RaplMeter, rapl_domains

__all__ = ["Meter", "detect_gpu_key", "make_meter"]


def _visible_gpu_names() -> list[str] | None:
    """Names of the GPUs this process can see, or None when NVML is not available here."""
    try:
        from .nvml import load_nvml, visible_devices

        nvml = load_nvml()
    except EnergyUsageError:
        return None
    try:
        return [device.name for device in visible_devices(nvml)]
    finally:
        nvml.nvmlShutdown()


def detect_gpu_key() -> tuple[str, list[str]]:
    """The key `auto` means here ('cpu' without GPUs), and the device names it was derived from."""
    names = _visible_gpu_names()
    if not names:
        return CPU_KEY, []
    keys = sorted({key_for_name(name) for name in names})
    if len(keys) > 1:
        raise EnergyUsageError(
            f"the visible GPUs are of different kinds ({', '.join(keys)}); set CUDA_VISIBLE_DEVICES "
            "to GPUs of one kind"
        )
    return keys[0], names


def resolve_gpu_key(requested: str) -> str:
    """Check `--energy-gpu` against this machine before any test runs; returns the key in force."""
    if requested == CPU_KEY:
        return CPU_KEY
    known = (GPU_AUTO, CPU_KEY, *(kind.key for kind in GPU_KINDS))
    close = difflib.get_close_matches(requested, known, n=1, cutoff=0.75)
    if requested not in known and close:  # a typo of a known key, not an unlisted GPU's own key
        raise EnergyUsageError(f"--energy-gpu={requested}: unknown GPU key; did you mean {close[0]!r}? "
                               f"(keys: {', '.join(known)}; an unlisted GPU's key is derived from its name)")
    detected, names = detect_gpu_key()
    if requested == GPU_AUTO:
        return detected
    if not names:
        raise EnergyUsageError(
            f"--energy-gpu={requested} but no NVIDIA GPU is visible here (NVML unavailable or "
            "CUDA_VISIBLE_DEVICES empty); run on a runner with that GPU, or use --energy-gpu=cpu"
        )
    if detected != requested:
        raise EnergyUsageError(
            f"--energy-gpu={requested} but the visible GPU is {names[0]} (key {detected!r}); "
            f"use --energy-gpu={detected} or --energy-gpu=auto, or run on a {requested} runner"
        )
    return detected


def make_meter(gpu_key: str, *, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> Meter:
    if gpu_key == CPU_KEY:
        domains = rapl_domains()
        return RaplMeter(domains) if domains else CpuTimeMeter(watts_per_core)
    from .nvml import NvmlMeter

    return NvmlMeter()
