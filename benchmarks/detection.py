"""The decision rule's rates, simulated: false alarms, interval coverage, detection, at the plugin's defaults.

Runs `pytest_llm_energy.core.stats.compare_arrays`, the very code the plugin judges with, on simulated runs. A
test's level is fixed; every run (a pytest process) moves it by a random offset of sd `drift` (run-to-run
scatter, unknown to the rule); every trial adds lognormal noise of sd `noise`. The baseline is K recorded
runs of n trials each; the current run has n trials and, for detection, a true rise. For each cell of
drift x trial noise x trials x recorded runs it reports, over --reps replicates:

* A/A false alarms: unchanged stack, verdict regressed or improved;
* coverage: how often the interval of the ratio holds the true ratio (nominal: the confidence);
* the rise caught 80% of the time (found by bisection, common random numbers) next to the median of the
  `detectable` the rule reported for the same runs; they should agree within 20%;
* a 3x rise caught (the cells with 3 trials a side).

Each test is judged as one of a baselines set of --set-size tests recorded alike (the other tests' runs are
the set's evidence of run scatter, as the plugin pools them); --set-size 1 is a test alone, which knows only
its prior and its own runs. No GPU.

    python benchmarks/detection.py --reps 2000 --out benchmarks/results/detection_simulated.md
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from pytest_llm_energy.core import stats

DRIFTS = (0.0, 0.02, 0.06)
NOISES = (0.005, 0.02, 0.05, 0.10, 0.15)
TRIALS = (3, 5, 10)
RUNS = (1, 3, 10)


@dataclass(frozen=True)
class Draws:
    """Standard normal draws for one cell, reused for every rise (common random numbers)."""

    base_offsets: np.ndarray  # (R, K)
    base_trials: np.ndarray  # (R, K, n)
    current_offset: np.ndarray  # (R,)
    current_trials: np.ndarray  # (R, n)

    @classmethod
    def of(cls, rng: np.random.Generator, reps: int, runs: int, trials: int) -> Draws:
        return cls(rng.standard_normal((reps, runs)), rng.standard_normal((reps, runs, trials)),
                   rng.standard_normal(reps), rng.standard_normal((reps, trials)))


@dataclass(frozen=True)
class Cell:
    drift: float
    noise: float
    trials: int
    runs: int


def set_evidence(cell: Cell, rng: np.random.Generator, reps: int, others: int) -> stats.Evidence:
    """What the other tests of each replicate's set say, through `Evidence.of_history` itself."""
    if others == 0 or cell.runs < 2:
        return stats.NO_EVIDENCE
    drift, sigma = math.log1p(cell.drift), math.log1p(cell.noise)
    logs = (drift * rng.standard_normal((reps, others, cell.runs, 1))
            + sigma * rng.standard_normal((reps, others, cell.runs, cell.trials)))
    medians, spreads = np.exp(np.median(logs, axis=3)), np.std(logs, axis=3, ddof=1)
    sums = np.zeros(reps)
    for rep in range(reps):
        evidence = stats.Evidence.of(
            [stats.Run(float(medians[rep, t, k]), cell.trials, float(spreads[rep, t, k])) for k in range(cell.runs)]
            for t in range(others))
        sums[rep] = evidence.run_sum
    return stats.Evidence(run_sum=sums, run_df=others * (cell.runs - 1))


def judged(cell: Cell, draws: Draws, rise: float, tolerance: float, confidence: float,
           evidence: stats.Evidence = stats.NO_EVIDENCE) -> stats.Comparison:
    """The rule on every replicate of a cell, the current run's true level `rise` above the baseline's."""
    drift, sigma = math.log1p(cell.drift), math.log1p(cell.noise)
    base_logs = drift * draws.base_offsets[:, :, None] + sigma * draws.base_trials
    current_logs = math.log1p(rise) + drift * draws.current_offset[:, None] + sigma * draws.current_trials
    return stats.compare_arrays(
        np.median(base_logs, axis=2), [cell.trials] * cell.runs, np.std(base_logs, axis=2, ddof=1),
        np.median(current_logs, axis=1), cell.trials, np.std(current_logs, axis=1, ddof=1),
        tolerance=tolerance, confidence=confidence, evidence=evidence,
    )


def caught(comparison: stats.Comparison) -> float:
    return float(np.mean(comparison.verdict == stats.VERDICTS.index(stats.Verdict.REGRESSED)))


def rise_caught_80(judge_at) -> float:
    """The smallest rise called regressed in 80% of replicates (bisection on the log rise)."""
    low, high = 0.0, 3.0  # log rises; exp(3) - 1 = +1900%
    if caught(judge_at(math.expm1(high))) < stats.DETECTION_POWER:
        return math.inf
    for _ in range(16):
        middle = (low + high) / 2
        if caught(judge_at(math.expm1(middle))) >= stats.DETECTION_POWER:
            high = middle
        else:
            low = middle
    return math.expm1(high)


def measure_cell(cell: Cell, rng: np.random.Generator, reps: int, tolerance: float, confidence: float,
                 set_size: int) -> dict:
    draws = Draws.of(rng, reps, cell.runs, cell.trials)
    evidence = set_evidence(cell, rng, reps, set_size - 1)

    def judge_at(rise: float) -> stats.Comparison:
        return judged(cell, draws, rise, tolerance, confidence, evidence)

    same = judge_at(0.0)
    alarms = np.isin(same.verdict, [stats.VERDICTS.index(stats.Verdict.REGRESSED), stats.VERDICTS.index(stats.Verdict.IMPROVED)])
    return {"cell": cell, "false_alarms": float(np.mean(alarms)),
            "coverage": float(np.mean((same.low <= 0) & (0 <= same.high))),
            "unchanged": float(np.mean(same.verdict == stats.VERDICTS.index(stats.Verdict.UNCHANGED))),
            "reported": float(np.median(same.detectable)), "caught_80": rise_caught_80(judge_at),
            "tripled": caught(judge_at(2.0)) if cell.trials == 3 else None}


def agreement(row: dict) -> float:
    """max/min of the rise caught 80% of the time and the reported detectable change (1 is perfect)."""
    a, b = row["caught_80"], row["reported"]
    if not (math.isfinite(a) and math.isfinite(b)):
        return 1.0 if a == b else math.inf
    return max(a, b) / min(a, b)


def checks(rows: list[dict], confidence: float) -> list[tuple[str, bool, str]]:
    worst_alarm = max(rows, key=lambda r: r["false_alarms"])
    worst_cover = max(rows, key=lambda r: abs(r["coverage"] - confidence))
    worst_agree = max(rows, key=agreement)
    tripled = [r for r in rows if r["tripled"] is not None]
    worst_triple = min(tripled, key=lambda r: r["tripled"])
    return [
        ("A/A false alarms <= 1% in every cell", worst_alarm["false_alarms"] <= 0.01,
         f"worst {worst_alarm['false_alarms']:.2%} ({label(worst_alarm['cell'])})"),
        (f"coverage within 1 point of {confidence:.0%}", abs(worst_cover["coverage"] - confidence) <= 0.01 + 1e-9,
         f"worst {worst_cover['coverage']:.2%} ({label(worst_cover['cell'])})"),
        ("rise caught 80% and reported detectable within 20%", agreement(worst_agree) <= 1.2,
         f"worst {agreement(worst_agree):.2f}x ({label(worst_agree['cell'])}: caught {pct(worst_agree['caught_80'])}, "
         f"reported {pct(worst_agree['reported'])})"),
        ("3x caught >= 99% at 3 vs 3", worst_triple["tripled"] >= 0.99,
         f"worst {worst_triple['tripled']:.2%} ({label(worst_triple['cell'])})"),
    ]


def pct(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.1%}"


def label(cell: Cell) -> str:
    return f"drift {cell.drift:.0%}, noise {cell.noise:.1%}, {cell.trials} trials, {cell.runs} runs"


def markdown(rows: list[dict], args, seconds: float) -> str:
    lines = [
        "# The decision rule, simulated (`benchmarks/detection.py`)", "",
        f"Rule: `pytest_llm_energy.core.stats.compare_arrays` at the plugin's defaults: tolerance {args.tolerance:.0%}, "
        f"confidence {args.confidence:.0%}, run-noise prior {stats.DEFAULT_RUN_NOISE:.0%} (weight "
        f"{stats.PRIOR_WEIGHT}), each test one of a set of {args.set_size} recorded alike. {args.reps} replicates a cell, seed {args.seed}, "
        f"{seconds:.0f} s on a CPU. Drift: sd of a run's level; noise: sd of a trial; a baseline of K recorded runs "
        "of n trials against one run of n trials.", "",
        "| check | holds | where it is tightest |", "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in checks(rows, args.confidence)]
    lines += ["", "| drift | trial noise | trials | runs | A/A false alarms | A/A unchanged | coverage | "
              "rise caught 80% | reported detectable | ratio | 3x caught |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        cell = row["cell"]
        tripled = "" if row["tripled"] is None else f"{row['tripled']:.1%}"
        lines.append(
            f"| {cell.drift:.0%} | {cell.noise:.1%} | {cell.trials} | {cell.runs} | {row['false_alarms']:.2%} | "
            f"{row['unchanged']:.1%} | {row['coverage']:.2%} | {pct(row['caught_80'])} | {pct(row['reported'])} | "
            f"{agreement(row):.2f} | {tripled} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--confidence", type=float, default=stats.DEFAULT_CONFIDENCE)
    parser.add_argument("--set-size", type=int, default=10, help="tests in the simulated baselines set (1: alone)")
    parser.add_argument("--out", help="write the Markdown tables here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows = [measure_cell(Cell(*values), rng, args.reps, args.tolerance, args.confidence, args.set_size)
            for values in itertools.product(DRIFTS, NOISES, TRIALS, RUNS)]
    text = markdown(rows, args, time.perf_counter() - started)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    print(text)
    return 0 if all(ok for _, ok, _ in checks(rows, args.confidence)) else 1


if __name__ == "__main__":
    sys.exit(main())
