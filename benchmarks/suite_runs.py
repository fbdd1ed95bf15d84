"""Recorded runs of the suites, side by side: how GPU-bound each bin was, how far runs moved, time per suite.

Reads the JSON reports of runs of the same suites (each its own pytest process, e.g. from
benchmarks/record_runs.sh) and the logs beside them (pytest `--durations=0`), and writes a Markdown summary:

* per bin: J/token of each run, the later runs against the first, GPU busy share, power against the limit,
  the trials' spread, and how far the first trial after warm-up sat from the others (it must not stand out);
* per suite: wall time of each run, and the part spent outside the measured trials (compiling, CUDA-graph
  capture, warm-up and calibration calls: the test's time less its trials' windows).

    python benchmarks/suite_runs.py RUN1.json RUN2.json ... --out SUMMARY.md
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

DURATION = re.compile(r"^\s*([\d.]+)s call\s+(\S+)$")


def durations(log: Path) -> dict[str, float]:
    if not log.exists():
        return {}
    found = (DURATION.match(line) for line in log.read_text().splitlines())
    return {match.group(2): float(match.group(1)) for match in found if match}


def load(path: Path) -> tuple[dict, dict[str, dict], dict[str, float]]:
    document = json.loads(path.read_text())
    return document, {r["nodeid"]: r for r in document["results"]}, durations(path.with_suffix(".log"))


def _pct(value: float) -> str:
    return f"{value:+.1%}"


def bin_rows(runs: list[dict[str, dict]]) -> list[str]:
    header = ["bin", *(f"run {i + 1} J/token" for i in range(len(runs))), "later vs run 1", "GPU busy",
              "power / limit", "trial spread (robust CV)", "first trial vs the rest"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for nodeid in sorted({nodeid for run in runs for nodeid in run}):  # a bin some runs lack shows "-" there
        records = [run[nodeid] for run in runs if nodeid in run]
        medians = [r["joules_per_token"] for r in records]
        per_run = [f"{run[nodeid]['joules_per_token']:.4g}" if nodeid in run else "-" for run in runs]
        busy = [r["measurement"].get("busy_share") for r in records]
        power = [r["measurement"].get("power_share") for r in records]
        firsts = [r["samples"][0] / statistics.median(r["samples"][1:]) - 1 for r in records if len(r["samples"]) > 1]
        cells = [nodeid.split("::")[-1], *per_run,
                 ", ".join(_pct(m / medians[0] - 1) for m in medians[1:]) or "-",
                 ", ".join(f"{b:.0%}" for b in busy if b is not None) or "-",
                 ", ".join(f"{p:.0%}" for p in power if p is not None) or "-",
                 ", ".join(f"{r['robust_cv']:.1%}" for r in records),
                 ", ".join(_pct(f) for f in firsts)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def suite_rows(loaded: list[tuple[dict, dict[str, dict], dict[str, float]]]) -> list[str]:
    lines = ["| suite | " + " | ".join(f"run {i + 1}: wall s (outside trials)" for i in range(len(loaded))) + " |",
             "|" + " --- |" * (len(loaded) + 1)]
    suites = sorted({nodeid.split("::")[0] for _, records, _ in loaded for nodeid in records})
    for suite in suites:
        cells = [suite]
        for _, records, times in loaded:
            ids = [n for n in records if n.startswith(suite + "::")]
            wall = sum(times.get(n, math.nan) for n in ids)
            trials = sum(r["measurement"]["seconds"] * len(r["samples"]) for n, r in records.items() if n in ids)
            cells.append(f"{wall:.0f} ({wall - trials:.0f})" if ids else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(paths: list[Path]) -> str:
    loaded = [load(path) for path in paths]
    lines = ["# Recorded runs of the suites", ""]
    for path, (document, _, _) in zip(paths, loaded, strict=True):
        gpus = ", ".join(document["fingerprint"].get("gpu_uuids") or [])
        references = document.get("references") or ([document["reference"]] if document.get("reference") else [])
        ref = "".join(f"; reference matmul {reference['compute_joules_per_tflop']:.4g} J/TFLOP, copy "
                      f"{reference['memory_joules_per_gb']:.4g} J/GB" for reference in references)
        lines.append(f"- `{path.name}`: {document['fingerprint']['gpu_name']} {gpus}, {document['started_at']}, "
                     f"{document['duration_s']:.0f} s{ref}")
    lines += ["", *bin_rows([records for _, records, _ in loaded]), "", *suite_rows(loaded), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of runs, the first recorded first")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    args = parser.parse_args()
    text = summary(args.reports)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
