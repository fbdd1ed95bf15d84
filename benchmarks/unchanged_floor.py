"""How quiet must runs and cards be for a bin to come out `unchanged` at the defaults? The plugin's own rule.

A run that changed nothing is judged, by `stats.compare` at the default tolerance (5%) and confidence (99%),
against six recorded runs of five trials each, with the set's evidence of run-to-run and card-to-card
scatter as if many tests had measured it, on three cards: the card that recorded all six (the card level
drops out), one of three cards that recorded two each (it counts in part: this card's level is a third of
the baseline's), and a card that recorded none (in full, and a third of the mean's). It comes out
`unchanged` only when its whole interval lies inside the band, so the half-width printed here is the least
tolerance at which an unchanged stack can be shown unchanged.

    python benchmarks/unchanged_floor.py [--run-df 38] [--card-df 30] [--trial-spread 0.01]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pytest_llm_energy.core.stats import Evidence, Run, compare  # noqa: E402

RUN_NOISE = (0.005, 0.0105, 0.0206, 0.028)  # the H200 suites by GPU busy, and all (`card_check.py --by-busy`)
CARD_NOISE = (0.0, 0.005, 0.014, 0.022)  # 1.4%, 2.2%: three H200s, divided by the matmul reference (the rule then)
CARDS, RUNS_PER_CARD, TRIALS = 3, 2, 5


WHERE = ("the card that recorded all", "one of the recording cards", "a new card")


def half_width(run: float, card: float, *, where: str, run_df: int, card_df: int,
               trial_spread: float) -> tuple[float, str]:
    evidence = Evidence(run_sum=run**2 * run_df, run_df=run_df, card_sum=card**2 * card_df, card_df=card_df)
    cards = 1 if where == WHERE[0] else CARDS
    baseline = [Run(1.0, TRIALS, trial_spread, frozenset({f"GPU-{c % cards}"}))
                for c in range(CARDS) for _ in range(RUNS_PER_CARD)]
    current = Run(1.0, TRIALS, trial_spread, frozenset({"GPU-new" if where == WHERE[2] else "GPU-0"}))
    decision = compare(baseline, current, 0.05, evidence=evidence)
    return decision.ci_high - 1, decision.verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-df", type=int, default=38, help="degrees of freedom of the set's run scatter")
    parser.add_argument("--card-df", type=int, default=30, help="degrees of freedom of its card scatter")
    parser.add_argument("--trial-spread", type=float, default=0.01, help="trials' relative sd in every run")
    args = parser.parse_args()
    rows = []
    for run in RUN_NOISE:
        for card in CARD_NOISE:
            found = [half_width(run, card, where=where, run_df=args.run_df, card_df=args.card_df,
                                trial_spread=args.trial_spread) for where in WHERE]
            rows.append([f"{run:.2%}", f"{card:.1%}", *(f"+{width:.1%} ({verdict})" for width, verdict in found)])
    print(f"baseline: {CARDS * RUNS_PER_CARD} runs, {TRIALS} trials a run at {args.trial_spread:.1%} sd; evidence "
          f"{args.run_df} run df, {args.card_df} card df; tolerance 5%, confidence 99%, default priors")
    print(tabulate(rows, headers=["run noise", "card noise", *(f"half-width, {where}" for where in WHERE)],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
