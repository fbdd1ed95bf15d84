"""Per-GPU energy of a `-n 2` run: which GPU each worker measured, against each GPU's own counter.

On the GPU runner, around the run (the counters are read directly, not through the plugin):

    python benchmarks/xdist_check.py counters > before.json
    pytest suites/test_code.py suites/test_decoding.py --energy-gpu=auto -n 2 ... --energy-json=xdist.json
    python benchmarks/xdist_check.py counters > after.json

Anywhere:

    python benchmarks/xdist_check.py table xdist.json before.json after.json

For each worker: its pinned GPU, the GPUs its records name, and the energy of its trial windows beside
the whole-run counter delta of every GPU. Each worker's windows must name only its own GPU, and their
energy must fit inside that GPU's delta.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def read_counters() -> dict:
    import pynvml

    pynvml.nvmlInit()
    counters = {}
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        counters[uuid if isinstance(uuid, str) else uuid.decode()] = {
            "name": pynvml.nvmlDeviceGetName(handle),
            "millijoules": pynvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        }
    return counters


def _window_joules(result: dict) -> float:
    """Energy of one test's trial windows: J/token x the tokens of a window (every trial has the same)."""
    return sum(result["samples"]) * result["measurement"]["output_tokens"]


def table(report: dict, before: dict, after: dict) -> str:
    deltas = {uuid: (after[uuid]["millijoules"] - before[uuid]["millijoules"]) / 1000 for uuid in before}
    per_worker = defaultdict(lambda: {"tests": 0, "joules": 0.0, "named": set()})
    for result in report["results"]:
        if not result.get("measurement"):
            continue
        row = per_worker[result.get("worker", "-")]
        row["tests"] += 1
        row["joules"] += _window_joules(result)
        row["named"].update(device["uuid"] for device in result["measurement"]["devices"])
    pins = report.get("workers", {})
    lines = ["| worker | pinned GPU | GPUs its records name | tests | J in its trial windows | "
             + " | ".join(f"run delta of {uuid[:12]}" for uuid in deltas) + " |",
             "| --- " * (5 + len(deltas)) + "|"]
    for worker, row in sorted(per_worker.items()):
        named = ", ".join(uuid[:12] for uuid in sorted(row["named"]))
        lines.append(f"| {worker} | {pins.get(worker, '?')[:12]} | {named} | {row['tests']} | {row['joules']:.0f} | "
                     + " | ".join(f"{delta:.0f} J" for delta in deltas.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("counters", help="print every GPU's energy counter as JSON")
    show = commands.add_parser("table", help="Markdown table of a -n 2 report against the counters")
    show.add_argument("report", type=Path)
    show.add_argument("before", type=Path)
    show.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "counters":
        json.dump(read_counters(), sys.stdout, indent=2)
        print()
    else:
        print(table(*(json.loads(path.read_text()) for path in (args.report, args.before, args.after))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
