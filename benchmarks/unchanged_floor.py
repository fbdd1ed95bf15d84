"""How quiet must runs and cards be for a bin to come out `unchanged` at the defaults? The plugin's own rule.

A run that changed nothing is judged, by `stats.compare` at the default tolerance (5%) and confidence (99%),
against a baseline of recorded runs (two per card on three cards, five trials each), with the set's evidence
of run-to-run and card-to-card scatter as if many tests had measured it. It comes out `unchanged` only when
its whole interval lies inside the band, so the half-width printed here is the least tolerance at which an
unchanged stack can be shown unchanged. On the recording card the card level drops out; on a new card it
does not.

    python benchmarks/unchanged_floor.py [--run-df 38] [--card-df 30] [--trial-spread 0.01]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pytest_llm_energy.stats import Evidence, Run, compare  # noqa: E402

RUN_NOISE = (0.005, 0.0105, 0.0206, 0.028)  # the H200 suites by GPU busy, and all (`card_check.py --by-busy`)
CARD_NOISE = (0.0, 0.005, 0.014, 0.022)  # 1.4%, 2.2%: three H200s, divided by the matmul reference (the rule then)
CARDS, RUNS_PER_CARD, TRIALS = 3, 2, 5


def half_width(run: float, card: float, *, new_card: bool, run_df: int, card_df: int,
               trial_spread: float) -> tuple[float, str]:
    evidence = Evidence(run_sum=run**2 * run_df, run_df=run_df, card_sum=card**2 * card_df, card_df=card_df)
    baseline = [Run(1.0, TRIALS, trial_spread, frozenset({f"GPU-{c}"}))
                for c in range(CARDS) for _ in range(RUNS_PER_CARD)]
    current = Run(1.0, TRIALS, trial_spread, frozenset({"GPU-new" if new_card else "GPU-0"}))
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
            same = half_width(run, card, new_card=False, run_df=args.run_df, card_df=args.card_df,
                              trial_spread=args.trial_spread)
            new = half_width(run, card, new_card=True, run_df=args.run_df, card_df=args.card_df,
                             trial_spread=args.trial_spread)
            rows.append([f"{run:.2%}", f"{card:.1%}", f"+{same[0]:.1%} ({same[1]})", f"+{new[0]:.1%} ({new[1]})"])
    print(f"baseline: {RUNS_PER_CARD} runs on each of {CARDS} cards, {TRIALS} trials a run at "
          f"{args.trial_spread:.1%} sd; evidence {args.run_df} run df, {args.card_df} card df; tolerance 5%, "
          "confidence 99%, default priors")
    print(tabulate(rows, headers=["run noise", "card noise", "half-width, recording card",
                                  "half-width, new card"], tablefmt="github"))


if __name__ == "__main__":
    main()
