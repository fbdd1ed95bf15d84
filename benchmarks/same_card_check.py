"""Same code, same GPU model, separate runs, judged by the plugin's present rule: never a change.

Reads the JSON reports of the run that recorded the suites' baselines and of later runs of the same code,
and judges each later run with the plugin's judge (`judge.judge`), as the plugin would today: the suites'
run-noise prior (suites/conftest.py `RUN_NOISE`, 8% for the decoding suite), the default card-noise prior
where a later run was on another physical GPU, and the set's evidence. With --history the baseline is the
record and every later run before this one (as a team that adds each green run), else the record alone.
Each run's own verdicts (the rule and defaults of the code it ran) are printed beside. Reproduce:

    python benchmarks/same_card_check.py --record benchmarks/results/h200/suites_record.json \
        benchmarks/results/h200/suites_check.json benchmarks/results/h200/suites_recheck.json \
        benchmarks/results/h200/suites_check_card3.json benchmarks/results/h200/suites_check_card4.json \
        benchmarks/results/h200/suites_check_card5.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from tabulate import tabulate

from pytest_llm_energy.core.baseline import BaselineEntry
from pytest_llm_energy.core.judge import judge
from pytest_llm_energy.core.stats import Evidence, Prior, Run

SUITES = Path(__file__).resolve().parent.parent / "suites"
DECODING_RUN_NOISE = 0.08  # suites/test_decoding.py's marker


def suite_run_noise() -> float:
    spec = importlib.util.spec_from_file_location("suites_conftest", SUITES / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RUN_NOISE


def run_of(result: dict) -> Run:
    return Run.of(result["samples"], [device["uuid"] for device in result["measurement"]["devices"]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", type=Path, action="append", required=True,
                        help="JSON report of the run that recorded the baselines (repeat for a record in parts)")
    parser.add_argument("later", type=Path, nargs="+", help="JSON reports of later runs of the same suites")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--history", action="store_true", help="add each later run to the baseline after it")
    args = parser.parse_args(argv)
    histories = {}
    for path in args.record:
        for result in json.loads(path.read_text())["results"]:
            histories[result["nodeid"]] = [run_of(result)]
    rows, changes = [], 0
    for number, path in enumerate(args.later, start=2):
        later = sorted(json.loads(path.read_text())["results"], key=lambda r: r["nodeid"])
        evidence = Evidence.of(histories.values())
        for result in later:
            nodeid = result["nodeid"]
            runs = tuple(histories[nodeid])
            entry = BaselineEntry(nodeid, path, runs[-1].median, tuple(result["samples"]), runs, {})
            noise = DECODING_RUN_NOISE if "test_decoding" in nodeid else suite_run_noise()
            judged = judge(entry, run_of(result), tolerance=args.tolerance, confidence=0.99,
                           prior=Prior(run=noise), evidence=evidence, fingerprint=None, on_cpu=False,
                           allow_hardware_change=True)
            decision = judged.decision
            changes += decision.verdict in ("regressed", "improved")
            card = "other" if judged.other_gpus else "same"
            rows.append([number, f"{run_of(result).gpus and sorted(run_of(result).gpus)[0][:12]} ({card})",
                         nodeid.split("::", 1)[1], len(runs), f"{decision.delta:+.1%}",
                         f"{decision.ci_low - 1:+.1%}..{decision.ci_high - 1:+.1%}", decision.verdict,
                         result["verdict"]])
        if args.history:
            for result in later:
                histories[result["nodeid"]].append(run_of(result))
    print(tabulate(rows, headers=["run", "GPU", "test", "recorded runs", "delta", "99% CI", "verdict now",
                                  "verdict in the run"], tablefmt="github"))
    print(f"\n{len(rows)} comparisons, {changes} called a change")
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
