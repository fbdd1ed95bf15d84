"""`energy(fn, ..., output_tokens=N)`: short work repeated inside each window, as pytest-benchmark's benchmark(fn).

Run as a user runs it (pytester), with the CPU-time meter measuring real work.
"""

import json

TEST_FILE = """
import time

CALLS = []

def generate(batch, *, scale=1):
    CALLS.append(batch)
    deadline = time.process_time() + 0.04 * scale  # about 40 ms of CPU: far under the window
    while time.process_time() < deadline:
        pass
    return ["tokens"] * batch

def test_short_generate(energy):
    result = energy(generate, 4, output_tokens=16, scale=1)
    assert result == ["tokens"] * 4  # fn's own result comes back
    windows = [m for m in energy.measurements if not m.warmup]
    assert len(windows) == 5
    assert all(m.repeats > 1 and m.output_tokens == 16 * m.repeats for m in windows)
    timed = len(CALLS) - sum(m.repeats for m in energy.measurements)
    assert 1 <= timed <= 3  # + the warm calls timed to plan the window
"""

ARGS = ("--energy-gpu=cpu", "--energy-min-window=0.3", "-p", "no:cacheprovider", "--energy-json=r.json")


def test_short_work_fills_each_window_to_the_minimum(pytester):
    pytester.makepyfile(test_fn=TEST_FILE)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert len(record["samples"]) == 5 and len(record["warmup_samples"]) == 1
    assert record["measurement"]["seconds"] >= 0.3 and "short-window" not in record["flags"]
    assert record["measurement"]["repeats"] >= 6  # 0.3 s of 40 ms calls, 10% over


def test_tokens_per_call_must_be_a_positive_integer(pytester):
    pytester.makepyfile(test_fn="""
        def test_bad(energy):
            energy(lambda: None, output_tokens=0)
    """)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy(fn, ...): output_tokens must be the number of tokens one call*"])
    assert "Traceback" not in result.stdout.str()


def test_one_measurement_per_test(pytester):
    pytester.makepyfile(test_fn="""
        import time
        def work():
            deadline = time.process_time() + 0.02
            while time.process_time() < deadline:
                pass
        def test_twice(energy):
            energy(work, output_tokens=1)
            energy(work, output_tokens=1)
    """)
    result = pytester.runpytest_subprocess(*ARGS, "--energy-trials=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*energy(fn) measures a test once*parametrize*"])


def test_an_error_in_fn_fails_the_test_with_the_error(pytester):
    pytester.makepyfile(test_fn="""
        def broken():
            raise RuntimeError("model fell over")
        def test_broken(energy):
            energy(broken, output_tokens=1)
    """)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: model fell over*"])
    assert not (pytester.path / "baselines").exists()
