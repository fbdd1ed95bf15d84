"""A/B on one GPU as users run it: `pytest --energy-ab=PYTHON`, its verdicts, and what it costs in time.

    python benchmarks/ab_check.py OUT --phase aa       # same work in both arms: batch 32, 20 tests
    python benchmarks/ab_check.py OUT --phase plus5    # arm B decodes 5% more steps (same tokens): 8 tests
    python benchmarks/ab_check.py OUT --phase plain    # the same tests without A/B (one arm): time, J/token
    python benchmarks/ab_check.py OUT --summarize      # OUT/summary.md from the phases' reports
    python benchmarks/ab_check.py OUT --phase aa --repeats 8 --trials 10    # other counts

`--summarize --rejudge` judges the stored trials again with the present rule (ab.pair), for reports written
before it changed: the rule is a function of the trials alone, so the verdicts are those a run would give.

Each phase is one pytest process over benchmarks/ab (a team's compiled-generate tests), arm A being the
same interpreter with AB_REFERENCE=1; its JSON report and log go to OUT. `plain` shows what the stored-
baseline mode spends on the same tests, and whether an arm's J/token in A/B (the other arm waiting with its
model loaded) matches the same test measured alone: the meter must give each window to the running arm.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pytest_llm_energy.plugin.ab import pair

TESTS = "benchmarks/ab"
TOLERANCE = 0.02  # the band a +5% change must clear; A/A false alarms are counted against the same band
PHASES = {  # phase -> (groups, repeats per group, A/B); batch 32 compiled is a GPU-bound bin
    "aa": ("aa-32", 20, True),
    "plus5": ("plus5-32", 8, True),
    "plain": ("aa-32", 2, False),
}


def run_phase(out: Path, phase: str, repeats: int | None = None, trials: int | None = None) -> None:
    groups, default_repeats, ab = PHASES[phase]
    repeats = repeats or default_repeats
    command = [sys.executable, "-m", "pytest", TESTS, "-p", "no:cacheprovider", "--energy-gpu=auto",
               f"--energy-tolerance={TOLERANCE}", f"--energy-json={out / f'{phase}.json'}", "-q"]
    if ab:
        command += [f"--energy-ab={sys.executable}", "--energy-ab-env=AB_REFERENCE=1"]
    environment = {**os.environ, "AB_GROUPS": groups, "AB_REPEATS": str(repeats), "AB_TRIALS": str(trials or 0)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    (out / f"{phase}.log").write_text(f"$ {' '.join(command)}\n{done.stdout[-12000:]}{done.stderr[-4000:]}\n"
                                      f"(exit {done.returncode}, {wall:.0f} s)\n")
    (out / f"{phase}.wall").write_text(f"{wall:.1f}\n")


def rejudged(record: dict) -> dict:
    """The record with the verdict the present pairing rule gives its stored trials."""
    arm_a = {**record["arm_a"], "tolerance": record["tolerance"], "confidence": record["confidence"],
             "workload": record.get("workload"), "stack": None}
    return {**pair(arm_a, {**record, "stack": None}), "nodeid": record["nodeid"]}


def summarize(out: Path, rejudge: bool = False) -> str:
    reports = {phase: json.loads((out / f"{phase}.json").read_text()) for phase in PHASES
               if (out / f"{phase}.json").exists()}
    if rejudge:
        for report in reports.values():
            report["results"] = [rejudged(r) if "arm_a" in r else r for r in report["results"]]
    walls = {phase: float((out / f"{phase}.wall").read_text()) for phase in reports}
    first = next(iter(reports.values()))
    lines = [f"# A/B turn about on one GPU ({first['meter_description']})", "",
             f"Tolerance {TOLERANCE:.0%}, confidence 99%, compiled HF generate of Llama-3.2-1B shapes, 512 in / "
             "256 out, energy(fn); arm A = the same interpreter with AB_REFERENCE=1.", ""]
    for phase in ("aa", "plus5"):
        if phase not in reports:
            continue
        results = reports[phase]["results"]
        verdicts = {v: sum(r["verdict"] == v for r in results)
                    for v in ("regressed", "improved", "unchanged", "inconclusive")}
        what = "A/A (same work)" if phase == "aa" else "+5% decode steps in arm B"
        lines.append(f"{what}: {len(results)} comparisons, " + ", ".join(f"{v} {n}" for v, n in verdicts.items())
                     + f"; wall {walls[phase]:.0f} s")
    lines += ["", "| phase | test | verdict | delta | CI | detectable | trials B/A | trial noise | J/token B | "
              "J/token A | windows s | repeats | flags |", "|" + " --- |" * 13]
    for phase in ("aa", "plus5"):
        for r in (reports.get(phase) or {}).get("results", []):
            lines.append(
                f"| {phase} | {r['nodeid'].split('[')[-1].rstrip(']')} | {r['verdict']} | {r['delta']:+.1%} | "
                f"{r['ci_low'] - 1:+.1%}..{r['ci_high'] - 1:+.1%} | {r['detectable']:.1%} | "
                f"{len(r['samples'])}/{len(r['arm_a']['samples'])} | {r['noise']['trial']:.1%} | "
                f"{r['joules_per_token']:.5f} | {r['baseline_joules_per_token']:.5f} | "
                f"{r['measurement']['seconds']:.2f} | {r['measurement']['repeats']} | "
                f"{', '.join(r.get('flags', [])) or '-'} |")
    if "plain" in reports and "aa" in reports:
        lines += ["", "Attribution: each arm's J/token in A/B (the other arm waiting, its model loaded) against "
                  "the same test alone (`plain`, same card, same call):", "",
                  "| test | alone | A/B arm A | A/B arm B |", "| --- | --- | --- | --- |"]
        ab = {r["nodeid"]: r for r in reports["aa"]["results"]}
        for r in reports["plain"]["results"]:
            pair = ab.get(r["nodeid"])
            if pair:
                lines.append(f"| {r['nodeid'].split('[')[-1].rstrip(']')} | {r['joules_per_token']:.5f} | "
                             f"{pair['baseline_joules_per_token']:.5f} | {pair['joules_per_token']:.5f} |")
        per_test = {phase: walls[phase] / len(reports[phase]["results"]) for phase in ("aa", "plain")}
        lines += ["", f"Wall time per test (process total / tests, compile and load included): A/B "
                  f"{per_test['aa']:.0f} s, alone {per_test['plain']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--phase", choices=sorted(PHASES), action="append", default=[])
    parser.add_argument("--repeats", type=int, help="tests per phase (default: the phase's own)")
    parser.add_argument("--trials", type=int, help="trials per arm in every test (default: plus5 10, aa 5)")
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--rejudge", action="store_true", help="judge stored trials with the present rule")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for phase in args.phase:
        run_phase(out, phase, args.repeats, args.trials)
    if args.summarize:
        text = summarize(out, args.rejudge)
        (out / "summary.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
