"""The core flow as a user runs it (pytester): record, compare, fail the test that regressed."""

import json

import pytest

# CPU work whose energy scales with WORK: the cpu-time meter (estimated) measures it for real.
TEST_FILE = """
import os
import pytest

WORK = int(os.environ.get("ENERGY_TEST_WORK", "400000"))

def burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

@pytest.mark.energy(tolerance=0.5)
def test_generate(energy):
    with energy.measure() as m:
        burn(WORK)
        m.output_tokens = 100
    assert m.joules > 0 and m.joules_per_token == m.joules / 100

def test_plain():
    assert True
"""

ARGS = ("--energy-gpu=cpu", "--energy-trials=5", "--energy-min-window=0.05", "-p", "no:cacheprovider")

# The verdicts' flow on a steady fake GPU (fake_nvml.steady_tests): the CPU estimate of a shared 2-core box
# jumps between two levels 1.7x apart from one run to the next (benchmarks/README.md section 12), which no
# verdict of unchanged code can be asserted on.
STEADY_ARGS = ("--energy-gpu=h100", "--energy-trials=5", "--energy-min-window=0.05", "-p", "no:cacheprovider")


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(test_gen=TEST_FILE)
    return pytester


@pytest.fixture
def steady(pytester, fake_gpus):
    from .fake_nvml import FakeGpu, steady_tests

    fake_gpus(FakeGpu("GPU-aaaa", watts=100.0))
    pytester.makepyfile(test_gen=steady_tests(tolerance=0.5))
    return pytester


def baseline_files(pytester):
    return {p: p.read_bytes() for p in sorted((pytester.path / "baselines").rglob("*.json"))}


def run(pytester, *args, work=400_000, subprocess=False):
    pytester._monkeypatch.setenv("ENERGY_TEST_WORK", str(work))
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    return runner(*ARGS, *args)


def run_steady(pytester, *args, work=0.1):
    """A run of the steady tests, sleeping `work` seconds a trial."""
    pytester._monkeypatch.setenv("ENERGY_TEST_WORK", str(work))
    return pytester.runpytest(*STEADY_ARGS, *args)


def report(pytester, name="report.json"):
    return json.loads((pytester.path / name).read_text())


def only_result(pytester, name="report.json"):
    (result,) = [r for r in report(pytester, name)["results"] if r["nodeid"].endswith("test_generate")]
    return result


def test_first_run_records_nothing_and_reports_new(suite):
    result = run(suite, "--energy-json=report.json")
    result.assert_outcomes(passed=2)
    assert not (suite.path / "baselines").exists()
    record = only_result(suite)
    assert record["verdict"] == "new"
    assert len(record["samples"]) == 5 and len(record["warmup_samples"]) == 1
    assert record["estimated"] is True and record["meter"] == "cpu-time"
    result.stdout.fnmatch_lines(["*energy*", "*test_gen.py::test_generate*new*"])


def test_update_writes_a_baseline_and_a_rerun_is_unchanged(steady):
    for _ in range(3):  # three runs, as a team starts a history: one run cannot show how runs move
        run_steady(steady, "--energy-update-baselines").assert_outcomes(passed=2)
    stored = json.loads((steady.path / "baselines/h100/test_gen.json").read_text())
    entry = stored["entries"]["test_gen.py::test_generate"]
    assert stored["schema_version"] == 2 and stored["gpu"] == "h100"
    assert len(entry["samples"]) == 5 and entry["joules_per_token"] > 0 and len(entry["runs"]) == 3
    assert entry["fingerprint"]["python"] and "test_gen.py::test_plain" not in stored["entries"]

    before = baseline_files(steady)
    result = run_steady(steady, "--energy-json=report.json")
    result.assert_outcomes(passed=2)
    assert only_result(steady)["verdict"] == "unchanged"
    assert baseline_files(steady) == before  # no update flag: byte-for-byte the same


def test_doubling_the_work_regresses_and_fails_that_test_only(steady):
    run_steady(steady, "--energy-update-baselines").assert_outcomes(passed=2)
    before = baseline_files(steady)
    result = run_steady(steady, "--energy-json=report.json", work=0.2)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*energy regressed: J per output token +*% against the baseline (tolerance 50%)*",
        "*baseline J/token (1 recorded run)*",
        "*FAILED test_gen.py::test_generate*",
    ])
    assert "Traceback" not in result.stdout.str()
    assert only_result(steady)["verdict"] == "regressed"
    assert baseline_files(steady) == before  # a failed run never changes them


def test_the_failure_ends_with_the_command_that_accepts_the_change(steady):
    run_steady(steady, "--energy-update-baselines").assert_outcomes(passed=2)
    result = run_steady(steady, work=0.2)
    result.stdout.fnmatch_lines(["*if this change is intended, record it as the new baseline:*",
                                 "*pytest test_gen.py::test_generate --energy-gpu=h100 --energy-update-baselines"])
    # Run as printed (with this file's other options): the doubled work becomes the baseline, afresh.
    accepted = run_steady(steady, "test_gen.py::test_generate", "--energy-update-baselines",
                          "--energy-json=report.json", work=0.2)
    accepted.assert_outcomes(passed=1)
    accepted.stdout.fnmatch_lines(["*(+0 new, 1 updated (1 history restarted*"])
    entries = json.loads((steady.path / "baselines/h100/test_gen.json").read_text())["entries"]
    (entry,) = [e for n, e in entries.items() if n.endswith("test_generate")]
    assert len(entry["runs"]) == 1
    assert run_steady(steady, work=0.2).ret == 0


def test_halving_the_work_is_improved_and_passes(steady):
    run_steady(steady, "--energy-update-baselines").assert_outcomes(passed=2)
    result = run_steady(steady, "--energy-json=report.json", work=0.05)
    result.assert_outcomes(passed=2)
    record = only_result(steady)
    assert record["verdict"] == "improved" and record["delta"] < -0.3


def test_an_update_of_a_subset_keeps_entries_of_tests_that_did_not_run(suite):
    run(suite, "--energy-update-baselines").assert_outcomes(passed=2)
    path = suite.path / "baselines/cpu/test_gen.json"
    data = json.loads(path.read_text())
    kept = dict(data["entries"]["test_gen.py::test_generate"], joules_per_token=1.0)
    data["entries"]["test_gen.py::test_removed"] = kept
    path.write_text(json.dumps(data))
    run(suite, "--energy-update-baselines", "-k", "generate").assert_outcomes(passed=1)
    entries = json.loads(path.read_text())["entries"]
    assert set(entries) == {"test_gen.py::test_generate", "test_gen.py::test_removed"}
    assert entries["test_gen.py::test_removed"]["joules_per_token"] == 1.0


def test_a_test_that_fails_is_never_recorded(pytester):
    pytester.makepyfile(test_bad="""
        def test_breaks(energy):
            with energy.measure() as m:
                sum(range(100000))
                m.output_tokens = 10
            assert False, "functional failure"
    """)
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    result.assert_outcomes(failed=1)
    assert not list((pytester.path / "baselines").rglob("*.json"))


def test_xdist_workers_send_every_result_to_the_controller(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_case(energy, n):
            with energy.measure() as m:
                sum(i * i for i in range(200000))
                m.output_tokens = 10
    """)
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2", "--energy-update-baselines", "--energy-json=r.json")
    result.assert_outcomes(passed=4)
    entries = json.loads((pytester.path / "baselines/cpu/test_many.json").read_text())["entries"]
    assert sorted(entries) == [f"test_many.py::test_case[{n}]" for n in range(4)]
    assert len(report(pytester, "r.json")["results"]) == 4


def test_trials_loop_in_the_test_itself(pytester):
    pytester.makepyfile(test_loop="""
        def test_loop(energy):
            calls = []
            for trial in energy.trials():
                with energy.measure() as m:
                    sum(range(100000))
                    m.output_tokens = 10
                calls.append(trial.warmup)
            assert calls == [True, False, False, False]
            assert len(energy.samples) == 3
    """)
    pytester.runpytest(*ARGS, "--energy-trials=3").assert_outcomes(passed=1)


def test_marker_trials_repeat_the_body_without_setup(pytester):
    pytester.makepyfile(test_repeat="""
        import pytest

        SETUPS = []

        @pytest.fixture
        def model():
            SETUPS.append(1)
            return object()

        @pytest.mark.energy(trials=4, warmup=2)
        def test_body(energy, model):
            with energy.measure() as m:
                sum(range(100000))
                m.output_tokens = 5

        def test_counts():
            assert len(SETUPS) == 1
    """)
    pytester.runpytest(*ARGS, "--energy-json=r.json", "-p", "no:randomly").assert_outcomes(passed=2)
    (record,) = report(pytester, "r.json")["results"]
    assert len(record["samples"]) == 4 and len(record["warmup_samples"]) == 2


def test_strict_fails_new_results(suite):
    result = run(suite, "--energy-strict")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*energy verdict 'new' fails under --energy-strict*"])


def test_report_header_names_gpu_meter_and_baselines(suite):
    result = run(suite)
    result.stdout.fnmatch_lines([
        "energy: gpu key 'cpu', meter *cpu-time (ESTIMATED*",
        "energy: baselines */baselines/cpu (not updating), tolerance 5%*",
    ])


def test_a_cpu_run_does_not_probe_the_host(suite):
    result = run(suite, "--energy-json=r.json")
    assert "Host:" not in result.stdout.str() and report(suite, "r.json")["host"] is None


def test_unknown_marker_keyword_is_an_error_naming_it(pytester):
    pytester.makepyfile(test_typo="""
        import pytest

        @pytest.mark.energy(tolerence=0.1)
        def test_x(energy):
            pass
    """)
    result = pytester.runpytest(*ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_typo.py::test_x: unknown keyword 'tolerence' in @pytest.mark.energy*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_measure_without_token_count_fails_with_a_clear_message(pytester):
    pytester.makepyfile(test_tokens="""
        def test_x(energy):
            with energy.measure():
                sum(range(100000))
    """)
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*set m.output_tokens to the number of generated tokens*"])


UNMEASURED_FILE = """
def work():
    return sum(i * i for i in range(1000))

def test_nothing(energy):
    work()  # took the fixture, measured nothing

def test_plain():
    assert True
"""


def test_a_test_that_takes_the_fixture_and_measures_nothing_is_named_and_fails_under_strict(pytester):
    # It passed silently, with no row, no warning and no baseline, even under --energy-strict.
    pytester.makepyfile(test_unmeasured=UNMEASURED_FILE)
    result = pytester.runpytest(*ARGS, "--energy-json=report.json", "--energy-md=report.md")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*1 test took the energy fixture and measured nothing*test_unmeasured.py::test_nothing"])
    assert report(pytester)["unmeasured_tests"] == ["test_unmeasured.py::test_nothing"]
    assert "test_unmeasured.py::test_nothing" in (pytester.path / "report.md").read_text()
    recorded = pytester.runpytest(*ARGS, "--energy-update-baselines")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines(["*measured nothing*test_nothing"])
    assert baseline_files(pytester) == {}
    strict = pytester.runpytest(*ARGS, "--energy-strict")
    strict.assert_outcomes(passed=1, failed=1)
    strict.stdout.fnmatch_lines(["*this test took the energy fixture and measured nothing*--energy-strict*"])
