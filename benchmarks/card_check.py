"""Each stored GPU run judged, by the rule of today, against baselines that hold none of its card's runs.

What a runner that recorded nothing meets: for each report (a pytest run's --energy-json) the committed
baselines are copied with every run of the report's cards taken out (entries left with none are dropped, and
the evidence of the set is what remains), and the report's samples are judged there by the plugin's judge at
the report's tolerance and confidence, with the run's own reference kernels (--raw: without them, so no
card is scaled by its reference figure). No GPU.

    python benchmarks/card_check.py [--raw] baselines REPORT.json [REPORT.json ...] [--adding REPORT.json ...]
    python benchmarks/card_check.py --each-run baselines   # every recorded run against its entry's others
    python benchmarks/card_check.py --by-busy baselines    # run-to-run scatter by the bins' GPU busy share

With --run-noise/--card-noise, the priors a team would set with --energy-run-noise/--energy-card-noise.
With --adding, the runs of those reports join their entries first (reports that checked the baselines
without recording into them): what the set would say had they been recorded.
With --each-run, every recorded run whose card also recorded another run of its entry is judged against the
entry's other runs (its card among them): what a run on a card that recorded the baselines meets.
With --by-busy, the scatter of runs on one card beyond their trials (the plugin's `Evidence`), pooled over
the entries whose latest run's GPU busy share falls in each class.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from pytest_llm_energy.core.baseline import BaselineStore, entry_workload, read_set
from pytest_llm_energy.core.judge import judge
from pytest_llm_energy.core.reference import card_scale
from pytest_llm_energy.core.stats import VERDICTS, Evidence, Prior, Run, compare


def report_runs(reports: list[Path]) -> dict[str, list[dict]]:
    """nodeid -> the runs of these reports (each result's `run`), as if each had been recorded."""
    found: dict[str, list[dict]] = {}
    for path in reports:
        report = json.loads(path.read_text())
        for result in report["results"]:
            found.setdefault(result["nodeid"], []).append({**result["run"], "recorded_at": report["started_at"]})
    return found


def without_cards(baselines: Path, gpu_key: str, cards: set[frozenset[str]], scratch: Path, raw: bool,
                  added: dict[str, list[dict]] | None = None) -> BaselineStore:
    """A copy of the GPU key's baselines, with the `added` runs of existing entries and without the runs of
    `cards` (raw: without their references either)."""
    folder = scratch / gpu_key
    shutil.copytree(baselines / gpu_key, folder)
    for path in folder.rglob("*.json"):
        document = json.loads(path.read_text())
        kept = {}
        for nodeid, entry in document["entries"].items():
            runs = [run for run in [*entry["runs"], *(added or {}).get(nodeid, [])]
                    if frozenset(run.get("gpus", [])) not in cards]
            if raw:
                runs = [{key: value for key, value in run.items() if key != "reference"} for run in runs]
            if runs:
                kept[nodeid] = {**entry, "runs": runs}
        document["entries"] = kept
        path.write_text(json.dumps(document))
    return BaselineStore(scratch, gpu_key)


def report_reference(report: dict, result: dict) -> dict:
    """A schema-1 report's one reference (the first worker's under xdist), for a run on that card only."""
    reference = report.get("reference") or {}
    return reference if reference.get("gpu") in (*result["run"]["gpus"], None) else {}


def check(baselines: Path, report_path: Path, raw: bool = False, added: dict[str, list[dict]] | None = None,
          prior: Prior | None = None) -> dict:
    report = json.loads(report_path.read_text())
    results = report["results"]
    cards = {frozenset(result["run"]["gpus"]) for result in results}  # one per xdist worker
    with tempfile.TemporaryDirectory() as scratch:
        store = without_cards(baselines, report["gpu"], cards, Path(scratch), raw, added)
        evidence = store.evidence()
        decisions = []
        for result in results:
            entry = store.lookup(result["nodeid"])
            reference = {} if raw else result["run"].get("reference") or report_reference(report, result)
            current = Run.of(result["samples"], result["run"]["gpus"],
                             card_scale=card_scale(reference, entry_workload(entry)))
            decisions.append(judge(entry, current, tolerance=result["tolerance"],
                                   confidence=result["confidence"], prior=prior or Prior(), evidence=evidence,
                                   fingerprint=None, on_cpu=False, allow_hardware_change=True).decision)
    judged = [d for d in decisions if d.verdict != "new"]
    return {"report": report_path.name, "card": ", ".join(sorted(gpu[:12] for card in cards for gpu in card)),
            "verdicts": Counter(d.verdict for d in decisions),
            "median_delta": statistics.median(d.delta for d in judged) if judged else None,
            "median_detectable": statistics.median(d.detectable for d in judged) if judged else None,
            "median_half_width": statistics.median(d.ci_high / d.ratio - 1 for d in judged) if judged else None,
            "adjusted": sum(d.card_adjustment is not None for d in judged), "deltas": [d.delta for d in judged]}


def each_run(baselines: Path, gpu_key: str = "h200") -> str:
    """Every recorded run against the other runs of its entry, where its card recorded one of those too."""
    evidence = BaselineStore(baselines, gpu_key).evidence()
    decisions = []
    for (key, _), entry in read_set(baselines).entries.items():
        without = evidence.without(Evidence.of_history(entry.runs))
        for i, run in enumerate(entry.runs if key == gpu_key else ()):
            rest = entry.runs[:i] + entry.runs[i + 1:]
            if run.gpus in {other.gpus for other in rest}:  # the set as it stood without this run
                others = (without + Evidence.of_history(rest)).besides(rest)
                decisions.append(compare(rest, run, 0.05, evidence=others))
    counts = ", ".join(f"{sum(d.verdict == v for d in decisions)} {v}" for v in VERDICTS)
    half = statistics.median(d.ci_high / d.ratio - 1 for d in decisions)
    return (f"{len(decisions)} runs against their entries' other runs (tolerance 5%, confidence 99%): {counts}; "
            f"median half-width of the interval {half:+.1%}, median detectable "
            f"{statistics.median(d.detectable for d in decisions):.1%}")


BUSY_CLASSES = ((0.0, 0.70), (0.70, 0.80), (0.80, 1.01))  # [low, high) of the GPU busy share


def by_busy(baselines: Path, gpu_key: str = "h200") -> str:
    """Run-to-run scatter on one card, by how busy each entry kept its GPU (benchmarks/README.md section 10)."""
    pooled = {bounds: Evidence() for bounds in BUSY_CLASSES}
    for (key, _), entry in read_set(baselines).entries.items():
        busy = (entry.data.get("measurement") or {}).get("busy_share")
        for low, high in BUSY_CLASSES if key == gpu_key and busy is not None else ():
            if low <= busy < high:
                pooled[low, high] += Evidence.of_history(entry.runs)
    lines = ["| GPU busy | degrees of freedom (pairs of runs on one card) | run-to-run sd beyond the trials |",
             "| --- | --- | --- |"]
    for (low, high), evidence in pooled.items():
        sd = (max(evidence.run_sum, 0.0) / evidence.run_df) ** 0.5 if evidence.run_df else float("nan")
        lines.append(f"| {low:.0%}-{min(high, 1.0):.0%} | {evidence.run_df} | {sd:.2%} |")
    return "\n".join(lines)


def _cell(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baselines", type=Path)
    parser.add_argument("reports", type=Path, nargs="*")
    parser.add_argument("--raw", action="store_true", help="judge without the reference kernels")
    parser.add_argument("--adding", type=Path, nargs="+", default=[], metavar="REPORT",
                        help="reports whose runs count as recorded too (each run still judged without its card's)")
    parser.add_argument("--run-noise", type=float, default=Prior().run, help="the prior of --energy-run-noise")
    parser.add_argument("--card-noise", type=float, default=Prior().card, help="the prior of --energy-card-noise")
    parser.add_argument("--each-run", action="store_true", help="judge every recorded run against its entry's others")
    parser.add_argument("--by-busy", action="store_true", help="run-to-run scatter by the bins' GPU busy share")
    args = parser.parse_args(argv)
    if args.by_busy:
        print(by_busy(args.baselines))
        return
    if args.each_run:
        print(each_run(args.baselines))
        return
    print("| report | card | " + " | ".join(VERDICTS)
          + " | median delta | median half-width of the interval | median detectable | card-adjusted |")
    print("| --- | --- | " + " | ".join("---" for _ in VERDICTS) + " | --- | --- | --- | --- |")
    verdicts, deltas = Counter(), []
    for path in args.reports:
        found = check(args.baselines, path, args.raw, report_runs(args.adding), Prior(args.run_noise, args.card_noise))
        counts = " | ".join(str(found["verdicts"].get(v, 0)) for v in VERDICTS)
        medians = [_cell(found["median_delta"], "+.1%"), _cell(found["median_half_width"], "+.1%"),
                   _cell(found["median_detectable"], ".1%")]
        print(f"| {found['report']} | {found['card']} | {counts} | " + " | ".join(medians) + f" | {found['adjusted']} |")
        verdicts += found["verdicts"]
        deltas += found["deltas"]
    if len(args.reports) > 1 and deltas:
        print(f"\nAll: {len(deltas)} verdicts against a baseline, "
              + ", ".join(f"{verdicts.get(v, 0)} {v}" for v in VERDICTS if v != "new")
              + f" ({verdicts.get('unchanged', 0) / len(deltas):.0%} unchanged); deltas {min(deltas):+.1%} to "
              f"{max(deltas):+.1%}, rms {statistics.fmean(d * d for d in deltas) ** 0.5:.1%}")


if __name__ == "__main__":
    main()
