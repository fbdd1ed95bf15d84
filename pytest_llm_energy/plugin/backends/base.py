"""What every backend offers the runner: load once, prepare a workload, generate it, and tell what it is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.backend_options import BackendOptions

if TYPE_CHECKING:
    from ...core.models import ModelSpec
    from ...core.workload import Workload
    from ..meters.base import Meter


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
    from ...core.errors import BackendError

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
