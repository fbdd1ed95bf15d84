"""Does the host's speed move a compiled bin's J/token? Per-core Python speed, then one bin pinned to each core.

A compiled HF bin still runs `generate`'s Python loop between CUDA-graph replays, so the GPU waits on the host
for part of every step (busy 55-94%, benchmarks/README.md section 10). If the host core that loop runs on is
slower in one process than in another, the window is longer at the same GPU work, and the card's power over
the longer gaps lands in J/token. This measures both halves on one GPU runner:

1. each CPU core's speed on a fixed pure-Python loop (the plugin's host probe, pytest_llm_energy/plugin/host.py, with
   a loop 3x as long: a thread pinned to each core in turn, several rounds);
2. one compiled bin (Llama-3.2-1B config, random weights) measured with the main thread pinned to the
   fastest and the slowest cores, and unpinned, the settings taken in turn, several rounds.

`--sweep` instead measures several bins and models unpinned, windows back to back, to see how a bin's
window-to-window scatter falls as the GPU's share of each step grows. The host's steal time (/proc/stat) and
its cgroup's CPU throttling are read around every window (on the runners measured, neither moved).

    python benchmarks/host_speed.py --out OUT.json [--bin 512,128,8] [--rounds 3]
    python benchmarks/host_speed.py --out OUT.json --sweep llama-3.2-1b:1024,512,8 llama-3.1-8b:1024,512,32
    python benchmarks/host_speed.py --report OUT.json...     # the tables of benchmarks/README.md section 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pytest_llm_energy.core.backend_options import BackendOptions  # noqa: E402
from pytest_llm_energy.core.models import resolve_model  # noqa: E402
from pytest_llm_energy.core.workload import Workload  # noqa: E402
from pytest_llm_energy.plugin import host  # noqa: E402
from pytest_llm_energy.plugin.backends.hf import HFBackend  # noqa: E402

LOOP_N = 300_000  # the plugin's host probe loop (host.py), 3x as long: a few tens of ms on a server core


def python_loop() -> float:
    return host.python_loop(LOOP_N)


def pin(cores: set[int]) -> None:
    os.sched_setaffinity(0, cores)  # pid 0: the calling thread only on Linux


def core_speeds(cores: list[int], rounds: int) -> dict[int, list[float]]:
    """Loop seconds per core (best of three after one to settle), by the plugin's own probe thread."""
    def best_of_three() -> float:
        python_loop()
        return min(python_loop() for _ in range(3))

    readings = host.cpu_readings(best_of_three, cores, rounds)
    if readings is None:
        raise SystemExit("threads cannot be pinned here (needs Linux and a container that allows it)")
    times: dict[int, list[float]] = {core: [] for core in cores}
    for core, seconds in readings:
        times[core].append(seconds)
    return times


def host_facts() -> dict:
    facts = {"cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)), "loadavg": os.getloadavg(),
             "python": platform.python_version()}
    try:
        facts["lscpu"] = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        facts["lscpu"] = None
    return facts


def cpu_counters() -> dict:
    """Host-wide steal jiffies (/proc/stat) and this cgroup's throttled microseconds (the plugin's reading)."""
    counters = {"steal": None, "throttled_usec": host.throttled_usec()}
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        counters["steal"] = int(fields[8])
    except (OSError, IndexError, ValueError):
        pass
    return counters


def counter_deltas(before: dict, after: dict) -> dict:
    return {name: (after[name] - before[name] if None not in (before[name], after[name]) else None)
            for name in before}


class CompiledBin:
    """One compiled (model, bin) loaded and warmed, measured window by window."""

    def __init__(self, model: str, spec: str, window_s: float, meter) -> None:
        input_tokens, output_tokens, batch = (int(x) for x in spec.split(","))
        self.label = f"{model} {input_tokens}/{output_tokens} b{batch}"
        self.meter = meter
        self.backend = HFBackend(resolve_model(model), BackendOptions(device="cuda", compile=True), batch)
        self.backend.load()
        self.prepared = self.backend.prepare(Workload(input_tokens, output_tokens, batch))
        started = time.perf_counter()
        for _ in range(3):  # compile, capture, then settle
            self.backend.generate(self.prepared)
        self.warm_s = time.perf_counter() - started
        started = time.perf_counter()
        self.backend.generate(self.prepared)
        self.repeats = max(1, math.ceil(window_s / (time.perf_counter() - started)))  # calls in one window
        self.tokens = self.repeats * batch * output_tokens
        print(f"{self.label}: compiled and warmed in {self.warm_s:.1f} s; {self.repeats} calls a window", flush=True)

    def window(self, setting: str, round_: int) -> dict:
        self.backend.generate(self.prepared)  # one call before the window (after a change of core)
        before = cpu_counters()
        with self.meter.window() as window:
            for _ in range(self.repeats):
                self.backend.generate(self.prepared)
        counters = counter_deltas(before, cpu_counters())
        reading = window.reading
        row = {"bin": self.label, "setting": setting, "round": round_,
               "joules_per_token": reading.joules / self.tokens, "seconds": reading.seconds,
               "watts": reading.joules / reading.seconds, "busy_share": reading.busy_share,
               "temperature": max(self.meter.temperatures(), default=None), "flags": list(reading.flags),
               "steal_jiffies": counters["steal"], "throttled_usec": counters["throttled_usec"]}
        print(f"{self.label} {setting:>12} round {round_}: {row['joules_per_token']:.4f} J/token, "
              f"{reading.seconds:.2f} s, {row['watts']:.0f} W, busy {row['busy_share'] and round(row['busy_share'], 2)}, "
              f"steal {counters['steal']}, throttled {counters['throttled_usec']} us", flush=True)
        return row

    def close(self) -> None:
        self.backend.close()


def measure_pinned(args, settings: dict[str, set[int]], meter) -> list[dict]:
    compiled = CompiledBin(args.model, args.bin, args.window_s, meter)
    rows = []
    names = list(settings)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            pin(settings[name])
            rows.append(compiled.window(name, r))
    pin(settings["unpinned"])
    compiled.close()
    return rows


def measure_sweep(args, meter, save) -> list[dict]:
    rows = []
    for item in args.sweep:
        model, spec = item.split(":")
        compiled = CompiledBin(model, spec, args.window_s, meter)
        for r in range(args.rounds):
            rows.append(compiled.window("unpinned", r))
            save(rows)  # a run cut off by its time limit keeps what it measured
        compiled.close()
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per bin and setting: medians, and the windows' scatter of J/token (sd / mean)."""
    out = {}
    for key in dict.fromkeys((row["bin"], row["setting"]) for row in rows):
        mine = [row for row in rows if (row["bin"], row["setting"]) == key]
        values = [row["joules_per_token"] for row in mine]
        summary = {name: statistics.median(row[name] for row in mine if row[name] is not None)
                   for name in ("joules_per_token", "seconds", "watts", "busy_share") if mine[0][name] is not None}
        summary["window_cv"] = statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else None
        out[" ".join(key)] = summary
    return out


def report(paths: list[Path]) -> str:
    """Per file and bin: how the windows scattered and followed the GPU's busy share; then, per bin measured
    in several processes (one file each), the scatter of the processes' medians."""
    rows, medians = [], {}
    for path in paths:
        result = json.loads(path.read_text())
        readings = [t for times in result["core_seconds"].values() for t in times]  # every core, every round
        slow = host.HostProbe.of(len(result["core_seconds"]), readings).slow
        by_bin: dict[str, list[dict]] = {}
        for row in result["windows"]:
            by_bin.setdefault(row.get("bin") or f"{result['model']} {result['bin']}", []).append(row)
        for label, windows in by_bin.items():
            values = np.array([w["joules_per_token"] for w in windows])
            busy = np.array([w["busy_share"] for w in windows])
            follows = np.corrcoef(np.log(values), busy)[0, 1] if len(windows) > 2 else float("nan")
            medians.setdefault(label, []).append(float(np.median(values)))
            rows.append([path.name, label, f"{slow}/{len(readings)}", len(windows), f"{busy.min():.2f}-{busy.max():.2f}",
                         f"{np.median(values):.4f}", f"{values.std(ddof=1) / values.mean():.2%}",
                         f"{follows:+.2f}"])
    text = tabulate(rows, headers=["file", "bin", "slow core readings", "windows", "GPU busy", "J/token (median)",
                                   "windows' sd", "r(log J/token, busy)"], tablefmt="github")
    across = [[label, len(values), f"{np.std(np.log(values), ddof=1):.2%}"]
              for label, values in medians.items() if len(values) > 1]
    if across:
        text += "\n\n" + tabulate(across, headers=["bin", "processes", "sd of the processes' medians"],
                                   tablefmt="github")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", nargs="+", type=Path, metavar="JSON", help="summarize measured files")
    parser.add_argument("--bin", default="512,128,8", help="input tokens, output tokens, batch size")
    parser.add_argument("--model", default="llama-3.2-1b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=2.5, help="about how long one window is")
    parser.add_argument("--core-rounds", type=int, default=3)
    parser.add_argument("--sweep", nargs="+", metavar="MODEL:IN,OUT,BATCH",
                        help="measure these bins unpinned instead of one bin on chosen cores")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    if args.out is None:
        parser.error("--out is required to measure")
    from pytest_llm_energy.plugin.meters.nvml import NvmlMeter

    facts = host_facts()
    cores = facts["affinity"]
    before = cpu_counters()
    speeds = core_speeds(cores, args.core_rounds)
    facts["core_loop_host_counters"] = counter_deltas(before, cpu_counters())
    print(f"host counters over the core loops: {facts['core_loop_host_counters']}")
    medians = {core: statistics.median(times) for core, times in speeds.items() if times}
    ranked = sorted(medians, key=medians.get)
    for core in ranked:
        print(f"core {core:>3}: {1e3 * medians[core]:.1f} ms  (rounds {[round(1e3 * t, 1) for t in speeds[core]]})")
    meter = NvmlMeter()
    meter.idle_watts()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows: list[dict]) -> dict:
        result = {"host": facts, "core_seconds": {str(c): t for c, t in speeds.items()}, "window_s": args.window_s,
                  "windows": rows, "summary": summarize(rows)}
        args.out.write_text(json.dumps(result, indent=1))
        return result

    if args.sweep:
        rows = measure_sweep(args, meter, save)
    else:
        fast, slow = ranked[0], ranked[-1]
        settings = {"unpinned": set(cores), f"fast core {fast}": {fast}, f"slow core {slow}": {slow}}
        rows = measure_pinned(args, settings, meter)
    result = save(rows)
    for name, values in result["summary"].items():
        print(f"{name:>14}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))


if __name__ == "__main__":
    main()
