"""Every setting is checked before the first test: a typo stops the run at once with a hint, not in each test.

And the baselines a run needs are read up front, but only those: a broken file of tests that do not run stops
nothing. Run as a user runs pytest (pytester, in process, so an access check can be denied even as root).
"""

import json
import os
from pathlib import Path

MEASURED = """
import time

def burn():
    deadline = time.process_time() + 0.01
    while time.process_time() < deadline:
        pass

def test_generate(energy):
    energy(burn, output_tokens=8)
"""

ARGS = ("--energy-gpu=cpu", "--energy-trials=2", "--energy-min-window=0.05", "-p", "no:cacheprovider")


def usage_error(result, pattern):
    assert result.ret == 4, result.stdout.str()  # pytest's usage error: nothing ran
    result.stderr.fnmatch_lines([pattern])
    assert "Traceback" not in result.stderr.str()


def test_a_misspelt_gpu_key_gets_a_hint(pytester):
    pytester.makepyfile(test_gen=MEASURED)
    usage_error(pytester.runpytest("--energy-gpu=cpuu", "-p", "no:cacheprovider"),
                "*--energy-gpu=cpuu: unknown GPU key; did you mean 'cpu'?*")


def test_a_misspelt_model_stops_the_run_before_any_test(pytester):
    pytester.makepyfile(test_gen=MEASURED)
    usage_error(pytester.runpytest(*ARGS, "--energy-model=tiny-lama"),
                "*unknown model 'tiny-lama' (did you mean 'tiny-llama'?)*")


def test_a_misspelt_model_in_a_marker_names_the_test(pytester):
    pytester.makepyfile(test_gen="import pytest\n" + MEASURED.replace(
        "def test_generate", "@pytest.mark.energy(model='llama-3.2-1')\ndef test_generate"))
    usage_error(pytester.runpytest(*ARGS),
                "*test_gen.py::test_generate: @pytest.mark.energy(model=...): unknown model 'llama-3.2-1' "
                "(did you mean 'llama-3.2-1b'?)*")


def test_an_unwritable_baselines_folder_stops_an_update_before_any_test(pytester, monkeypatch):
    pytester.makepyfile(test_gen=MEASURED)
    folder = pytester.path / "locked"
    folder.mkdir()
    access = os.access
    # chmod does not stop root (these tests may run as root): deny the access check itself.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (Path(path) == folder and mode & os.W_OK)
                        and access(path, mode, **kw))
    usage_error(pytester.runpytest(*ARGS, "--energy-baselines=locked", "--energy-update-baselines"),
                "*--energy-update-baselines: cannot write baselines under */locked (permission denied)*")
    assert pytester.runpytest(*ARGS, "--energy-baselines=locked").ret == 0  # reading it is fine


def test_a_broken_baseline_of_tests_that_do_not_run_stops_nothing(pytester):
    pytester.makepyfile(test_gen=MEASURED, test_other=MEASURED)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    (folder / "test_other.json").write_text("{broken")
    for selection in (("test_gen.py",), ("-k", "not test_other"), ("--deselect", "test_other.py::test_generate")):
        result = pytester.runpytest(*ARGS, *selection)  # deselected by -k is not run either
        result.assert_outcomes(passed=1)
    assert (folder / "test_other.json").read_text() == "{broken"
    usage_error(pytester.runpytest(*ARGS, "test_other.py"), "*test_other.json: not valid JSON*")


def test_nothing_but_baseline_json_is_written_under_the_baselines_folder(pytester):
    pytester.makepyfile(test_gen=MEASURED, test_other=MEASURED)
    assert pytester.runpytest(*ARGS, "--energy-update-baselines").ret == 0
    written = sorted(p.relative_to(pytester.path).as_posix() for p in (pytester.path / "baselines").rglob("*"))
    assert written == ["baselines/cpu", "baselines/cpu/test_gen.json", "baselines/cpu/test_other.json"]
    assert all(json.loads((pytester.path / name).read_text())["schema_version"] == 2
               for name in written if name.endswith(".json"))
