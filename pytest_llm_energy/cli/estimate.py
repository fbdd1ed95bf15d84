"""The energy of a whole trace from measured bins, and the workload-level delta between two result sets.

The paper's model: energy = sum over bins of (requests in bin / batch size) x (joules of one full batch of
that bin). A trace bin nobody measured is never silently dropped: by default it borrows the J per output
token of the nearest measured bin ("nearest"), or, with "exclude", the measured bins stand for all requests
(renormalized by requests); either way the share of requests in unmeasured bins is reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..core.binning import Bin, BinTable, TraceBin
from ..core.errors import EnergyUsageError
from ..core.reference import prefill_bound
from ..core.results import MeasuredBin, ResultSet
from .flops import FlopsIdeal, ModelShape, ideal_energy, request_flops

UNMEASURED_METHODS = ("nearest", "exclude")
METHOD_TEXT = {
    "nearest": "unmeasured bins take the J per output token of the nearest measured bin of the same kind of "
    "work (prefill-bound or decode; distance in log2 input and log2 output tokens), scaled by their own output "
    "tokens",
    "exclude": "unmeasured bins are excluded; the measured bins are renormalized by requests to stand "
    "for every binned request",
}
# Axes a measured result differs on; an estimate is for exactly one value of each.
SELECTION_AXES = (
    ("gpu", "--gpu"),
    ("configuration", "--config"),
    ("batch_size", "--batch-size"),
    ("decoding", "--decoding"),
)


@dataclass(frozen=True)
class BinEstimate:
    """One trace bin's part of the estimate."""

    trace_bin: TraceBin
    measured_as: Bin | None  # the measured bin whose J/token it uses (itself when measured); None if excluded
    joules_per_output_token: float | None
    counted_requests: float  # requests it stands for: its own, 0 when excluded, renormalized under "exclude"
    batch_joules: float | None  # one full batch of this bin
    joules: float  # (counted requests / batch size) x batch joules

    @property
    def measured(self) -> bool:
        return self.measured_as == self.trace_bin.bin


@dataclass(frozen=True)
class WorkloadEstimate:
    trace: str
    results: str  # where the measurements came from
    gpu: str
    configuration: str
    batch_size: int
    decoding: str
    method: str  # one of UNMEASURED_METHODS
    bins: tuple[BinEstimate, ...]
    total_requests: int  # of the trace, dropped ones included
    dropped_requests: int  # longer than the largest bins: not part of the estimate
    meters: tuple[str, ...] = ()

    @property
    def joules(self) -> float:
        return math.fsum(item.joules for item in self.bins)

    @property
    def requests(self) -> int:
        """The binned requests the total stands for."""
        return self.total_requests - self.dropped_requests

    @property
    def output_tokens(self) -> float:
        """Output tokens of the counted requests, as the trace has them."""
        return math.fsum(
            item.trace_bin.output_tokens * item.counted_requests / item.trace_bin.requests
            for item in self.bins
        )

    @property
    def binned_output_tokens(self) -> float:
        """Output tokens as run: each counted request at its bin's output edge."""
        return math.fsum(item.counted_requests * item.trace_bin.bin.output_tokens for item in self.bins)

    @property
    def joules_per_1000_requests(self) -> float:
        return 1000 * self.joules / self.requests

    @property
    def joules_per_output_token(self) -> float:
        return self.joules / self.output_tokens if self.output_tokens else math.nan

    @property
    def joules_per_binned_output_token(self) -> float:
        return self.joules / self.binned_output_tokens if self.binned_output_tokens else math.nan

    def _share(self, predicate) -> float:
        return math.fsum(item.trace_bin.share_of_requests for item in self.bins if predicate(item))

    @property
    def measured_share(self) -> float:
        return self._share(lambda item: item.measured)

    @property
    def unmeasured_share(self) -> float:
        return self._share(lambda item: not item.measured)

    @property
    def dropped_share(self) -> float:
        return self.dropped_requests / self.total_requests

    @property
    def method_text(self) -> str:
        return METHOD_TEXT[self.method]

    def ideal(self, config: Mapping, gpu_key: str | None = None) -> FlopsIdeal:
        """The FLOPs ideal of the same requests (at their bin edges, as measured) on this GPU kind."""
        shape = ModelShape.from_config(config)
        flops = math.fsum(
            item.counted_requests
            * request_flops(shape, item.trace_bin.bin.input_tokens, item.trace_bin.bin.output_tokens)
            for item in self.bins
        )
        return ideal_energy(flops, gpu_key or self.gpu)

    def to_dict(self) -> dict:
        return {
            "trace": self.trace,
            "results": self.results,
            "gpu": self.gpu,
            "configuration": self.configuration,
            "batch_size": self.batch_size,
            "decoding": self.decoding,
            "meters": list(self.meters),
            "unmeasured": {"method": self.method, "how": self.method_text, "share": self.unmeasured_share},
            "measured_share": self.measured_share,
            "dropped": {"requests": self.dropped_requests, "share": self.dropped_share},
            "requests": self.requests,
            "joules": self.joules,
            "joules_per_1000_requests": self.joules_per_1000_requests,
            "joules_per_output_token": self.joules_per_output_token,
            "joules_per_binned_output_token": self.joules_per_binned_output_token,
            "bins": [
                {
                    "input_tokens": item.trace_bin.bin.input_tokens,
                    "output_tokens": item.trace_bin.bin.output_tokens,
                    "requests": item.trace_bin.requests,
                    "share_of_requests": item.trace_bin.share_of_requests,
                    "measured": item.measured,
                    "measured_as": item.measured_as.label if item.measured_as else None,
                    "joules_per_output_token": item.joules_per_output_token,
                    "batch_joules": item.batch_joules,
                    "joules": item.joules,
                }
                for item in self.bins
            ],
        }


def choose(results: ResultSet, **wanted) -> ResultSet:
    """Narrow results to one GPU, configuration, batch size and decoding, or say which option picks one.

    `wanted` holds the user's choices (None = not given) for the names in SELECTION_AXES.
    """
    chosen = results.select(**{name: value for name, value in wanted.items() if value is not None})
    if not chosen.bins:
        given = ", ".join(f"{name}={value}" for name, value in wanted.items() if value is not None)
        available = "; ".join(
            f"{name}: {', '.join(map(str, results.values(name)))}"
            for name, _ in SELECTION_AXES
            if results.values(name)
        )
        raise EnergyUsageError(
            f"no measured bins in {results.label} match {given or 'anything'}"
            + (
                f" (the results hold {available})"
                if available
                else " (no entry has a workload; run binned tests with energy.run)"
            )
        )
    for name, option in SELECTION_AXES:
        values = chosen.values(name)
        if len(values) > 1:
            raise EnergyUsageError(
                f"{results.label} holds {len(values)} values of {name}: {', '.join(map(str, values))}; "
                f"pick one with {option}"
            )
    return chosen


def measured_per_bin(results: ResultSet) -> dict[Bin, float]:
    """J per output token per bin; a bin measured by several tests takes their median."""
    by_bin: dict[Bin, list[float]] = {}
    for measured in results.bins:
        by_bin.setdefault(measured.bin, []).append(measured.joules_per_output_token)
    return {bin: statistics.median(values) for bin, values in sorted(by_bin.items())}


def _log_distance(a: Bin, b: Bin) -> tuple[float, float, int, int]:
    d_in = abs(math.log2(a.input_tokens / b.input_tokens))
    d_out = abs(math.log2(a.output_tokens / b.output_tokens))
    # On a tie prefer the same input length: output tokens are scaled for, input tokens are not.
    return (d_in + d_out, d_in, b.input_tokens, b.output_tokens)


def nearest_measured(bin: Bin, measured: Iterable[Bin]) -> Bin:
    """The measured bin closest in log2 input + log2 output tokens (ties: the closer input length), among
    the bins of the same kind of work where there are any: a decode bin's J per output token is not a
    prefill-bound one's (in4096-out128 took in4096-out16's, nine times a decode bin's figure)."""
    measured = list(measured)
    same_kind = [candidate for candidate in measured if _prefill_bound(candidate) == _prefill_bound(bin)]
    return min(same_kind or measured, key=lambda candidate: _log_distance(bin, candidate))


def _prefill_bound(bin: Bin) -> bool:
    return prefill_bound({"output_tokens": bin.output_tokens})


def estimate_workload(
    table: BinTable,
    results: ResultSet,
    *,
    unmeasured: str = "nearest",
    gpu: str | None = None,
    configuration: str | None = None,
    batch_size: int | None = None,
    decoding: str | None = None,
) -> WorkloadEstimate:
    """The energy of the binned trace on one measured configuration (see the module docstring)."""
    if unmeasured not in UNMEASURED_METHODS:
        raise EnergyUsageError(f"unmeasured bins: use {' or '.join(UNMEASURED_METHODS)}, got {unmeasured!r}")
    if table.kept_requests == 0:
        raise EnergyUsageError(
            f"no request of {table.trace} fits the bins (all {table.total_requests} are longer than the "
            "largest); widen the edges with --input-edges/--output-edges"
        )
    chosen = choose(results, gpu=gpu, configuration=configuration, batch_size=batch_size, decoding=decoding)
    sample: MeasuredBin = chosen.bins[0]
    per_bin = measured_per_bin(chosen)
    batch = sample.batch_size
    measured_rows = [row for row in table.bins if row.bin in per_bin]
    if unmeasured == "exclude" and not measured_rows:
        raise EnergyUsageError(
            f"none of the measured bins ({', '.join(b.label for b in per_bin)}) holds a request of "
            f"{table.trace}; measure the trace's bins (llm-energy bins shows them) or use "
            "--unmeasured=nearest"
        )
    measured_requests = sum(row.requests for row in measured_rows)
    renormalize = table.kept_requests / measured_requests if measured_requests else 0.0
    items = []
    for row in table.bins:
        if row.bin in per_bin:
            source = row.bin
        elif unmeasured == "nearest":
            source = nearest_measured(row.bin, list(per_bin))
        else:
            items.append(BinEstimate(row, None, None, 0.0, None, 0.0))
            continue
        per_token = per_bin[source]
        counted = row.requests * (renormalize if unmeasured == "exclude" else 1.0)
        batch_joules = per_token * batch * row.bin.output_tokens
        items.append(
            BinEstimate(row, source, per_token, counted, batch_joules, counted / batch * batch_joules)
        )
    return WorkloadEstimate(
        trace=table.trace,
        results=chosen.label,
        gpu=sample.gpu,
        configuration=sample.configuration,
        batch_size=batch,
        decoding=sample.decoding,
        method=unmeasured,
        bins=tuple(items),
        total_requests=table.total_requests,
        dropped_requests=table.dropped_requests,
        meters=chosen.meters,
    )


@dataclass(frozen=True)
class WorkloadDelta:
    """B against A on the same trace: "this change costs +4.2% on azure-conv"."""

    a: WorkloadEstimate
    b: WorkloadEstimate

    @property
    def fraction(self) -> float:
        return self.b.joules / self.a.joules - 1.0

    @property
    def same_bins_measured(self) -> bool:
        return {item.trace_bin.bin for item in self.a.bins if item.measured} == {
            item.trace_bin.bin for item in self.b.bins if item.measured
        }

    @property
    def sentence(self) -> str:
        if self.fraction > 0:
            return f"this change costs {self.fraction:.1%} more on {self.a.trace}"
        if self.fraction < 0:
            return f"this change saves {-self.fraction:.1%} on {self.a.trace}"
        return f"this change costs the same on {self.a.trace}"

    def to_dict(self) -> dict:
        return {
            "fraction": self.fraction,
            "sentence": self.sentence,
            "same_bins_measured": self.same_bins_measured,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


def workload_delta(a: WorkloadEstimate, b: WorkloadEstimate) -> WorkloadDelta:
    if a.trace != b.trace or [i.trace_bin for i in a.bins] != [i.trace_bin for i in b.bins]:
        raise EnergyUsageError("a workload delta compares two estimates of the same binned trace")
    return WorkloadDelta(a, b)


@dataclass(frozen=True)
class IdealComparison:
    """An estimate against the FLOPs ideal of the same requests; `ideal` is None without a model config."""

    model: str | None
    ideal: FlopsIdeal | None
    measured_joules: float
    missing: str | None = None  # why there is no ideal, when there is none

    @property
    def ratio(self) -> float | None:
        return self.ideal.ratio(self.measured_joules) if self.ideal is not None else None

    def to_dict(self) -> dict | None:
        if self.ideal is None:
            return None
        data = self.ideal.to_dict()
        if self.ideal.joules is not None:
            data |= {"model": self.model, "measured_over_ideal": self.ratio}
        return data


def compare_with_ideal(estimate: WorkloadEstimate, results: ResultSet, *, model: str | None = None,
                       gpu: str | None = None) -> IdealComparison:
    """The FLOPs ideal of an estimate: for `model` (a packaged name or config.json), else the model the
    estimate's results name, on `gpu` (else the estimate's GPU)."""
    from ..core.models import config_for

    chosen = results.select(configuration=estimate.configuration, batch_size=estimate.batch_size,
                            decoding=estimate.decoding, gpu=estimate.gpu)
    names = sorted({m.model for m in chosen.bins if m.model})
    name = model or (names[0] if len(names) == 1 else None)
    config = config_for(name, explicit=bool(model)) if name else None
    if config is None:
        why = f"no model config for {name}" if name else "the results name no model"
        return IdealComparison(name, None, estimate.joules, missing=why)
    return IdealComparison(name, estimate.ideal(config, gpu or estimate.gpu), estimate.joules)
