"""False alarms of the decision rule on real processes of unchanged code (A/A), before and after a change.

Each process of a set is one run of the same test on the CPU-time estimate; baselines are made of other
processes of the set (K of them at random, or recorded in order as `--energy-update-baselines` would,
restarting the history at a `regressed` or `improved` run) and every other process is judged against them,
with the rule as a CPU run uses it (`judge.cpu_prior`) and with the plain 5% prior of a GPU run.

    python benchmarks/cpu_alarm/rejudge.py benchmarks/results/cpu/alarm_py1.json   # a set as committed
    python benchmarks/cpu_alarm/rejudge.py OUT                                     # record_check.sh's reports
"""

from __future__ import annotations

import argparse
import collections
import json
import random
from pathlib import Path

import numpy as np

from pytest_llm_energy.core.judge import cpu_prior
from pytest_llm_energy.core.stats import Evidence, Prior, Run, Verdict, compare

ALARMS = (Verdict.REGRESSED, Verdict.IMPROVED)

TOLERANCE = 0.05


def processes(source: Path) -> list[list[float]]:
    """Each process's samples, in the order the processes ran."""
    if source.is_dir():
        reports = [json.loads(path.read_text()) for path in sorted(source.glob("*.json"))]
        found = [(d["started_at"], r["samples"]) for d in reports for r in d["results"]]
    else:
        found = [(p["started_at"], p["samples"]) for p in json.loads(source.read_text())["processes"]]
    return [samples for _, samples in sorted(found)]


def verdict(base: list[Run], current: Run, prior: Prior):
    return compare(base, current, TOLERANCE, prior=prior, evidence=Evidence.of([base]).besides(base)).verdict


def false_alarms(runs: list[Run], prior: Prior, draws: int, seed: int = 1) -> dict[str, float]:
    rng, rates = random.Random(seed), {}
    for k in (1, 2, 3, 5):
        counts = collections.Counter()
        for _ in range(draws):
            pick = rng.sample(range(len(runs)), k + 1)
            counts[verdict([runs[i] for i in pick[:k]], runs[pick[k]], prior)] += 1
        rates[f"{k} at random"] = (counts[Verdict.REGRESSED] + counts[Verdict.IMPROVED]) / draws
    for k in (1, 2, 3):
        alarms = total = 0
        for start in range(len(runs) - k):
            history = [runs[start]]
            for j in range(start + 1, start + k):
                history = [runs[j]] if verdict(history, runs[j], prior) in ALARMS else history + [runs[j]]
            for j in range(start + k, len(runs)):
                alarms += verdict(history, runs[j], prior) in ALARMS
                total += 1
        rates[f"{k} recorded in order"] = alarms / total
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path, help="a set's JSON file, or a folder of JSON reports")
    parser.add_argument("--draws", type=int, default=3000, help="random baselines per K")
    arguments = parser.parse_args()
    for source in arguments.sources:
        runs = [Run.of(samples) for samples in processes(source)]
        logs = np.log([run.median for run in runs])
        trials = np.sqrt(np.mean([run.spread ** 2 for run in runs]))
        print(f"{source}: {len(runs)} processes, log medians spread {logs.std(ddof=1):.1%}, trials {trials:.1%}")
        for name, prior in (("GPU rule (5% prior)", Prior()), ("CPU rule (prior at least the trials')",
                                                              cpu_prior(Prior(), on_cpu=True))):
            rates = false_alarms(runs, prior, arguments.draws)
            print(f"  {name:38s} " + ", ".join(f"{key}: {rate:.1%}" for key, rate in rates.items()))


if __name__ == "__main__":
    main()
