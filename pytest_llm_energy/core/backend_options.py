"""The one list of backend options: the settings that change a backend's code path, and so its energy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class BackendOptions:
    """Settings that change the code path (and so the energy) of a backend; part of its cache key."""

    dtype: str = "auto"  # "auto" = bf16 on GPU, fp32 on CPU
    device: str = "auto"  # "cuda", "cpu" or "auto"
    tensor_parallel_size: int = 1
    cuda_graphs: bool = True  # vLLM: enforce_eager=False
    compile: bool = False  # hf: torch.compile the forward pass
    static_cache: bool = False  # hf: cache_implementation="static"
    attention: str = "sdpa"  # hf: attn_implementation
    request_rate: float = float("inf")  # vllm-server: requests per second (inf = all at once)
    arrival: str = "poisson"  # vllm-server: "poisson" or "gamma"
    burstiness: float = 1.0  # vllm-server: gamma shape (1.0 = Poisson)
    max_concurrency: int | None = None  # vllm-server: None = batch size
    extra: tuple[tuple[str, Any], ...] = ()  # backend-specific keyword arguments, as sorted pairs

    @classmethod
    def field_types(cls) -> dict[str, str]:
        """Each option (not `extra`) and its type as written above: what a marker keyword is checked as."""
        return {f.name: str(f.type) for f in fields(cls) if f.name != "extra"}

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any], **defaults: Any) -> BackendOptions:
        """Options from keywords (energy.run, the marker); any other keyword goes to `extra`, which each
        backend checks when it loads, so a misspelt option is an error there, never dropped."""
        known = cls.field_types()
        chosen = {**defaults, **{k: v for k, v in keywords.items() if k in known}}
        extra = tuple(sorted((k, v) for k, v in keywords.items() if k not in known))
        return cls(**chosen, extra=extra)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        if data["request_rate"] == float("inf"):  # strict JSON has no Infinity
            data["request_rate"] = "inf"
        data["extra"] = dict(self.extra)
        return data
