"""What every backend offers the runner: load once, prepare a workload, generate it, and tell what it is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..meters.base import Meter
    from ..models import ModelSpec
    from ..workload import Workload


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


@dataclass(frozen=True)
class Generation:
    """What one generate call produced; the runner checks the token counts against the workload."""

    output_tokens: int  # summed over all requests (beam search: tokens of the returned sequences)
    input_tokens: int
    requests: int
    tokens_per_request: tuple[int, ...] = ()
    latency: dict = field(default_factory=dict)  # e.g. {"ttft_s_median": ..., "itl_s_median": ...}


def exact_generation(backend: str, workload: Workload, tokens_per_request: tuple[int, ...],
                     input_tokens: int) -> Generation:
    """The Generation of an offline batch, after checking every request yielded exactly the asked tokens.

    J per output token is comparable across runs and backends only when each request produced exactly
    `workload.output_tokens`; anything else is a BackendError naming the counts.
    """
    from ..errors import BackendError

    expected = workload.output_tokens
    if len(tokens_per_request) != workload.batch_size or any(n != expected for n in tokens_per_request):
        raise BackendError(
            f"{backend} returned {list(tokens_per_request)} new tokens per request for {workload.label}; "
            f"expected {workload.batch_size} requests of exactly {expected}"
        )
    return Generation(output_tokens=sum(tokens_per_request), input_tokens=input_tokens,
                      requests=len(tokens_per_request), tokens_per_request=tuple(tokens_per_request))


class Backend(ABC):
    """One loaded model on one backend. Loading happens in `load`, never inside a measured window."""

    name: str = "base"
    online: bool = False  # True: the backend measures its own steady-state window (`measure_online`)

    def __init__(self, model: ModelSpec, options: BackendOptions, max_num_seqs: int = 1) -> None:
        self.model = model
        self.options = options
        # The most requests served at once; fixed when an engine starts (vLLM), so the pool keys on it.
        self.max_num_seqs = max_num_seqs

    @staticmethod
    def load_key(options: BackendOptions, batch_size: int) -> tuple:
        """What must match for a loaded backend to be reused: by default every option and the batch size."""
        return (options, batch_size)

    @abstractmethod
    def load(self) -> None:
        """Load weights (or build random ones) and allocate; called once per session cache entry."""

    @abstractmethod
    def prepare(self, workload: Workload) -> Any:
        """Everything before the first token that is not inference itself (prompt ids, tensors)."""

    @abstractmethod
    def generate(self, prepared: Any) -> Generation:
        """Run the prepared workload once and return when all of its work has finished on the device."""

    def measure_online(self, workload: Workload, meter: Meter, min_window_s: float, warmup: bool = False):
        """Online backends: run the load, measure its steady state in a `meter.window`, return (Reading,
        Generation). Every load starts on the meter's turn (`meter.reserve`), as it runs ahead of its window.
        A warm-up window (`warmup`) shapes nothing that later windows measure."""
        raise NotImplementedError(f"backend {self.name} is offline; the runner measures it")

    def close(self) -> None:  # noqa: B027 - most backends have something to free; a no-op is a valid default
        """Free the model and its device memory (and stop any server)."""

    def describe(self) -> dict:
        """Backend, versions, model and options, as stored with every result."""
        return {"backend": self.name, "model": self.model.describe(), "options": self.options.to_dict()}
