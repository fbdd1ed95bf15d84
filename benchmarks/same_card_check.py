"""Same code, same GPU model, separate runs: every bin must come out unchanged or inconclusive, never a change.

Reads the JSON reports of the run that recorded the baselines and of later runs of the same suites, and judges
each later run's samples against the recorded ones with the plugin's decision rule and the run-to-run noise the
suites declare (suites/conftest.py `RUN_NOISE`, 8% for the decoding suite), plus the plugin's default
card-to-card noise where a later run measured on another physical GPU (UUIDs differ), as the plugin does.
Each run's own verdicts (the rule and defaults of the code it ran) are printed beside. Reproduce:

    python benchmarks/same_card_check.py --record benchmarks/results/h200/suites_record.json \
        benchmarks/results/h200/suites_check.json benchmarks/results/h200/suites_recheck.json \
        benchmarks/results/h200/suites_check_card3.json benchmarks/results/h200/suites_check_card4.json \
        benchmarks/results/h200/suites_check_card5.json
    python benchmarks/same_card_check.py --record benchmarks/results/h100/suites_record_chat.json \
        --record benchmarks/results/h100/suites_record_code_decoding.json \
        benchmarks/results/h100/suites_check_chat.json benchmarks/results/h100/suites_check_code_decoding.json \
        benchmarks/results/h100/suites_recheck.json

A record may come as several reports (suite halves run one after the other); `--card-noise 0` shows what the
rule would call without card-to-card noise, `--run-noise b8=0.06,b32=0.02` with the suites' earlier floors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from tabulate import tabulate

from pytest_llm_energy.config import OPTIONS_BY_NAME
from pytest_llm_energy.stats import combine_noise, decide

SUITES = Path(__file__).resolve().parent.parent / "suites"
DECODING_RUN_NOISE = 0.08  # suites/test_decoding.py


def suite_run_noise() -> float:
    spec = importlib.util.spec_from_file_location("suites_conftest", SUITES / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RUN_NOISE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", type=Path, action="append", required=True,
                        help="JSON report of the run that recorded the baselines (repeat for a record in parts)")
    parser.add_argument("later", type=Path, nargs="+", help="JSON reports of later runs of the same suites")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--card-noise", type=float,
                        default=OPTIONS_BY_NAME["card_noise"].default,
                        help="card-to-card noise per card (default: the plugin's)")
    parser.add_argument("--run-noise", type=_run_noise_by_batch, default=None, metavar="SPEC",
                        help="run noise of the chat, code and backends bins: 0.06, or per batch size "
                             "b8=0.06,b32=0.02 (batch sizes not named, and the default: the suites' RUN_NOISE)")
    args = parser.parse_args(argv)
    run_noise_by_batch = args.run_noise or {}
    default_run_noise = suite_run_noise()
    card_noise = args.card_noise
    recorded = _recorded(args.record)
    rows, changes = [], 0
    for run, path in enumerate(args.later, start=2):
        for result in sorted(json.loads(path.read_text())["results"], key=lambda r: r["nodeid"]):
            baseline = recorded[result["nodeid"]]
            batch_size = result["workload"]["batch_size"]
            noise = (DECODING_RUN_NOISE if "test_decoding" in result["nodeid"]
                     else run_noise_by_batch.get(batch_size, run_noise_by_batch.get(None, default_run_noise)))
            gpus = _gpus(result)
            other_card = gpus != _gpus(baseline)
            if other_card and card_noise:
                noise = combine_noise(noise, card_noise)
            decision = decide(baseline["samples"], result["samples"], args.tolerance, run_noise=noise)
            changes += decision.verdict in ("regressed", "improved")
            rows.append([run, gpus[0][:12] + (" (other)" if other_card else " (same)"), result["nodeid"].split("::", 1)[1],
                         f"{decision.delta:+.1%}", f"{decision.ci_low - 1:+.1%}..{decision.ci_high - 1:+.1%}",
                         f"{noise:.1%}", decision.verdict, result["verdict"]])
    print(tabulate(rows, headers=["run", "GPU", "test", "delta", "99% CI", "noise", "verdict now",
                                  "verdict in the run"], tablefmt="github"))
    print(f"\n{len(rows)} comparisons, {changes} called a change")
    return 1 if changes else 0


def _run_noise_by_batch(text: str) -> dict[int | None, float]:
    """'0.06' -> {None: 0.06} (every batch size); 'b8=0.06,b32=0.02' -> {8: 0.06, 32: 0.02}."""
    try:
        if "=" not in text:
            return {None: float(text)}
        pairs = (part.split("=") for part in text.split(","))
        return {int(batch.strip().removeprefix("b")): float(noise) for batch, noise in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0.06 or b8=0.06,b32=0.02, got {text!r}") from None


def _recorded(paths: list[Path]) -> dict[str, dict]:
    recorded: dict[str, dict] = {}
    for path in paths:
        for result in json.loads(path.read_text())["results"]:
            if result["nodeid"] in recorded:
                raise SystemExit(f"{path}: {result['nodeid']} is also in an earlier --record report")
            recorded[result["nodeid"]] = result
    return recorded


def _gpus(result: dict) -> list[str]:
    return sorted(device["uuid"] for device in result["measurement"]["devices"])


if __name__ == "__main__":
    sys.exit(main())
