"""How good the energy decision rule is: A/A false alarms and detection of regressions, by trials per side.

The rule is ``pytest_llm_energy.stats.decide``. For each workload this script draws many random pairs of
disjoint sample sets (a baseline of n trials, a current of n trials), runs ``decide`` on each pair and counts
verdicts:

* A/A false alarms: the share of pairs from one configuration called ``regressed`` or ``improved``.
* Detection at +3/+5/+10%: the share of pairs whose current side is 3/5/10% costlier called ``regressed``.
* Median detectable change: the median of ``Decision.detectable`` over the A/A pairs (what a test with n
  trials per side would report as the smallest change it can see).
* Adaptive trials: the same rates when the current side grows one trial at a time until ``stats.should_stop``,
  with the number of trials that took.

Usage (from the repository root)::

    python benchmarks/detection.py --simulated [--out detection.md]
    python benchmarks/detection.py --samples samples.json [--out detection.md]

``--simulated`` uses noise models (lognormal with a given coefficient of variation, and a bimodal mixture
shaped like the 16 HF repeats of MEASUREMENTS.md: ten runs at 1.3-1.4 s, six at 1.9-2.2 s, energy about
60 J + 116 W x s); its numbers say what the rule does on that noise, not what a GPU does. ``--samples`` reads
recorded samples. Default settings take about a minute of CPU time (two workers on two cores).

Samples file (``--samples``), JSON, written by the GPU collection::

    {
      "schema": 1,                              # optional; this format is schema 1
      "unit": "J/output token",                 # optional, for readers (always J per output token)
      "workloads": {
        "<workload name>": {                    # e.g. "llama-1b b8 256->128 hf"
          "card": "NVIDIA H200",                # required: the device that produced the samples, printed
          "A":  [0.253, 0.251, ...],            # required: J per output token, one per trial, configuration A
          "A2": [...],                          # optional: A again, recorded in a separate session
          "plus3": [...], "plus5": [...],       # optional: A with a real change of +3%, +5%, +10%, ...
          "plus10": [...],                      #   ("plus<percent>", any integer percent)
          "notes": "..."                        # optional, printed
        }
      }
    }

Every list holds positive finite numbers, one per measured trial after warm-up, in the order measured. Pairs
are drawn without replacement: A/A draws both sides from "A" (disjoint subsets) unless "A2" exists, then the
baseline comes from "A" and the current side from "A2" (this also catches drift between sessions). A change
with its own list draws the baseline from "A" and the current side from that list; without one, the current
side is a disjoint subset of "A" scaled by (1 + change). A cell needs enough samples for both sides (2n from
"A" alone); otherwise it shows "-". Draws from a small recorded pool overlap, so their rates are less precise
than the draw count suggests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import beta

try:
    from pytest_llm_energy import stats
except ImportError:  # run as a script from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pytest_llm_energy import stats

SCHEMA_VERSION = 1
DEFAULT_TRIALS = (3, 5, 7, 10, 15, 20)
DEFAULT_CHANGES = (3, 5, 10)  # percent
DEFAULT_CVS = (0.02, 0.10)
DEFAULT_ADAPTIVE = ("3:10", "5:20")
SIMULATED_POOL_SIZE = 20_000
ALARM_VERDICTS = ("regressed", "improved")

# The measured requirements the rule must meet (checked here, and on recorded GPU samples).
MAX_FALSE_ALARM_RATE = 0.01
REQUIRED_DETECTION_RATE = 0.95
REQUIRED_CHANGE_PERCENT = 5
REQUIRED_MAX_TRIALS = 10
LOW_NOISE_SPREAD = 0.02


@dataclass(frozen=True)
class SamplePools:
    """Recorded (or simulated) samples of one workload: configuration A and, optionally, changes of it."""

    name: str
    source: str  # the card, or the noise model for simulated pools
    a: np.ndarray
    a_again: np.ndarray | None = None  # "A2": A recorded in another session
    changed: Mapping[int, np.ndarray] = field(default_factory=dict)  # percent -> samples with that change
    notes: str = ""


@dataclass(frozen=True)
class Rate:
    """How many of the drawn pairs gave the counted verdict."""

    hits: int
    draws: int

    @property
    def share(self) -> float:
        return self.hits / self.draws

    def upper95(self) -> float:
        """One-sided 95% Clopper-Pearson upper bound of the true rate."""
        return (
            1.0 if self.hits == self.draws else float(beta.ppf(0.95, self.hits + 1, self.draws - self.hits))
        )

    def interval95(self) -> tuple[float, float]:
        """Two-sided 95% Clopper-Pearson interval of the true rate."""
        low = 0.0 if self.hits == 0 else float(beta.ppf(0.025, self.hits, self.draws - self.hits + 1))
        high = (
            1.0 if self.hits == self.draws else float(beta.ppf(0.975, self.hits + 1, self.draws - self.hits))
        )
        return low, high


@dataclass(frozen=True)
class CellResult:
    """One (workload, trials per side, change) cell: verdict counts and the medians that go in the table."""

    trials: int
    change: int  # percent; 0 is A/A
    verdicts: Mapping[str, int]
    draws: int
    median_spread: float  # robust CV of the current side, median over draws
    median_detectable: float
    recorded: bool  # the changed side came from its own recorded pool rather than from scaling A


@dataclass(frozen=True)
class AdaptiveResult:
    """The adaptive flow: current trials added until should_stop, then decide."""

    min_trials: int
    max_trials: int
    baseline_trials: int
    change: int
    verdicts: Mapping[str, int]
    draws: int
    mean_trials: float


# ---------------------------------------------------------------------------------------------------------
# Noise models for --simulated


def lognormal_pool(cv: float, size: int, rng: np.random.Generator, median: float = 0.253) -> np.ndarray:
    """Lognormal J/token with coefficient of variation `cv` (0.253 J/token: llama-1b, batch 8, on an H200)."""
    sigma = math.sqrt(math.log1p(cv**2))
    return median * np.exp(rng.normal(0.0, sigma, size))


def bimodal_pool(size: int, rng: np.random.Generator) -> np.ndarray:
    """The 16 HF repeats of MEASUREMENTS.md as a mixture: runs fast (10/16) or slow (6/16), energy from time.

    Energy ~ 60 J + 116 W x seconds (the fit there), a 0.5% meter error, 8 x 128 output tokens per run.
    Coefficient of variation about 16%, like the measured 16%.
    """
    slow = rng.random(size) < 6 / 16
    seconds = np.where(slow, rng.uniform(1.9, 2.2, size), rng.uniform(1.3, 1.4, size))
    joules = (60.0 + 116.0 * seconds) * np.exp(rng.normal(0.0, 0.005, size))
    return joules / (8 * 128)


def simulated_workloads(cvs: Sequence[float], bimodal: bool, seed: int) -> list[SamplePools]:
    rng = np.random.default_rng(seed)
    pools = [
        SamplePools(
            name=f"simulated lognormal, CV {cv:.0%}",
            source=f"simulated: lognormal noise, coefficient of variation {cv:.1%}",
            a=lognormal_pool(cv, SIMULATED_POOL_SIZE, rng),
        )
        for cv in cvs
    ]
    if bimodal:
        pools.append(
            SamplePools(
                name="simulated bimodal (10 fast / 6 slow runs)",
                source="simulated: mixture of 1.3-1.4 s and 1.9-2.2 s runs, energy ~ 60 J + 116 W x s",
                a=bimodal_pool(SIMULATED_POOL_SIZE, rng),
            )
        )
    return pools


# ---------------------------------------------------------------------------------------------------------
# Recorded samples (--samples)


def load_samples(path: Path) -> list[SamplePools]:
    """Read the samples file described at the top of this script; errors name the file and the key."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: cannot read the samples file: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("workloads"), dict):
        raise SystemExit(
            f'{path}: expected an object with a "workloads" object (see benchmarks/detection.py)'
        )
    schema = document.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise SystemExit(f"{path}: schema {schema!r} is not supported (this script reads {SCHEMA_VERSION})")
    pools = []
    for name, entry in document["workloads"].items():
        where = f"{path}: workloads[{name!r}]"
        if not isinstance(entry, dict) or "A" not in entry or "card" not in entry:
            raise SystemExit(f'{where}: needs "card" and "A" (a list of J/token samples)')
        changed = {}
        for key, values in entry.items():
            match = re.fullmatch(r"plus(\d+)", key)
            if match:
                changed[int(match.group(1))] = _sample_array(values, f"{where}[{key!r}]")
            elif key not in ("card", "A", "A2", "notes"):
                raise SystemExit(f"{where}: unknown key {key!r} (known: card, A, A2, plus<percent>, notes)")
        pools.append(
            SamplePools(
                name=name,
                source=str(entry["card"]),
                a=_sample_array(entry["A"], f"{where}['A']"),
                a_again=_sample_array(entry["A2"], f"{where}['A2']") if "A2" in entry else None,
                changed=changed,
                notes=str(entry.get("notes", "")),
            )
        )
    return pools


def _sample_array(values, where: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise SystemExit(f"{where}: must be a list of numbers") from None
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise SystemExit(f"{where}: must be a non-empty list of positive finite numbers")
    return array


# ---------------------------------------------------------------------------------------------------------
# The engine


def draw_pair(
    pools: SamplePools, baseline_trials: int, current_trials: int, change: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """A baseline from A and a disjoint current side (A again, or A changed by `change` percent), or None."""
    recorded = pools.changed.get(change) if change else pools.a_again
    if recorded is not None:
        if len(pools.a) < baseline_trials or len(recorded) < current_trials:
            return None
        return (
            rng.choice(pools.a, baseline_trials, replace=False),
            rng.choice(recorded, current_trials, replace=False),
        )
    if len(pools.a) < baseline_trials + current_trials:
        return None
    drawn = rng.choice(pools.a, baseline_trials + current_trials, replace=False)
    return drawn[:baseline_trials], drawn[baseline_trials:] * (1 + change / 100)


def evaluate_cell(
    pools: SamplePools, trials: int, change: int, draws: int, tolerance: float, confidence: float, seed
) -> CellResult | None:
    """Verdict counts of `draws` pairs of `trials` per side."""
    rng = np.random.default_rng(seed)
    verdicts: Counter[str] = Counter()
    spreads, detectables = [], []
    for _ in range(draws):
        pair = draw_pair(pools, trials, trials, change, rng)
        if pair is None:
            return None
        baseline, current = pair
        decision = stats.decide(baseline, current, tolerance, confidence=confidence)
        verdicts[decision.verdict] += 1
        spreads.append(stats.summarize(current).robust_cv)
        detectables.append(decision.detectable)
    recorded = (pools.changed.get(change) if change else pools.a_again) is not None
    return CellResult(
        trials=trials,
        change=change,
        verdicts=dict(verdicts),
        draws=draws,
        median_spread=float(np.nanmedian(spreads)),
        median_detectable=float(np.median(detectables)),
        recorded=recorded,
    )


def evaluate_adaptive(
    pools: SamplePools,
    min_trials: int,
    max_trials: int,
    baseline_trials: int,
    change: int,
    draws: int,
    tolerance: float,
    confidence: float,
    seed,
) -> AdaptiveResult | None:
    """The runner's loop: add current trials until should_stop, then decide on what was collected."""
    rng = np.random.default_rng(seed)
    verdicts: Counter[str] = Counter()
    used = []
    for _ in range(draws):
        pair = draw_pair(pools, baseline_trials, max_trials, change, rng)
        if pair is None:
            return None
        baseline, all_current = pair
        n = min_trials
        while not stats.should_stop(
            baseline,
            all_current[:n],
            tolerance,
            confidence=confidence,
            min_trials=min_trials,
            max_trials=max_trials,
        ):
            n += 1
        verdicts[stats.decide(baseline, all_current[:n], tolerance, confidence=confidence).verdict] += 1
        used.append(n)
    return AdaptiveResult(
        min_trials=min_trials,
        max_trials=max_trials,
        baseline_trials=baseline_trials,
        change=change,
        verdicts=dict(verdicts),
        draws=draws,
        mean_trials=float(np.mean(used)),
    )


def _task_size(task) -> int:
    kind, args = task
    return args[2] * args[5] if kind == "adaptive" else args[1] * args[3]


def _run_task(task):
    kind, args = task
    return evaluate_cell(*args) if kind == "cell" else evaluate_adaptive(*args)


# ---------------------------------------------------------------------------------------------------------
# Markdown


def _percent(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "none (too few trials)"
    return f"{value * 100:.{digits}f}%"


def _alarm_rate(verdicts: Mapping[str, int], draws: int) -> Rate:
    return Rate(sum(verdicts.get(v, 0) for v in ALARM_VERDICTS), draws)


def workload_table(
    pools: SamplePools,
    cells: Mapping[tuple[int, int], CellResult | None],
    trials: Sequence[int],
    changes: Sequence[int],
) -> list[str]:
    change_headers = []
    for change in changes:
        how = "recorded" if change in pools.changed else "injected"
        change_headers.append(f"+{change}% caught ({how})")
    aa_how = "A vs A2" if pools.a_again is not None else "A vs A"
    header = [
        "trials/side",
        "spread (robust CV)",
        f"A/A false alarms ({aa_how}; 95% upper)",
        *change_headers,
        "median detectable",
    ]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for n in trials:
        aa = cells.get((n, 0))
        if aa is None:
            row = [str(n), "-", "-"]
        else:
            alarms = _alarm_rate(aa.verdicts, aa.draws)
            row = [
                str(n),
                _percent(aa.median_spread),
                f"{_percent(alarms.share)} ({_percent(alarms.upper95())})",
            ]
        for change in changes:
            cell = cells.get((n, change))
            row.append("-" if cell is None else _percent(cell.verdicts.get("regressed", 0) / cell.draws))
        row.append("-" if aa is None else _percent(aa.median_detectable))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def adaptive_table(results: Sequence[AdaptiveResult], changes: Sequence[int]) -> list[str]:
    header = ["trials (min..max)", "baseline trials", "A/A false alarms (95% upper)", "A/A mean trials"]
    if changes:
        header += [f"+{c}% caught" for c in changes] + [f"+{changes[-1]}% mean trials"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    by_setting: dict[tuple[int, int], dict[int, AdaptiveResult]] = {}
    for result in results:
        by_setting.setdefault((result.min_trials, result.max_trials), {})[result.change] = result
    for (low, high), by_change in by_setting.items():
        aa = by_change[0]
        alarms = _alarm_rate(aa.verdicts, aa.draws)
        row = [
            f"{low}..{high}",
            str(aa.baseline_trials),
            f"{_percent(alarms.share)} ({_percent(alarms.upper95())})",
            f"{aa.mean_trials:.1f}",
        ]
        for change in changes:
            result = by_change.get(change)
            row.append(
                "-" if result is None else _percent(result.verdicts.get("regressed", 0) / result.draws)
            )
        if changes:
            last = by_change.get(changes[-1])
            row.append("-" if last is None else f"{last.mean_trials:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def requirement_lines(
    pools: SamplePools,
    cells: Mapping[tuple[int, int], CellResult | None],
    trials: Sequence[int],
    adaptive: Sequence[AdaptiveResult],
) -> list[str]:
    """The two measured requirements, checked on this workload's numbers.

    One cell of a few hundred draws cannot tell 0.8% from 1.2%, so the false-alarm check pools every cell
    whose counts can reach significance (and every adaptive setting), and says "met" or "NOT met" only when
    the 95% interval of the pooled rate lies on one side of the limit.
    """
    lines = []
    usable = [
        cell
        for n in trials
        if (cell := cells.get((n, 0))) is not None and math.isfinite(cell.median_detectable)
    ]
    aa_rates = [(f"{cell.trials} trials", _alarm_rate(cell.verdicts, cell.draws)) for cell in usable]
    aa_rates += [
        (f"{r.min_trials}..{r.max_trials} adaptive", _alarm_rate(r.verdicts, r.draws))
        for r in adaptive
        if r.change == 0
    ]
    if aa_rates:
        pooled = Rate(sum(rate.hits for _, rate in aa_rates), sum(rate.draws for _, rate in aa_rates))
        low, high = pooled.interval95()
        if high <= MAX_FALSE_ALARM_RATE:
            judgement = "met"
        elif low > MAX_FALSE_ALARM_RATE:
            judgement = "NOT met"
        else:
            judgement = "not decided by these draws (the 95% interval straddles the limit)"
        worst_where, worst = max(aa_rates, key=lambda item: item[1].share)
        lines.append(
            f"- A/A false alarms <= {MAX_FALSE_ALARM_RATE:.0%}: {judgement}; pooled {_percent(pooled.share, 2)}"
            f" (95% interval {_percent(low, 2)}-{_percent(high, 2)}, {pooled.draws} comparisons), highest cell"
            f" {_percent(worst.share, 2)} at {worst_where}"
        )
    spread = stats.summarize(pools.a).robust_cv
    caught = [
        (n, cell.verdicts.get("regressed", 0) / cell.draws)
        for n in trials
        if n <= REQUIRED_MAX_TRIALS and (cell := cells.get((n, REQUIRED_CHANGE_PERCENT))) is not None
    ]
    requirement = (
        f"+{REQUIRED_CHANGE_PERCENT}% caught in >= {REQUIRED_DETECTION_RATE:.0%} within {REQUIRED_MAX_TRIALS}"
        " trials per side"
    )
    if not caught:
        return lines
    if round(spread, 3) > LOW_NOISE_SPREAD:
        lines.append(
            f"- {requirement}: applies to a spread <= {LOW_NOISE_SPREAD:.0%}; pool A's robust CV is"
            f" {_percent(spread)} (measured here: {_percent(caught[-1][1])} at {caught[-1][0]} trials)"
        )
        return lines
    first = next((n for n, share in caught if share >= REQUIRED_DETECTION_RATE), None)
    last_n, last_share = caught[-1]
    if first is not None:
        lines.append(
            f"- {requirement} (pool A's robust CV {_percent(spread)}): met from {first} trials per side"
            f" ({_percent(last_share)} at {last_n})"
        )
    else:
        lines.append(
            f"- {requirement} (pool A's robust CV {_percent(spread)}): NOT met ({_percent(last_share)} at {last_n})"
        )
    return lines


# ---------------------------------------------------------------------------------------------------------
# Command line


def _parse_adaptive(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"expected MIN:MAX trials with 1 <= MIN <= MAX, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulated", action="store_true", help="noise models instead of recorded samples")
    source.add_argument(
        "--samples", type=Path, metavar="FILE.json", help="recorded samples (format: see top)"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--trials", type=int, nargs="+", default=list(DEFAULT_TRIALS), help="trials per side")
    parser.add_argument("--changes", type=int, nargs="+", default=list(DEFAULT_CHANGES), help="percent")
    parser.add_argument("--draws", type=int, default=500, help="pairs drawn per A/A cell (default 500)")
    parser.add_argument(
        "--change-draws", type=int, default=250, help="pairs drawn per change cell (default 250)"
    )
    parser.add_argument(
        "--adaptive-draws", type=int, default=150, help="runs per adaptive setting and change (default 150)"
    )
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--confidence", type=float, default=stats.DEFAULT_CONFIDENCE)
    parser.add_argument(
        "--cv", type=float, nargs="+", default=list(DEFAULT_CVS), help="simulated lognormal CVs"
    )
    parser.add_argument("--no-bimodal", action="store_true", help="simulated: leave out the bimodal model")
    parser.add_argument(
        "--adaptive",
        type=_parse_adaptive,
        nargs="*",
        default=[_parse_adaptive(a) for a in DEFAULT_ADAPTIVE],
        metavar="MIN:MAX",
        help="adaptive settings to measure (default 3:10 5:20; none to skip)",
    )
    parser.add_argument("--adaptive-baseline", type=int, default=10, help="baseline trials for adaptive runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    if args.simulated:
        workloads = simulated_workloads(args.cv, not args.no_bimodal, args.seed)
    else:
        workloads = load_samples(args.samples)
    changes = sorted(set(args.changes))
    trials = sorted(set(args.trials))

    seeds = iter(np.random.SeedSequence(args.seed).spawn(100_000))
    tasks, keys = [], []
    for index, pools in enumerate(workloads):
        for n in trials:
            for change in (0, *changes):
                draws = args.draws if change == 0 else args.change_draws
                tasks.append(
                    ("cell", (pools, n, change, draws, args.tolerance, args.confidence, next(seeds)))
                )
                keys.append(("cell", index, (n, change)))
        for low, high in args.adaptive:
            for change in (0, REQUIRED_CHANGE_PERCENT if REQUIRED_CHANGE_PERCENT in changes else changes[0]):
                draws = args.adaptive_draws
                tasks.append(
                    (
                        "adaptive",
                        (
                            pools,
                            low,
                            high,
                            args.adaptive_baseline,
                            change,
                            draws,
                            args.tolerance,
                            args.confidence,
                            next(seeds),
                        ),
                    )
                )
                keys.append(("adaptive", index, (low, high, change)))
    # Longest first (adaptive runs, then large trials), so that the workers finish together.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i][0] != "adaptive", -_task_size(tasks[i])))
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as executor:
            ordered = list(executor.map(_run_task, [tasks[i] for i in order], chunksize=1))
    else:
        ordered = [_run_task(tasks[i]) for i in order]
    results = [None] * len(tasks)
    for position, i in enumerate(order):
        results[i] = ordered[position]

    cells: dict[int, dict] = {i: {} for i in range(len(workloads))}
    adaptive: dict[int, list[AdaptiveResult]] = {i: [] for i in range(len(workloads))}
    for (kind, index, key), result in zip(keys, results, strict=True):
        if kind == "cell":
            cells[index][key] = result
        elif result is not None:
            adaptive[index].append(result)

    title = "Decision rule quality: " + (
        "SIMULATED noise (not measured on a GPU)"
        if args.simulated
        else f"recorded samples from {args.samples}"
    )
    lines = [
        f"# {title}",
        "",
        f"Rule: `pytest_llm_energy.stats.decide`, tolerance {args.tolerance:.0%}, confidence {args.confidence:g};"
        f" {args.draws} A/A pairs and {args.change_draws} changed pairs per cell, {args.adaptive_draws} runs per"
        f" adaptive setting, seed {args.seed}.",
        "A false alarm is `regressed` or `improved` on two sample sets of one configuration; a change is caught"
        " when the verdict is `regressed`. Spread: robust CV (scaled MAD / median) of one side, median over"
        " draws. Median detectable: the smallest change the A/A pairs report they could detect.",
    ]
    if args.simulated:
        lines.append(
            "**These numbers are simulated**: they show the rule on a noise model, not a GPU's noise."
        )
    for index, pools in enumerate(workloads):
        lines += [
            "",
            f"## {pools.name}",
            "",
            f"Source: {pools.source}." + (f" {pools.notes}" if pools.notes else ""),
        ]
        pool_summary = stats.summarize(pools.a)
        lines.append(
            f"Pool A: {pool_summary.n} samples, median {pool_summary.median:.4g} J/token, robust CV"
            f" {_percent(pool_summary.robust_cv)}, CV {_percent(float(np.std(pools.a) / np.mean(pools.a)))}."
        )
        lines += [""] + workload_table(pools, cells[index], trials, changes)
        if adaptive[index]:
            lines += [
                "",
                f"Adaptive trials (`should_stop` after each current trial, baseline of {args.adaptive_baseline}):",
                "",
            ]
            adaptive_changes = sorted({r.change for r in adaptive[index]} - {0})
            lines += adaptive_table(adaptive[index], adaptive_changes)
        checks = requirement_lines(pools, cells[index], trials, adaptive[index])
        if checks:
            lines += ["", "Requirements" + (" (on simulated noise)" if args.simulated else "") + ":", *checks]
    lines += ["", f"_{time.perf_counter() - started:.0f} s, {args.jobs} worker(s)._"]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
