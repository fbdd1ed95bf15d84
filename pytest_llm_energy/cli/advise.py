"""Optimization advice: the lowest-energy setup per bin, and what choosing it saves on a trace's mix.

A setup is everything measured besides the bin: backend, model, dtype and options (compile, CUDA graphs,
parallelism), batch size and decoding. The paper found that matching optimizations to the workload saves
up to 73%; this module says which setup wins each bin of a trace and what that is worth against the setup
you run today. Energy per request of a bin is J/output token x the bin's output tokens, so setups with
different batch sizes compare on the same footing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.binning import Bin, BinTable, TraceBin
from ..core.errors import EnergyUsageError
from ..core.results import MeasuredBin, ResultSet
from .estimate import measured_per_bin


@dataclass(frozen=True)
class BinAdvice:
    """One trace bin: every setup measured on it, cheapest first."""

    trace_bin: TraceBin
    costs: tuple[tuple[str, float], ...]  # (setup, J per output token), ascending
    baseline_joules_per_output_token: float | None  # None: the baseline setup did not measure this bin

    @property
    def best_setup(self) -> str:
        return self.costs[0][0]

    @property
    def best_joules_per_output_token(self) -> float:
        return self.costs[0][1]

    @property
    def saving(self) -> float | None:
        """Fraction of the baseline's energy the best setup saves on this bin (0.3 = 30% less)."""
        if self.baseline_joules_per_output_token is None:
            return None
        return 1.0 - self.best_joules_per_output_token / self.baseline_joules_per_output_token


@dataclass(frozen=True)
class SetupTotal:
    """One setup run on every compared bin of the trace."""

    setup: str
    joules_per_1000_requests: float
    change: float  # against the baseline: -0.25 = 25% less energy


@dataclass(frozen=True)
class Advice:
    trace: str
    baseline_setup: str
    setups: tuple[str, ...]
    bins: tuple[BinAdvice, ...]  # trace bins at least one setup measured, largest share first
    compared_share: float  # share of the trace's requests in bins the baseline measured
    dropped_share: float  # requests longer than the largest bins
    baseline_joules_per_1000_requests: float  # over the compared bins
    best_mix_joules_per_1000_requests: float  # each compared bin on its cheapest setup
    ranking: tuple[SetupTotal, ...]  # setups measured on every compared bin, cheapest first
    incomplete_setups: tuple[str, ...]  # setups missing some compared bin: not ranked

    @property
    def mix_saving(self) -> float:
        return 1.0 - self.best_mix_joules_per_1000_requests / self.baseline_joules_per_1000_requests

    @property
    def uncompared_share(self) -> float:
        return 1.0 - self.dropped_share - self.compared_share

    @property
    def sentence(self) -> str:
        return (
            f"running each bin on its lowest-energy setup saves {self.mix_saving:.1%} against "
            f"{self.baseline_setup} on {self.trace}"
        )

    def to_dict(self) -> dict:
        return {
            "trace": self.trace,
            "baseline_setup": self.baseline_setup,
            "setups": list(self.setups),
            "compared_share": self.compared_share,
            "uncompared_share": self.uncompared_share,
            "dropped_share": self.dropped_share,
            "baseline_joules_per_1000_requests": self.baseline_joules_per_1000_requests,
            "best_mix_joules_per_1000_requests": self.best_mix_joules_per_1000_requests,
            "mix_saving": self.mix_saving,
            "sentence": self.sentence,
            "bins": [
                {
                    "input_tokens": item.trace_bin.bin.input_tokens,
                    "output_tokens": item.trace_bin.bin.output_tokens,
                    "share_of_requests": item.trace_bin.share_of_requests,
                    "best_setup": item.best_setup,
                    "best_joules_per_output_token": item.best_joules_per_output_token,
                    "baseline_joules_per_output_token": item.baseline_joules_per_output_token,
                    "saving": item.saving,
                    "costs": dict(item.costs),
                }
                for item in self.bins
            ],
            "ranking": [
                {"setup": t.setup, "joules_per_1000_requests": t.joules_per_1000_requests, "change": t.change}
                for t in self.ranking
            ],
            "incomplete_setups": list(self.incomplete_setups),
        }


def setup_of(measured: MeasuredBin, several_gpus: bool) -> str:
    return f"{measured.gpu}:{measured.setup}" if several_gpus else measured.setup


def match_setup(given: str, setups: list[str]) -> str:
    """The setup named exactly, or the only one whose label starts with `given/` (a configuration label)."""
    if given in setups:
        return given

    def matches(setup: str) -> bool:
        forms = (setup, setup.partition(":")[2])  # with and without the "gpu:" prefix of mixed-GPU results
        return any(form and (form == given or form.startswith(given + "/")) for form in forms)

    candidates = [setup for setup in setups if matches(setup)]
    if len(candidates) == 1:
        return candidates[0]
    listed = "; ".join(candidates or setups)
    if candidates:
        raise EnergyUsageError(
            f"--baseline-config {given!r} matches {len(candidates)} setups ({listed}); "
            "give one of them in full"
        )
    raise EnergyUsageError(
        f"--baseline-config {given!r} matches no measured setup; the results hold: {listed}"
    )


def advise(table: BinTable, results: ResultSet, baseline_config: str) -> Advice:
    """Which setup to run each bin of the trace on, and the saving of the mix against `baseline_config`."""
    several_gpus = len(results.values("gpu")) > 1
    grouped: dict[str, list[MeasuredBin]] = {}
    for measured in results.bins:
        grouped.setdefault(setup_of(measured, several_gpus), []).append(measured)
    if not grouped:
        raise EnergyUsageError(f"{results.label}: no entry has a workload; run binned tests with energy.run")
    setups = sorted(grouped)
    baseline_setup = match_setup(baseline_config, setups)
    per_setup: dict[str, dict[Bin, float]] = {
        setup: measured_per_bin(ResultSet(results.sources, tuple(items))) for setup, items in grouped.items()
    }
    baseline = per_setup[baseline_setup]

    bins = []
    for row in table.ranked("requests"):
        costs = sorted(
            ((setup, per_setup[setup][row.bin]) for setup in setups if row.bin in per_setup[setup]),
            key=lambda pair: (pair[1], pair[0]),
        )
        if costs:
            bins.append(BinAdvice(row, tuple(costs), baseline.get(row.bin)))
    compared = [item for item in bins if item.baseline_joules_per_output_token is not None]
    if not compared:
        raise EnergyUsageError(
            f"the baseline setup {baseline_setup} measured none of the bins of {table.trace}; "
            "measure the trace's bins (llm-energy bins shows them)"
        )
    requests = sum(item.trace_bin.requests for item in compared)

    def per_1000(cost_of) -> float:
        # energy of one request of a bin = J/output token x the bin's output tokens
        return (
            1000
            * math.fsum(
                item.trace_bin.requests * cost_of(item) * item.trace_bin.bin.output_tokens
                for item in compared
            )
            / requests
        )

    baseline_per_1000 = per_1000(lambda item: item.baseline_joules_per_output_token)
    best_per_1000 = per_1000(lambda item: item.best_joules_per_output_token)
    ranking, incomplete = [], []
    for setup in setups:
        costs = per_setup[setup]
        if all(item.trace_bin.bin in costs for item in compared):
            total = per_1000(lambda item, costs=costs: costs[item.trace_bin.bin])
            ranking.append(SetupTotal(setup, total, total / baseline_per_1000 - 1.0))
        else:
            incomplete.append(setup)
    ranking.sort(key=lambda total: (total.joules_per_1000_requests, total.setup))
    return Advice(
        trace=table.trace,
        baseline_setup=baseline_setup,
        setups=tuple(setups),
        bins=tuple(bins),
        compared_share=requests / table.total_requests,
        dropped_share=table.dropped_share,
        baseline_joules_per_1000_requests=baseline_per_1000,
        best_mix_joules_per_1000_requests=best_per_1000,
        ranking=tuple(ranking),
        incomplete_setups=tuple(incomplete),
    )
