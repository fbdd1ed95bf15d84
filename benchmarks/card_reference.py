"""Does dividing J/token by the card's reference kernels narrow the card-to-card spread of the bins?

Reads a baselines folder whose entries hold recorded runs from several cards of one GPU model, each run with
the reference kernels its process measured (matmul J/TFLOP, copy J/GB). For each way of dividing (none, by
the matmul, by the copy, by their geometric mean) it prints:

* the card spread: per bin, the standard deviation over cards of each card's mean log J/token; rms over the
  bins, next to the part the runs' own scatter on one card puts into it (card means of 1-2 runs);
* held-out cards: each card's offset from the other cards' mean, bin by bin, rms over bins and cards; this
  is what a run on a card that recorded nothing meets, and no card's data chose the division it is judged by;
* runs on one card: the pooled run-to-run spread on each card, which a per-run division must not widen.

    python benchmarks/card_reference.py [baselines/h200] [--reports REPORT.json ...] [--kind prefill|decode]

--reports adds the runs of pytest --energy-json reports (cards that checked the baselines without recording
into them); --kind keeps the prefill-bound bins (at most 32 output tokens) or the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
from pathlib import Path

import numpy as np

from pytest_llm_energy.core.baseline import read_set
from pytest_llm_energy.core.reference import card_scale, prefill_bound

# Each division: (reference, workload) -> the log of what a run's J/token is divided by.
DIVISIONS = {
    "none": lambda ref, work: 0.0,
    "matmul (J/TFLOP)": lambda ref, work: math.log(ref["compute_joules_per_tflop"]),
    "copy (J/GB)": lambda ref, work: math.log(ref["memory_joules_per_gb"]),
    "geometric mean of both": lambda ref, work: (math.log(ref["compute_joules_per_tflop"])
                                                 + math.log(ref["memory_joules_per_gb"])) / 2,
    "the rule's: matmul for prefill-bound bins, both for the rest": lambda ref, work: math.log(card_scale(ref, work)),
}


KINDS = {"prefill": prefill_bound, "decode": lambda work: not prefill_bound(work)}


def runs_by_bin(folder: str, reports=(), kind: str | None = None) -> dict[str, dict[str, list[tuple]]]:
    """bin -> card -> [(log J/token, reference, workload)] of the runs that carry a reference and name one
    card: the baselines' recorded runs, and those of the reports."""
    found: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(list))
    keep = KINDS[kind] if kind else (lambda work: True)
    for entry in read_set(folder).entries.values():
        for run, raw in zip(entry.runs, entry.data.get("runs", []), strict=False):
            if raw.get("reference") and len(run.gpus) == 1 and keep(entry.data.get("workload")):
                found[entry.nodeid][next(iter(run.gpus))].append(
                    (math.log(run.median), raw["reference"], entry.data.get("workload")))
    for path in reports:
        for result in json.loads(Path(path).read_text())["results"]:
            run = result["run"]
            if run.get("reference") and len(run["gpus"]) == 1 and keep(result.get("workload")):
                found[result["nodeid"]][run["gpus"][0]].append(
                    (math.log(run["median"]), run["reference"], result.get("workload")))
    return found


def study(found, divide) -> tuple[float, float, float, float]:
    """(card spread, its share from runs, held-out card offset, run-to-run on one card), each rms, as fractions."""
    spreads, from_runs, held_out, within = [], [], [], []
    for cards in found.values():
        values = {card: [log - divide(ref, work) for log, ref, work in runs] for card, runs in cards.items()}
        for runs in values.values():
            if len(runs) > 1:
                within.append(np.var(runs, ddof=1))
        if len(values) < 3:
            continue
        means = {card: np.mean(runs) for card, runs in values.items()}
        spreads.append(np.var(list(means.values()), ddof=1))
        from_runs.append([1 / len(runs) for runs in values.values()])
        held_out += [(means[card] - np.mean([m for c, m in means.items() if c != card])) ** 2 for card in means]
    run_var = float(np.mean(within)) if within else 0.0
    share = float(np.mean([run_var * np.mean(inverse) for inverse in from_runs])) if from_runs else 0.0
    return _rms(spreads), math.sqrt(share), _rms(held_out), math.sqrt(run_var)


def _rms(variances: list[float]) -> float:
    return math.sqrt(float(np.mean(variances))) if variances else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="baselines/h200")
    parser.add_argument("--reports", nargs="*", default=(), help="pytest --energy-json reports to add")
    parser.add_argument("--kind", choices=sorted(KINDS), help="only prefill-bound bins, or only the others")
    args = parser.parse_args(argv)
    found = runs_by_bin(args.folder, args.reports, args.kind)
    cards = sorted({card for by_card in found.values() for card in by_card})
    bins = sum(1 for by_card in found.values() if len(by_card) >= 3)
    print(f"{len(cards)} cards ({', '.join(card[:12] for card in cards)}); {bins} bins measured on 3 or more")
    print("\n| divided by | card spread, rms | of which runs' scatter | held-out card offset, rms | run to run on one card |")
    print("| --- | --- | --- | --- | --- |")
    for name, divide in DIVISIONS.items():
        spread, from_runs, held_out, within = study(found, divide)
        print(f"| {name} | {spread:.2%} | {from_runs:.2%} | {held_out:.2%} | {within:.2%} |")
    print("\nReference kernels per card (mean of its runs):")
    for card in cards:
        refs = {ref["compute_joules_per_tflop"]: ref for by_card in found.values()
                for log, ref, work in by_card.get(card, [])}.values()
        print(f"  {card}: matmul {np.mean([r['compute_joules_per_tflop'] for r in refs]):.4f} J/TFLOP, "
              f"copy {np.mean([r['memory_joules_per_gb'] for r in refs]):.4f} J/GB ({len(refs)} runs)")


if __name__ == "__main__":
    main()
