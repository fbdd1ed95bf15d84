"""What the two vLLM backends share: the environment vLLM must see before import, and the engine arguments."""

from __future__ import annotations

import importlib.util
import json
import os
from typing import TYPE_CHECKING

from ...core.errors import EnergyUsageError
from .placement import cuda_memory_share, free_device_memory, resolve_device, resolve_dtype

if TYPE_CHECKING:
    from ...core.models import ModelSpec
    from .base import BackendOptions

# Options that change the engine vLLM builds; with the batch size (max_num_seqs) they key the pool.
LOAD_OPTIONS = ("dtype", "device", "tensor_parallel_size", "cuda_graphs", "extra")
# On the CPU, vLLM reserves this many GiB for the KV cache (its default is a fraction of all memory).
CPU_KV_CACHE_GIB = "1"
# On the CPU a packaged config's 128k context would not fit that cache; a bin never needs more than this.
CPU_MAX_MODEL_LEN = 8192


def vllm_environment(device: str) -> dict[str, str]:
    """Variables vLLM reads at import: the engine in this process (no spawned engine core that re-imports the
    test module), on the CPU a small KV cache, and on a GPU without FlashInfer vLLM's own top-k/top-p sampler
    (vLLM imports FlashInfer for sampling on CUDA by default, and without it an engine fails to start with
    "No module named 'flashinfer'"). A value the user already set is kept."""
    wanted = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if device == "cpu":
        wanted["VLLM_CPU_KVCACHE_SPACE"] = CPU_KV_CACHE_GIB
    elif importlib.util.find_spec("flashinfer") is None:
        wanted["VLLM_USE_FLASHINFER_SAMPLER"] = "0"
    environment = {name: os.environ.get(name, value) for name, value in wanted.items()}
    if device == "cuda":
        environment.update(cuda_devices_by_index(os.environ.get("CUDA_VISIBLE_DEVICES")))
    return environment


def cuda_devices_by_index(visible: str | None) -> dict[str, str]:
    """The visible GPUs as NVML indices where CUDA_VISIBLE_DEVICES names them by UUID, as the plugin pins an
    xdist worker or an A/B arm: vLLM reads each entry with int() (vllm-project/vllm#13815) and no engine
    starts. NVML counts in PCI bus order, which CUDA follows under CUDA_DEVICE_ORDER=PCI_BUS_ID. MIG
    instances have no index to give, so they are left as they are."""
    entries = [part.strip() for part in (visible or "").split(",") if part.strip()]
    if not entries or all(entry.isdigit() for entry in entries) or any(e.startswith("MIG-") for e in entries):
        return {}
    from ..meters.nvml import load_nvml, visible_devices

    nvml = load_nvml()
    try:
        devices = visible_devices(nvml, visible)
    finally:
        nvml.nvmlShutdown()
    if not devices:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(device.nvml_index) for device in devices),
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


# Where vLLM keeps the server's own (frontend) arguments; the module moved between releases.
FRONTEND_ARGS_MODULES = ("vllm.entrypoints.openai.cli_args", "vllm.entrypoints.launchers.cli_args")


def _field_names(module_names: tuple[str, ...], class_name: str) -> set[str] | None:
    """The fields of a vLLM arguments dataclass, from the first module that has it; None if none does."""
    import dataclasses
    import importlib

    for module_name in module_names:
        try:
            return {field.name for field in dataclasses.fields(getattr(importlib.import_module(module_name),
                                                                       class_name))}
        except (ImportError, AttributeError, TypeError):
            continue
    return None


def check_engine_options(backend: str, extra: dict, own: tuple[str, ...] = (), server: bool = False) -> None:
    """Keywords that are not BackendOptions fields pass to vLLM as engine (and, for a server, frontend)
    arguments: each must be one of vLLM's or the backend's `own`, so a misspelt option is an error that
    names it, not a failed start."""
    unknown = set(extra) - set(own)
    if not unknown:
        return  # nothing for vLLM to check: no need to import it here
    unknown -= _field_names(("vllm.engine.arg_utils",), "EngineArgs") or set()
    if server:
        frontend = _field_names(FRONTEND_ARGS_MODULES, "FrontendArgs")
        if frontend is None:
            return  # this vLLM keeps them elsewhere: its server's own parser rejects a wrong one at start
        unknown -= frontend
    if unknown:
        raise EnergyUsageError(f"{backend} backend: unknown option(s) {', '.join(sorted(unknown))}: neither a "
                               "backend option nor a vLLM " + ("server or " if server else "")
                               + "engine argument")


def engine_arguments(model: ModelSpec, options: BackendOptions, max_num_seqs: int) -> dict:
    """vLLM engine arguments (LLM keyword names) for a model spec and the backend options.

    Random weights are vLLM's dummy load format on the model's config folder; without a tokenizer (packaged
    configs) the tokenizer is skipped and prompts are token ids.
    """
    if max_num_seqs < 1:
        raise EnergyUsageError(f"vllm: max_num_seqs (the batch size) must be >= 1, got {max_num_seqs}")
    device = resolve_device(options.device)
    config = model.config_dict()
    arguments = {
        "model": str(model.local_folder()),
        "load_format": "dummy" if model.random_weights else "auto",
        "skip_tokenizer_init": not model.has_tokenizer,
        "max_num_seqs": max_num_seqs,
        "tensor_parallel_size": options.tensor_parallel_size,
        # CUDA graphs only exist on a GPU; on the CPU "not eager" means a long torch.compile at start-up.
        "enforce_eager": not (options.cuda_graphs and device == "cuda"),
        "dtype": resolve_dtype(options.dtype, device),
        "seed": 0,
        # Every trial sends the same prompts: with prefix caching the prefill of all but the first would be
        # skipped, and a bin of "256 in" would not pay for 256 input tokens.
        "enable_prefix_caching": False,
    }
    if device == "cuda" and "gpu_memory_utilization" not in dict(options.extra):
        free_device_memory()  # what an earlier backend left cached is free for this engine
        arguments["gpu_memory_utilization"] = cuda_memory_share()
    if device == "cpu":
        arguments["max_model_len"] = min(int(config.get("max_position_embeddings", CPU_MAX_MODEL_LEN)),
                                         CPU_MAX_MODEL_LEN)
    arguments.update(dict(options.extra))  # the user's engine arguments win (gpu_memory_utilization, ...)
    return arguments


def server_flags(arguments: dict) -> list[str]:
    """The same engine arguments as `vllm serve` command-line flags."""
    flags = ["--model", str(arguments["model"])]
    for name, value in arguments.items():
        if name == "model" or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                flags.append(flag)
            elif name in ("enforce_eager", "skip_tokenizer_init"):
                continue  # both default to off
            else:
                flags.append("--no-" + name.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            flags += [flag, json.dumps(value)]  # vLLM parses JSON for config-valued flags
        else:
            flags += [flag, str(value)]
    return flags


def vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return "vllm (unknown version)"
