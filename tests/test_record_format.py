"""The JSON form of a test's result stays as readers of the report and the baselines know it: every key, in order.

A record is built once as a value (`result.TestResult`) and written by `to_dict`; these tests hold its keys
and their order to what the report has always written, and check that a record reads back as it was written
(what xdist and the A/B controller rely on).
"""

import json

import pytest

from pytest_llm_energy.core.files import clean_for_json
from pytest_llm_energy.core.result import TestResult
from pytest_llm_energy.plugin.ab import pair, without_pair

ARGS = ("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05", "-p", "no:cacheprovider")

RECORD_KEYS = [
    "nodeid", "joules_per_token", "baseline_joules_per_token", "delta", "card_adjustment", "verdict", "samples",
    "unit", "ci_low", "ci_high", "p_value", "detectable", "too_noisy", "tolerance", "confidence", "run_noise",
    "card_noise", "noise", "runs", "run", "baseline_gpus", "reason", "refused", "robust_cv", "outliers",
    "warmup_samples", "meter", "estimated", "flags", "notes", "measurement", "workload", "backend",
    "stack_changes", "decision",
]
ARM_KEYS = ["worker", "arm", "stack", "memory_gib", "strict"]
MEASUREMENT_KEYS = [
    "joules", "seconds", "average_watts", "power_limit_watts", "power_share", "busy_share", "idle_watts",
    "joules_above_idle", "joules_per_total_token", "joules_per_request", "output_tokens", "input_tokens",
    "requests", "repeats", "devices", "latency",
]
DECISION_KEYS = [
    "verdict", "ratio", "delta", "ci_low", "ci_high", "p_value", "significant", "detectable", "too_noisy",
    "tolerance", "confidence", "n_baseline", "n_current", "runs", "df", "reason", "card_adjustment", "extras",
    "noise",
]
ENTRY_KEYS = [
    "joules_per_token", "runs", "samples", "unit", "robust_cv", "meter", "estimated", "flags", "measurement",
    "workload", "backend", "fingerprint", "git_commit", "recorded_at",
]

TEST = """
def test_generate(energy):
    with energy.measure() as m:
        sum(i * i for i in range(200000))
        m.output_tokens = 100
"""


@pytest.fixture
def record(pytester):
    pytester.makepyfile(test_gen=TEST)
    pytester.runpytest(*ARGS, "--energy-update-baselines", "--energy-json=r.json").assert_outcomes(passed=1)
    (found,) = json.loads((pytester.path / "r.json").read_text())["results"]
    return found


def test_a_record_keeps_every_key_in_the_order_the_report_writes_it(record, pytester):
    assert list(record) == [*RECORD_KEYS, "outcome"]
    assert list(record["measurement"]) == MEASUREMENT_KEYS
    assert list(record["decision"]) == DECISION_KEYS
    assert list(record["run"]) == ["median", "trials", "spread", "gpus", "recorded_at"]
    assert record["unit"] == "J per output token" and record["verdict"] == "new" and record["outcome"] == "passed"
    (entry,) = json.loads((pytester.path / "baselines/cpu/test_gen.json").read_text())["entries"].values()
    assert list(entry) == ENTRY_KEYS
    assert list(entry["runs"][0]) == ["median", "trials", "spread", "gpus", "recorded_at", "git_commit"]


def test_a_record_reads_back_as_it_was_written(record):
    assert TestResult.from_dict(record).to_dict() == record
    assert list(TestResult.from_dict(record).to_dict()) == list(record)


def half(record, arm):
    """One arm's half of an A/B pair, as an arm's worker sends it."""
    plain = {key: value for key, value in record.items() if key != "outcome"}
    return {**plain, "worker": "gw0" if arm == "A" else "gw1", "arm": arm, "stack": {"torch": "2.13.0"},
            "memory_gib": None, "strict": False}


def test_an_ab_pair_and_a_half_without_its_pair_keep_their_keys_in_order(record):
    a, b = TestResult.from_dict(half(record, "A")), TestResult.from_dict(half(record, "B"))
    assert list(b.to_dict()) == [*RECORD_KEYS, *ARM_KEYS]
    paired = clean_for_json(pair(a, b).with_outcome("passed").to_dict(), round_floats=False)
    assert list(paired) == [*RECORD_KEYS, *ARM_KEYS, "refused_note", "arm_a", "outcome"]
    assert paired["arm"] == "B against A" and paired["memory_gib"] == {"A": None, "B": None}
    assert list(paired["arm_a"]) == ["samples", "joules_per_token", "measurement", "backend"]
    assert TestResult.from_dict(paired).to_dict() == paired
    alone = without_pair(b).to_dict()
    expected = {**half(record, "B"), "verdict": "inconclusive", "outcome": "error",
                "refused_note": "one arm gave no result", "too_noisy": False, "detectable": None,
                "refused": "arm A gave no result for this test (its worker died, or the test failed or was skipped "
                           "there): nothing to compare arm B's with"}
    assert list(alone.items()) == list(expected.items())
