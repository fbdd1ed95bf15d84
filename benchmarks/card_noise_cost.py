"""What judging against another card's baseline costs: the smallest rise the rule calls `regressed`.

Computed from the decision rule itself (no GPU): 5 baseline trials with a lognormal spread, the same
samples scaled up by X% as the current run, and the first X at which `decide` says `regressed`, with the
suites' run noise alone (same card) and combined with the plugin's default card noise (other card).

    python benchmarks/card_noise_cost.py
"""

from __future__ import annotations

import numpy as np
from tabulate import tabulate

from pytest_llm_energy.config import OPTIONS_BY_NAME
from pytest_llm_energy.stats import combine_noise, decide

TRIALS = 5
TOLERANCE = 0.05


def first_regressed(baseline: list[float], run_noise: float) -> int | None:
    for percent in range(1, 101):
        current = [value * (1 + percent / 100) for value in baseline]
        if decide(baseline, current, TOLERANCE, run_noise=run_noise).verdict == "regressed":
            return percent
    return None


def main() -> None:
    card_noise = OPTIONS_BY_NAME["card_noise"].default
    rng = np.random.default_rng(0)
    rows = []
    for spread in (0.01, 0.03):
        baseline = list(np.exp(rng.normal(0.0, spread, TRIALS)))
        for run_noise in (0.02, 0.06):
            same = first_regressed(baseline, run_noise)
            other = first_regressed(baseline, combine_noise(run_noise, card_noise))
            rows.append([f"{spread:.0%}", f"{run_noise:.0%}", f"+{same}%", f"+{other}%"])
    print(tabulate(rows, headers=["trial spread", "run noise", "same card", f"other card ({card_noise:.0%})"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
