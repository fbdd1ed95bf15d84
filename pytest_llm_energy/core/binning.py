"""Workload bins: bin edges, the assignment of each request to its bin, bin tables, and test parameters.

As in Fernandez et al. (ACL 2025), each request goes to the smallest input bin and the smallest output bin
that hold it (a ceiling: 33 input tokens -> the 64 bin; 0 or 1 token -> the first bin). A request longer
than the largest bin on either axis is dropped, and the dropped share is reported, never hidden.
Shares are of the whole trace (dropped requests included), so the bins' shares plus the dropped share make 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EnergyUsageError
from .traces import Trace, load_trace
from .workload import Decoding, Workload

# The paper's grid: powers of two, input 32..8192 and output 8..512.
DEFAULT_INPUT_EDGES: tuple[int, ...] = tuple(2**k for k in range(5, 14))
DEFAULT_OUTPUT_EDGES: tuple[int, ...] = tuple(2**k for k in range(3, 10))

# The marker that carries a generated case's weight in its trace; the plugin registers it.
WEIGHT_MARKER = "energy_weight"
RANKINGS = ("requests", "tokens")


@dataclass(frozen=True, order=True)
class Bin:
    """One cell of the grid, named by its upper edges: every request in it is run as this shape."""

    input_tokens: int
    output_tokens: int

    @property
    def label(self) -> str:
        return f"in{self.input_tokens}-out{self.output_tokens}"

    def __str__(self) -> str:
        return self.label


def _validated_edges(edges: Iterable[int], axis: str) -> tuple[int, ...]:
    values = tuple(edges)
    if not values:
        raise EnergyUsageError(
            f"{axis} bin edges: none given; give positive, strictly increasing token counts"
        )
    for value in values:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise EnergyUsageError(f"{axis} bin edges: {value!r} is not a positive whole number of tokens")
    for low, high in zip(values, values[1:], strict=False):
        if high <= low:
            raise EnergyUsageError(
                f"{axis} bin edges must be strictly increasing, got {low} then {high}: "
                f"{' '.join(str(v) for v in values)}"
            )
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class BinEdges:
    """The upper edges of the input and output bins (validated: positive, strictly increasing)."""

    input_edges: tuple[int, ...] = DEFAULT_INPUT_EDGES
    output_edges: tuple[int, ...] = DEFAULT_OUTPUT_EDGES

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_edges", _validated_edges(self.input_edges, "input"))
        object.__setattr__(self, "output_edges", _validated_edges(self.output_edges, "output"))

    @classmethod
    def of(
        cls, input_edges: Iterable[int] | None = None, output_edges: Iterable[int] | None = None
    ) -> BinEdges:
        """Edges with defaults for the axis not given."""
        return cls(
            tuple(input_edges) if input_edges is not None else DEFAULT_INPUT_EDGES,
            tuple(output_edges) if output_edges is not None else DEFAULT_OUTPUT_EDGES,
        )

    @property
    def bins(self) -> tuple[Bin, ...]:
        return tuple(Bin(i, o) for i in self.input_edges for o in self.output_edges)

    def bin_for(self, input_tokens: int, output_tokens: int) -> Bin | None:
        """The smallest bin holding this request, or None when it is longer than the largest bin."""
        i, o = self.indices(np.asarray([input_tokens]), np.asarray([output_tokens]))
        if i[0] < 0:
            return None
        return Bin(self.input_edges[i[0]], self.output_edges[o[0]])

    def indices(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per request, the index of its input and output edge; -1 on both for a dropped request."""
        # side="left": the first edge >= the length, i.e. the ceiling (an exact edge stays in its own bin).
        i = np.searchsorted(np.asarray(self.input_edges), input_tokens, side="left")
        o = np.searchsorted(np.asarray(self.output_edges), output_tokens, side="left")
        dropped = (i >= len(self.input_edges)) | (o >= len(self.output_edges))
        i = np.where(dropped, -1, i)
        o = np.where(dropped, -1, o)
        return i, o


@dataclass(frozen=True)
class TraceBin:
    """One bin of a trace: how many of its requests (and tokens) fall in it."""

    bin: Bin
    requests: int
    share_of_requests: float  # of all requests of the trace, dropped ones included
    input_tokens: int  # summed over the bin's requests, as the trace has them (not the bin edge)
    output_tokens: int
    share_of_tokens: float  # (input + output tokens) of the bin over those of the whole trace

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def share(self, by: str) -> float:
        return self.share_of_requests if by == "requests" else self.share_of_tokens

    def to_dict(self) -> dict:
        return {
            "input_tokens": self.bin.input_tokens,
            "output_tokens": self.bin.output_tokens,
            "requests": self.requests,
            "share_of_requests": self.share_of_requests,
            "tokens": self.tokens,
            "share_of_tokens": self.share_of_tokens,
            "trace_input_tokens": self.input_tokens,
            "trace_output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class BinTable:
    """A trace binned on one grid: the non-empty bins (in grid order) and what fell outside it."""

    trace: str
    source: str
    edges: BinEdges
    bins: tuple[TraceBin, ...]
    total_requests: int
    total_tokens: int
    dropped_requests: int
    dropped_tokens: int

    @property
    def kept_requests(self) -> int:
        return self.total_requests - self.dropped_requests

    @property
    def dropped_share(self) -> float:
        return self.dropped_requests / self.total_requests if self.total_requests else 0.0

    @property
    def dropped_token_share(self) -> float:
        return self.dropped_tokens / self.total_tokens if self.total_tokens else 0.0

    def get(self, bin: Bin) -> TraceBin | None:
        return next((row for row in self.bins if row.bin == bin), None)

    def ranked(self, by: str = "requests") -> list[TraceBin]:
        """Bins from the largest share down; ties in grid order, so the order is stable."""
        _check_ranking(by)
        return sorted(self.bins, key=lambda row: (-row.share(by), row.bin))

    def top(
        self, top_k: int | None = None, *, by: str = "requests", min_share: float | None = None,
        max_input_tokens: int | None = None, max_output_tokens: int | None = None,
    ) -> list[TraceBin]:
        """The largest bins: those within the length caps and with at least `min_share`, then `top_k` of them.

        The caps let a small machine run the largest bins it can afford (a CPU profile, say); the shares
        stay shares of the whole trace, so a report still says how much of the trace was covered.
        """
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise EnergyUsageError(f"top_k (--top) must be a positive whole number, got {top_k!r}")
        if min_share is not None and not 0 <= min_share <= 1:
            raise EnergyUsageError(f"min_share is a fraction in [0, 1] (0.05 = 5%), got {min_share!r}")
        rows = [
            row for row in self.ranked(by)
            if (max_input_tokens is None or row.bin.input_tokens <= max_input_tokens)
            and (max_output_tokens is None or row.bin.output_tokens <= max_output_tokens)
        ]
        if min_share is not None:
            rows = [row for row in rows if row.share(by) >= min_share]
        return rows[:top_k] if top_k is not None else rows

    def to_dict(self) -> dict:
        return {
            "trace": self.trace,
            "source": self.source,
            "edges": {"input": list(self.edges.input_edges), "output": list(self.edges.output_edges)},
            "total_requests": self.total_requests,
            "total_tokens": self.total_tokens,
            "kept_requests": self.kept_requests,
            "dropped_requests": self.dropped_requests,
            "dropped_share": self.dropped_share,
            "dropped_tokens": self.dropped_tokens,
            "dropped_token_share": self.dropped_token_share,
            "bins": [row.to_dict() for row in self.bins],
        }


def _check_ranking(by: str) -> None:
    if by not in RANKINGS:
        raise EnergyUsageError(f"rank bins by {' or '.join(RANKINGS)}, got {by!r}")


def bin_table(trace: str | Path | Trace, edges: BinEdges | None = None, **columns: str | None) -> BinTable:
    """Bin every request of a trace (a short name, a path or a Trace) on `edges` (default: the paper's)."""
    edges = edges or BinEdges()
    loaded = load_trace(trace, **columns)
    inputs, outputs = loaded.input_tokens, loaded.output_tokens
    i, o = edges.indices(inputs, outputs)
    kept = i >= 0
    n_out = len(edges.output_edges)
    cell = i[kept] * n_out + o[kept]  # one integer per grid cell, row-major: input edge, then output edge
    size = len(edges.input_edges) * n_out
    requests = np.bincount(cell, minlength=size)
    input_sums = np.bincount(cell, weights=inputs[kept], minlength=size)
    output_sums = np.bincount(cell, weights=outputs[kept], minlength=size)
    total_requests = loaded.requests
    total_tokens = loaded.total_tokens
    rows = []
    for index in np.flatnonzero(requests):
        in_tokens, out_tokens = int(round(input_sums[index])), int(round(output_sums[index]))
        rows.append(
            TraceBin(
                bin=Bin(edges.input_edges[index // n_out], edges.output_edges[index % n_out]),
                requests=int(requests[index]),
                share_of_requests=int(requests[index]) / total_requests,
                input_tokens=in_tokens,
                output_tokens=out_tokens,
                share_of_tokens=(in_tokens + out_tokens) / total_tokens if total_tokens else 0.0,
            )
        )
    dropped = ~kept
    return BinTable(
        trace=loaded.name,
        source=loaded.source,
        edges=edges,
        bins=tuple(rows),
        total_requests=total_requests,
        total_tokens=total_tokens,
        dropped_requests=int(dropped.sum()),
        dropped_tokens=int(inputs[dropped].sum() + outputs[dropped].sum()),
    )


# --- Test generation: the public face for suite files ---------------------------------------------------


def trace_bins(
    trace: str | Path | Trace,
    top_k: int | None = None,
    *,
    by: str = "requests",
    min_share: float | None = None,
    edges: BinEdges | None = None,
    input_column: str | None = None,
    output_column: str | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> list[TraceBin]:
    """The bins of a trace that matter most, largest share first (`by` "requests" or "tokens")."""
    table = bin_table(trace, edges, input_column=input_column, output_column=output_column)
    return table.top(top_k, by=by, min_share=min_share, max_input_tokens=max_input_tokens,
                     max_output_tokens=max_output_tokens)


def bin_params(
    trace: str | Path | Trace,
    *,
    batch_sizes: Sequence[int] = (1, 8),
    decodings: Sequence[str | Decoding] = ("greedy",),
    top_k: int | None = None,
    by: str = "requests",
    min_share: float | None = None,
    edges: BinEdges | None = None,
    seed: int = 0,
    input_column: str | None = None,
    output_column: str | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> list:
    """`pytest.param`s of Workloads, one per (top bin x batch size x decoding), for `parametrize("workload")`.

    Each param has the workload's label as its id (`in1024-out128-b8-greedy`) and carries its bin's share of
    the trace as `pytest.mark.energy_weight(share, trace=..., by=...)`, so a report can weight the cases.
    """
    import pytest

    if isinstance(batch_sizes, int) or isinstance(decodings, (str, Decoding)):
        raise EnergyUsageError(
            "batch_sizes and decodings are sequences, e.g. batch_sizes=(1, 8), decodings=('greedy',)"
        )
    parsed = [Decoding.parse(decoding) for decoding in decodings]
    if not batch_sizes or not parsed:
        raise EnergyUsageError("bin_params needs at least one batch size and one decoding")
    name = trace.name if isinstance(trace, Trace) else str(trace)
    params = []
    for row in trace_bins(
        trace,
        top_k,
        by=by,
        min_share=min_share,
        edges=edges,
        input_column=input_column,
        output_column=output_column,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
    ):
        for batch_size in batch_sizes:
            for decoding in parsed:
                workload = Workload(row.bin.input_tokens, row.bin.output_tokens, batch_size, decoding, seed)
                mark = getattr(pytest.mark, WEIGHT_MARKER)(row.share(by), trace=name, by=by)
                params.append(pytest.param(workload, id=workload.label, marks=mark))
    return params
