"""The GPU table: how a device name becomes a baseline key, and each kind's TDP and dense bf16 peak.

One place for these facts. Peaks are dense (no sparsity) bf16 tensor-core rates from the vendor's
datasheets; TDP is the board power of the SXM part unless the name says PCIe/NVL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuKind:
    key: str  # the baseline folder name: baselines/<key>/
    pattern: str  # regular expression matched against the NVML device name
    tdp_watts: float
    bf16_peak_tflops: float


# Order matters: the first pattern that matches a device name wins (PCIe before the plain name).
GPU_KINDS: tuple[GpuKind, ...] = (
    GpuKind("h200-nvl", r"\bH200 NVL\b", 600.0, 835.0),
    GpuKind("h200", r"\bH200\b", 700.0, 989.0),
    GpuKind("h100-pcie", r"\bH100\b.*PCIe", 350.0, 756.0),
    GpuKind("h100-nvl", r"\bH100 NVL\b", 400.0, 835.0),
    GpuKind("h100", r"\bH100\b", 700.0, 989.0),
    GpuKind("a100-pcie", r"\bA100\b.*PCIE", 300.0, 312.0),
    GpuKind("a100", r"\bA100\b", 400.0, 312.0),
    GpuKind("l40s", r"\bL40S\b", 350.0, 362.0),
    GpuKind("l4", r"\bL4\b", 72.0, 121.0),
    GpuKind("a10g", r"\bA10G\b", 300.0, 70.0),
)

CPU_KEY = "cpu"
GPU_AUTO = "auto"  # --energy-gpu=auto: the key of the visible GPUs


def kind_for_name(device_name: str) -> GpuKind | None:
    for kind in GPU_KINDS:
        if re.search(kind.pattern, device_name, flags=re.IGNORECASE):
            return kind
    return None


def key_for_name(device_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; an unlisted GPU gets a slug of its name."""
    kind = kind_for_name(device_name)
    if kind is not None:
        return kind.key
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower().replace("nvidia", "")).strip("-")
    return slug or "unknown-gpu"


def kind_for_key(key: str) -> GpuKind | None:
    return next((kind for kind in GPU_KINDS if kind.key == key), None)
