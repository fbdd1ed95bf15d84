"""The verdict as users meet it on a GPU: separate pytest processes, default settings, a baseline of recorded runs.

    python benchmarks/verdict_check.py OUT [--records 3] [--budget 540]
    python benchmarks/verdict_check.py --rejudge OUT     # a stored run's checks, judged by the rule of today

Runs benchmarks/user_style (a team's own tests around a compiled HF generate) --records times with
--energy-update-baselines, each a process of its own, into a scratch baselines folder; then checks, one
process after another, until the time budget is spent. Each check's verdicts are the plugin's own, live.
The same runs' samples scaled by 1.05 and 1.10 (an exact +5% / +10% in J per token) are judged afterwards
against the same baseline by the plugin's judge, for the detection rates. Writes OUT/summary.json,
OUT/summary.md, the baselines file and the log (few files: a device call brings back at most eight).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = "benchmarks/user_style"
RISES = (0.05, 0.10)


def plugin_args() -> list[str]:
    """Load the plugin by name where it is not installed (its entry point loads it where it is)."""
    from importlib import metadata

    try:
        metadata.distribution("pytest-llm-energy")
        return []
    except metadata.PackageNotFoundError:
        return ["-p", "pytest_llm_energy.plugin"]


def pytest_run(tests: str, baselines: Path, report: Path, update: bool, log) -> int:
    command = [sys.executable, "-m", "pytest", tests, *plugin_args(), "-p", "no:cacheprovider",
               "--energy-gpu=auto", f"--energy-baselines={baselines}", f"--energy-json={report}", "-q"]
    if update:
        command.append("--energy-update-baselines")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    log.write(f"$ {' '.join(command)}\n{done.stdout[-6000:]}{done.stderr[-3000:]}\n({time.perf_counter() - started:.0f} s)\n")
    log.flush()
    return done.returncode


def judge_scaled(baselines: Path, gpu: str, result: dict, factor: float) -> dict:
    from pytest_llm_energy.core.baseline import BaselineStore
    from pytest_llm_energy.core.judge import judge
    from pytest_llm_energy.core.stats import Prior, Run

    store = BaselineStore(baselines, gpu)
    entry = store.lookup(result["nodeid"])
    gpus = result["run"]["gpus"]
    decision = judge(entry, Run.of([s * factor for s in result["samples"]], gpus), tolerance=result["tolerance"],
                     confidence=result["confidence"], prior=Prior(), evidence=store.evidence(), fingerprint=None,
                     on_cpu=False, allow_hardware_change=True).decision
    return {"verdict": decision.verdict, "delta": decision.delta, "detectable": decision.detectable}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--records", type=int, default=3)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for the whole check")
    parser.add_argument("--tests", default=TESTS, help="the tests to run (default: %(default)s)")
    parser.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "verdict-check"),
                        help="baselines and reports, kept between calls (default: %(default)s)")
    parser.add_argument("--rejudge", action="store_true",
                        help="judge OUT's stored checks (summary.json, baselines.json) again with today's rule, "
                             "at the default tolerance (5%%) and confidence (99%%); no GPU")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.rejudge:
        print(rejudge(out))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scratch = Path(args.scratch)  # kept between calls on one machine: a later call goes on checking
    scratch.mkdir(parents=True, exist_ok=True)
    baselines = scratch / "baselines"
    with open(out / "log.txt", "w", encoding="utf-8") as log:
        for number in range(args.records):
            report = scratch / f"record{number}.json"
            if not report.exists():
                pytest_run(args.tests, baselines, report, True, log)
        durations: list[float] = []
        while time.perf_counter() - started + max(durations, default=90.0) <= args.budget:
            report = scratch / f"check{len(list(scratch.glob('check*.json'))):02d}.json"
            began = time.perf_counter()
            pytest_run(args.tests, baselines, report, False, log)
            durations.append(time.perf_counter() - began)
    runs = [("record", json.loads((scratch / f"record{n}.json").read_text())) for n in range(args.records)]
    runs += [("check", json.loads(path.read_text())) for path in sorted(scratch.glob("check*.json"))]
    summary = summarize(runs, baselines)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    for path in baselines.rglob("*.json"):
        (out / "baselines.json").write_text(path.read_text())
    print(markdown(summary))
    return 0


def rejudge(out: Path) -> str:
    """The stored checks of a run against its stored baselines, same samples and +5% / +10%, judged now."""
    summary = json.loads((out / "summary.json").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        baselines = Path(scratch)
        nodeid = next(row["nodeid"] for row in summary["rows"])
        path = baselines / summary["gpu"] / (nodeid.split("::")[0].removesuffix(".py") + ".json")
        path.parent.mkdir(parents=True)
        path.write_text((out / "baselines.json").read_text())
        counts: dict[str, dict[str, int]] = {}
        for row in (r for r in summary["rows"] if r["kind"] == "check"):
            result = {"nodeid": row["nodeid"], "samples": row["samples"], "run": {"gpus": row["gpus"]},
                      "tolerance": 0.05, "confidence": 0.99}
            for label, factor in (("same", 1.0), ("+5%", 1.05), ("+10%", 1.10)):
                verdict = judge_scaled(baselines, summary["gpu"], result, factor)["verdict"]
                counts.setdefault(label, {}).setdefault(verdict, 0)
                counts[label][verdict] += 1
    return "\n".join(f"{label}: " + ", ".join(f"{n} {v}" for v, n in sorted(c.items())) for label, c in counts.items())


def summarize(runs: list, baselines: Path) -> dict:
    rows = []
    for number, (kind, report) in enumerate(runs):
        for result in report["results"]:
            row = {"process": number, "kind": kind, "nodeid": result["nodeid"], "verdict": result["verdict"],
                   "delta": result["delta"], "ci": [result["ci_low"], result["ci_high"]],
                   "detectable": result["detectable"], "noise": result["noise"], "runs": result["runs"],
                   "flags": result["flags"], "seconds": result["measurement"]["seconds"],
                   "repeats": result["measurement"]["repeats"], "watts": result["measurement"]["average_watts"],
                   "samples": result["samples"], "gpus": result["run"]["gpus"]}
            if kind == "check":
                row["scaled"] = {f"+{rise:.0%}": judge_scaled(baselines, report["gpu"], result, 1 + rise)
                                 for rise in RISES}
            rows.append(row)
    first = runs[0][1]
    return {"gpu": first["gpu"], "meter": first["meter_description"], "fingerprint": first["fingerprint"],
            "rows": rows}


def markdown(summary: dict) -> str:
    checks = [row for row in summary["rows"] if row["kind"] == "check"]
    alarms = [row for row in checks if row["verdict"] in ("regressed", "improved")]
    lines = [f"# Verdicts of a user's tests, separate processes ({summary['meter']})", "",
             f"{len(checks)} A/A comparisons (unchanged code against a baseline of recorded runs): "
             f"{len(alarms)} false alarms; verdicts: "
             + ", ".join(f"{v} {sum(r['verdict'] == v for r in checks)}" for v in
                         ("unchanged", "inconclusive", "regressed", "improved")), ""]
    for rise in RISES:
        key = f"+{rise:.0%}"
        caught = sum(r["scaled"][key]["verdict"] == "regressed" for r in checks)
        lines.append(f"{key} (the same samples x {1 + rise:g}): caught {caught} of {len(checks)}")
    lines += ["", "| process | test | verdict | delta | CI | detectable | noise (trial / run) | window s | W |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in summary["rows"]:
        ci = row["ci"]
        ci_text = f"{ci[0] - 1:+.1%}..{ci[1] - 1:+.1%}" if ci[0] is not None else "-"
        noise = row["noise"] or {}
        lines.append(
            f"| {row['process']} {row['kind']} | {row['nodeid'].split('::')[-1]} | {row['verdict']} | "
            + (f"{row['delta']:+.1%}" if row["delta"] is not None else "-")
            + f" | {ci_text} | {row['detectable'] if isinstance(row['detectable'], str) else format(row['detectable'], '.1%')} | "
            f"{noise.get('trial', 0):.1%} / {noise.get('run', 0):.1%} | {row['seconds']:.2f} | {row['watts']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
