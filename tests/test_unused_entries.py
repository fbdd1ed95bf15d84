"""Baseline entries of tests that are gone are reported, and removed by an update of their whole files that asks
to prune; a test whose workload changed under the same id is not compared with the old workload's baseline.

Run as a user runs pytest (pytester), as syrupy treats unused snapshots.
"""

import json
import sys

import pytest

MEASURED = """
import time

def burn():
    deadline = time.process_time() + 0.01
    while time.process_time() < deadline:
        pass

def test_{a}(energy):
    energy(burn, output_tokens=8)

def test_{b}(energy):
    energy(burn, output_tokens=8)
"""

ARGS = ("--energy-gpu=cpu", "--energy-trials=2", "--energy-min-window=0.05", "-p", "no:cacheprovider")


def entries(pytester) -> set[str]:
    return set(json.loads((pytester.path / "baselines/cpu/test_gen.json").read_text())["entries"])


def renamed(pytester):
    pytester.makepyfile(test_gen=MEASURED.format(a="kept", b="old_name"))
    assert pytester.runpytest(*ARGS, "--energy-update-baselines").ret == 0
    pytester.makepyfile(test_gen=MEASURED.format(a="kept", b="new_name"))
    return pytester


def test_an_entry_of_a_renamed_test_is_reported_and_left_alone_without_an_update(pytester):
    renamed(pytester)
    before = (pytester.path / "baselines/cpu/test_gen.json").read_bytes()
    result = pytester.runpytest(*ARGS, "--energy-json=r.json")
    result.stdout.fnmatch_lines(["*unused baseline entries (1), of tests this run did not collect: "
                                 "test_gen.py::test_old_name; if those tests are gone, --energy-update-baselines "
                                 "--energy-prune-baselines removes them*"])
    assert json.loads((pytester.path / "r.json").read_text())["unused_baseline_entries"] == [
        "test_gen.py::test_old_name"]
    assert (pytester.path / "baselines/cpu/test_gen.json").read_bytes() == before


def test_an_update_of_the_whole_file_removes_it_when_asked_to_prune(pytester):
    renamed(pytester)
    result = pytester.runpytest(*ARGS, "--energy-update-baselines", "--energy-prune-baselines")
    result.stdout.fnmatch_lines(["*baselines written: *test_gen.json (+1 new, 1 updated, 1 removed)*",
                                 "*baseline entries removed (1), of tests that are gone: test_gen.py::test_old_name*"])
    assert entries(pytester) == {"test_gen.py::test_kept", "test_gen.py::test_new_name"}


def test_an_update_without_prune_keeps_the_entry_and_lists_it(pytester):
    renamed(pytester)
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    assert result.ret == 0 and "removed" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*unused baseline entries (1)*test_gen.py::test_old_name; if those tests are "
                                 "gone, --energy-update-baselines --energy-prune-baselines removes them*"])
    assert entries(pytester) == {"test_gen.py::test_kept", "test_gen.py::test_old_name", "test_gen.py::test_new_name"}


SIZED = """
import time

import pytest

def pytest_addoption(parser):
    parser.addoption("--sizes", default="1")

def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        metafunc.parametrize("size", [int(s) for s in metafunc.config.getoption("--sizes").split(",")])
"""


def test_an_update_at_other_option_values_keeps_the_cases_those_values_left_out(pytester):
    # as `pytest suites/ --suite-batch-sizes=128 --energy-update-baselines` on a set recorded at batch 32
    pytester.makeconftest(SIZED)
    pytester.makepyfile(test_gen=MEASURED.format(a="kept", b="other").replace(
        "def test_kept(energy):", "def test_kept(energy, size):"))
    assert pytester.runpytest(*ARGS, "--energy-update-baselines").ret == 0
    assert pytester.runpytest(*ARGS, "--energy-update-baselines", "--sizes=2").ret == 0
    assert entries(pytester) == {"test_gen.py::test_kept[1]", "test_gen.py::test_kept[2]", "test_gen.py::test_other"}


def test_prune_is_refused_without_an_update_or_on_a_subset(pytester):
    renamed(pytester)
    before = (pytester.path / "baselines/cpu/test_gen.json").read_bytes()
    result = pytester.runpytest(*ARGS, "--energy-prune-baselines")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--energy-prune-baselines removes entries as it records: "
                                 "add --energy-update-baselines*"])
    result = pytester.runpytest(*ARGS, "--energy-update-baselines", "--energy-prune-baselines", "-k", "kept")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--energy-prune-baselines needs a run of whole test files*"])
    result = pytester.runpytest(*ARGS, f"--energy-ab={sys.executable}", "--energy-prune-baselines")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--energy-ab compares two arms and records nothing: drop --energy-prune-baselines*"])
    assert (pytester.path / "baselines/cpu/test_gen.json").read_bytes() == before


def test_a_run_of_a_subset_neither_lists_nor_removes_entries(pytester):
    # the tests -k or a node id leave out still exist: a subset cannot tell them from tests that are gone, so
    # even pruning set in the ini (a standing choice) leaves them
    renamed(pytester)
    pytester.makeini("[pytest]\nenergy_prune_baselines = true\n")
    # both names recorded now, the old one gone
    assert pytester.runpytest(*ARGS, "--energy-update-baselines").ret == 0
    for subset in (("-k", "kept"), ("test_gen.py::test_kept",), ("-m", "not slow")):
        for update in ((), ("--energy-update-baselines",)):
            result = pytester.runpytest(*ARGS, *update, *subset)
            assert result.ret == 0 and "unused baseline entries" not in result.stdout.str()
            assert entries(pytester) == {"test_gen.py::test_kept", "test_gen.py::test_new_name"}


def test_pruning_set_in_the_ini_is_a_standing_choice_for_updates_of_whole_files(pytester):
    renamed(pytester)
    pytester.makeini("[pytest]\nenergy_prune_baselines = true\n")
    before = (pytester.path / "baselines/cpu/test_gen.json").read_bytes()
    assert pytester.runpytest("--help").ret == 0
    result = pytester.runpytest(*ARGS)  # a check: lists, writes nothing
    assert result.ret == 0 and "unused baseline entries (1)" in result.stdout.str()
    assert (pytester.path / "baselines/cpu/test_gen.json").read_bytes() == before
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    result.stdout.fnmatch_lines(["*baseline entries removed (1), of tests that are gone: test_gen.py::test_old_name*"])
    assert entries(pytester) == {"test_gen.py::test_kept", "test_gen.py::test_new_name"}


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_tests_a_conftest_deselects_are_not_taken_for_gone(pytester, workers):
    renamed(pytester)
    pytester.makeconftest("""
def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if "new_name" not in item.name]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
""")
    assert pytester.runpytest(*ARGS, *workers, "--energy-update-baselines", "--energy-prune-baselines").ret == 0
    assert entries(pytester) == {"test_gen.py::test_kept", "test_gen.py::test_old_name"}


WORKLOAD = """
from pytest_llm_energy import Workload

def test_bin(energy):
    energy.run(Workload(input_tokens={tokens}, output_tokens=4, batch_size=1))
"""


def test_a_changed_workload_is_not_compared_and_starts_afresh_on_update(pytester):
    pytester.makepyfile(test_gen=WORKLOAD.format(tokens=8))
    assert pytester.runpytest_subprocess(*ARGS, "--energy-update-baselines").ret == 0
    pytester.makepyfile(test_gen=WORKLOAD.format(tokens=16))
    result = pytester.runpytest_subprocess(*ARGS, "--energy-json=r.json")
    assert result.ret == 0
    (record,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert record["verdict"] == "new" and record["baseline_joules_per_token"] is None
    assert "workload-changed" in record["flags"]
    assert any("workload changed since the baseline (in8-out4-b1-greedy -> in16-out4-b1-greedy)" in note
               for note in record["notes"])
    pytester.runpytest_subprocess(*ARGS, "--energy-update-baselines").stdout.fnmatch_lines(["*1 history restarted*"])
    (entry,) = json.loads((pytester.path / "baselines/cpu/test_gen.json").read_text())["entries"].values()
    assert len(entry["runs"]) == 1 and entry["workload"]["input_tokens"] == 16
