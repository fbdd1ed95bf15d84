"""`llm-energy diff` logic: two baseline sets (folders, files, a git revision) compared by the plugin's rule."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_llm_energy.cli.diff import DIFF_SCHEMA, REMOVED, diff_baselines
from pytest_llm_energy.cli.views import render_entries, render_json, render_markdown, render_terminal
from pytest_llm_energy.core.baseline import BaselineSet, BaselineStore
from pytest_llm_energy.core.baseline import read_set as read_baseline_set
from pytest_llm_energy.core.baseline import read_set_at as read_baseline_set_at
from pytest_llm_energy.core.cells import DETAILS_AFTER_ROWS
from pytest_llm_energy.core.errors import BaselineError, EnergyUsageError
from pytest_llm_energy.core.judge import judge
from pytest_llm_energy.core.stats import Evidence, Prior

STEADY = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99]
STACK = {
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_count": 1,
    "driver": "550.54",
    "torch": "2.4.0",
    "python": "3.11.9",
    "cpu": "Xeon",
}


# Ten recorded runs whose levels move 0.2% from run to run: a steady history the rule can trust.
LEVELS = [1.001, 1.003, 0.997, 1.002, 0.998, 0.999, 1.002, 0.998, 1.001, 1.0]  # the latest at the level


def entry(scale=1.0, samples=STEADY, gpu=None, **fingerprint):
    values = [round(s * scale, 6) for s in samples]
    spread = float(np.std(np.log(values), ddof=1))
    runs = [{"median": round(scale * level, 6), "trials": len(values), "spread": spread,
             "gpus": [gpu] if gpu else [], "recorded_at": f"2026-11-{i + 10}T00:00:00+00:00"}
            for i, level in enumerate(LEVELS)]
    return {
        "joules_per_token": scale,
        "samples": values,
        "runs": runs,
        "unit": "J per output token",
        "meter": "nvml",
        "estimated": False,
        "fingerprint": {**STACK, **fingerprint},
    }


def write(root: Path, gpu: str, entries: dict) -> Path:
    BaselineStore(root, gpu).write(entries)
    return root


OLD = {
    "suites/test_chat.py::test_big_regression": entry(1.0),
    "suites/test_chat.py::test_small_regression": entry(1.0),
    "suites/test_chat.py::test_improved": entry(1.0),
    "suites/test_chat.py::test_same": entry(1.0),
    "suites/test_code.py::test_gone": entry(1.0),
}
NEW = {
    "suites/test_chat.py::test_big_regression": entry(1.5, torch="2.5.1"),
    "suites/test_chat.py::test_small_regression": entry(1.2, torch="2.5.1"),
    "suites/test_chat.py::test_improved": entry(0.7, torch="2.5.1"),
    "suites/test_chat.py::test_same": entry(1.0),
    "suites/test_code.py::test_added": entry(1.0, torch="2.5.1"),
}


@pytest.fixture
def sides(tmp_path):
    return write(tmp_path / "old", "h100", OLD), write(tmp_path / "new", "h100", NEW)


def by_test(diff):
    return {row.nodeid.split("::")[1]: row for gpu in diff.gpus for row in gpu.rows}


def test_verdicts_follow_the_plugins_decision_rule(sides):
    old, new = (read_baseline_set(side) for side in sides)
    diff = diff_baselines(old, new, tolerance=0.05)
    rows = by_test(diff)
    assert {name: row.verdict for name, row in rows.items()} == {
        "test_big_regression": "regressed",
        "test_small_regression": "regressed",
        "test_improved": "improved",
        "test_same": "unchanged",
        "test_added": "new",
        "test_gone": REMOVED,
    }
    evidence = Evidence.of(entry.runs for entry in old.entries.values())
    for name in ("test_big_regression", "test_improved"):
        key = ("h100", f"suites/test_chat.py::{name}")
        # the plugin's judgement of the new entry's latest run against the old entry's recorded runs
        expected = judge(old.entries[key], new.entries[key].runs[-1], tolerance=0.05, confidence=0.99,
                         prior=Prior(), evidence=evidence, fingerprint=new.entries[key].fingerprint, on_cpu=False,
                         allow_hardware_change=True).decision
        assert rows[name].verdict == expected.verdict and rows[name].delta == pytest.approx(expected.delta)
        assert (rows[name].ci_low, rows[name].ci_high) == (expected.ci_low, expected.ci_high)
    # against the mean of the old runs, which sits within 0.1% of their level
    assert rows["test_big_regression"].delta == pytest.approx(0.5, rel=2e-3)
    assert rows["test_gone"].new_joules_per_token is None and rows["test_added"].old_joules_per_token is None
    assert [r.nodeid for r in diff.regressed] == [
        "suites/test_chat.py::test_big_regression",
        "suites/test_chat.py::test_small_regression",
    ]


def test_a_wider_tolerance_turns_the_small_regression_into_unchanged(sides):
    diff = diff_baselines(*(read_baseline_set(side) for side in sides), tolerance=0.3)
    rows = by_test(diff)
    assert rows["test_small_regression"].verdict == "unchanged"
    assert rows["test_big_regression"].verdict == "regressed"


def test_rows_put_the_largest_regression_first_and_removed_last(sides):
    (gpu,) = diff_baselines(*(read_baseline_set(side) for side in sides), tolerance=0.05).gpus
    assert [row.nodeid.split("::")[1] for row in gpu.rows] == [
        "test_big_regression",
        "test_small_regression",
        "test_improved",
        "test_same",
        "test_added",
        "test_gone",
    ]


def test_stack_changes_are_counted_per_gpu_key(sides):
    (gpu,) = diff_baselines(*(read_baseline_set(side) for side in sides), tolerance=0.05).gpus
    assert [(c.component, c.old, c.new, c.entries) for c in gpu.stack_changes] == [
        ("torch", "2.4.0", "2.5.1", 3)
    ]


def test_terminal_table_hides_identical_entries_unless_asked(sides):
    diff = diff_baselines(*(read_baseline_set(side) for side in sides), tolerance=0.05)
    text = render_terminal(diff)
    assert "h100: 2 regressed, 1 improved, 1 new, 1 removed (1 identical entry not shown)" in text
    assert "test_same" not in text
    assert "stack changes: torch 2.4.0 -> 2.5.1 (3 entries)" in text
    assert text.rstrip().endswith("2 regressed")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("test "))
    assert "test_big_regression" in lines[header + 2] and "+50.0%" in lines[header + 2]
    assert "test_same" in render_terminal(diff, show_identical=True)


def test_the_same_entries_read_from_root_gpu_folder_or_file(tmp_path):
    root = write(tmp_path / "baselines", "h100", OLD)
    write(root, "cpu", {"suites/test_chat.py::test_same": entry(3.0)})
    everything = read_baseline_set(root)
    assert everything.gpus() == ["cpu", "h100"] and len(everything.entries) == 6
    h100 = read_baseline_set(root / "h100")
    assert set(h100.entries) == {key for key in everything.entries if key[0] == "h100"}
    one_file = read_baseline_set(root / "h100/suites/test_code.json")
    assert list(one_file.entries) == [("h100", "suites/test_code.py::test_gone")]


def test_a_gpu_key_only_on_one_side_is_all_new(tmp_path):
    old = write(tmp_path / "old", "h100", OLD)
    new = write(write(tmp_path / "new", "h100", OLD), "h200", {"suites/test_chat.py::test_same": entry(0.5)})
    diff = diff_baselines(read_baseline_set(old), read_baseline_set(new), 0.05)
    assert [gpu.gpu for gpu in diff.gpus] == ["h100", "h200"]
    assert [row.verdict for row in diff.gpus[1].rows] == ["new"]
    assert diff.gpus[0].counts() == {"unchanged": 5} and diff.gpus[0].changed == ()


def test_markdown_folds_long_tables_and_keeps_regressions_in_the_open(tmp_path):
    many = DETAILS_AFTER_ROWS + 5
    old = {f"t.py::test_case[a|{i}]": entry(1.0) for i in range(many)}
    new = {name: entry(1.0 + 0.001 * (i + 1)) for i, name in enumerate(old)}
    new["t.py::test_case[a|0]"] = entry(1.4)
    diff = diff_baselines(
        read_baseline_set(write(tmp_path / "o", "h100", old)),
        read_baseline_set(write(tmp_path / "n", "h100", new)),
        0.05,
    )
    text = render_markdown(diff)
    assert "**1 regressed**" in text
    before, folded = text.split("<details>")
    assert "test_case[a\\|0]" in before and "test_case[a\\|5]" not in before  # the regression is in the open
    assert f"<summary>All {many} changed entries</summary>" in folded and "test_case[a\\|5]" in folded
    assert "</details>" in folded
    for line in text.splitlines():
        if line.startswith("| t.py"):
            assert line.count(" | ") == 6  # seven cells: the escaped pipe does not split a cell


def test_short_markdown_has_no_details(sides):
    text = render_markdown(diff_baselines(*(read_baseline_set(side) for side in sides), 0.05))
    assert "<details>" not in text and "### h100" in text and "Stack changes: torch 2.4.0 -> 2.5.1" in text


def test_json_carries_every_row_and_the_regression_count(sides):
    document = json.loads(render_json(diff_baselines(*(read_baseline_set(side) for side in sides), 0.05)))
    assert document["schema"] == DIFF_SCHEMA and document["regressed"] == 2
    (gpu,) = document["gpus"]
    assert gpu["counts"] == {"regressed": 2, "improved": 1, "unchanged": 1, "new": 1, "removed": 1}
    first = gpu["rows"][0]
    assert first["verdict"] == "regressed" and first["stack_changes"] == [
        {"component": "torch", "old": "2.4.0", "new": "2.5.1"}
    ]


def test_hardware_and_meter_changes_are_noted(tmp_path):
    old = write(tmp_path / "o", "h100", {"t.py::test_x": entry(1.0)})
    changed = dict(entry(1.0, gpu_count=2), meter="rapl")
    new = write(tmp_path / "n", "h100", {"t.py::test_x": changed})
    (row,) = diff_baselines(read_baseline_set(old), read_baseline_set(new), 0.05).gpus[0].rows
    assert "hardware changed: gpu_count 1 -> 2" in row.notes and "meter nvml -> rapl" in row.notes


def test_bad_paths_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(EnergyUsageError, match="no such baselines folder or file"):
        read_baseline_set(tmp_path / "missing")
    broken = tmp_path / "b/h100/t.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with pytest.raises(BaselineError, match=r"t\.json: not valid JSON"):
        read_baseline_set(tmp_path / "b")


def test_one_test_twice_under_one_gpu_key_is_an_error(tmp_path):
    root = write(tmp_path / "b", "h100", {"t.py::test_x": entry(1.0)})
    shutil.copy(root / "h100/t.json", root / "h100/copy.json")
    with pytest.raises(BaselineError, match="'t.py::test_x' on h100 is also in"):
        read_baseline_set(root)


def test_show_lists_every_entry_per_gpu_key(tmp_path):
    root = write(
        write(tmp_path / "b", "h100", OLD), "cpu", {"t.py::test_x": dict(entry(2.0), estimated=True)}
    )
    text = render_entries(read_baseline_set(root))
    assert "cpu: 1 entry" in text and "h100: 5 entries" in text and "(estimated)" in text
    assert json.loads(render_entries(read_baseline_set(root), "json"))["gpus"]["h100"].keys() == OLD.keys()
    assert "### h100" in render_entries(read_baseline_set(root), "markdown")


# --- git --------------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    write(tmp_path / "baselines", "h100", OLD)
    git(tmp_path, "add", "baselines")
    git(tmp_path, "commit", "-q", "-m", "baselines")
    shutil.rmtree(tmp_path / "baselines")
    write(tmp_path / "baselines", "h100", NEW)
    return tmp_path


def test_git_revision_against_the_working_tree(repo):
    old = read_baseline_set_at("HEAD", repo / "baselines")
    assert old.label == "HEAD:baselines" and old.files == 2
    assert (
        str(old.entries["h100", "suites/test_code.py::test_gone"].path)
        == "HEAD:baselines/h100/suites/test_code.json"
    )
    diff = diff_baselines(old, read_baseline_set(repo / "baselines"), 0.05)
    assert by_test(diff)["test_big_regression"].verdict == "regressed" and len(diff.regressed) == 2
    assert by_test(diff)["test_gone"].verdict == REMOVED


def test_git_reads_one_gpu_folder_or_file_and_skips_hidden_files(repo):
    (repo / "baselines/h100/.t.json.tmp.json").write_text("{half-written")  # a temporary file, committed
    git(repo, "add", "-f", "baselines/h100/.t.json.tmp.json")
    git(repo, "commit", "-q", "-m", "temporary file")
    folder = read_baseline_set_at("HEAD", repo / "baselines/h100")
    assert folder.gpus() == ["h100"] and len(folder.entries) == 5
    one = read_baseline_set_at("HEAD", repo / "baselines/h100/suites/test_code.json")
    assert list(one.entries) == [("h100", "suites/test_code.py::test_gone")]


def test_git_path_missing_at_the_revision_is_an_empty_side(repo):
    empty = read_baseline_set_at("HEAD", repo / "other-baselines")
    assert empty.entries == {} and empty.files == 0
    diff = diff_baselines(empty, read_baseline_set(repo / "baselines"), 0.05)
    assert {row.verdict for row in diff.gpus[0].rows} == {"new"}


def test_git_errors_name_the_revision(repo, tmp_path_factory):
    with pytest.raises(EnergyUsageError, match=r"'no-such-branch' is not a commit in"):
        read_baseline_set_at("no-such-branch", repo / "baselines")
    with pytest.raises(EnergyUsageError, match="give a revision"):
        read_baseline_set_at("--output=x", repo / "baselines")
    outside = tmp_path_factory.mktemp("outside")
    with pytest.raises(EnergyUsageError, match="not in a git repository"):
        read_baseline_set_at("HEAD", outside)


def test_a_broken_committed_file_is_named_by_revision_and_path(repo):
    (repo / "baselines/h100/suites/test_chat.json").write_text("{broken")
    git(repo, "commit", "-q", "-am", "break")
    with pytest.raises(BaselineError, match=r"^HEAD:baselines/h100/suites/test_chat\.json: not valid JSON"):
        read_baseline_set_at("HEAD", repo / "baselines")


def test_an_empty_diff_says_so():
    empty = BaselineSet("a", {}, 0)
    assert "no baseline entries on either side" in render_terminal(diff_baselines(empty, empty, 0.05))


# --- the command ------------------------------------------------------------------------------------------


def cli(capsys, *argv):
    from pytest_llm_energy.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_command_fails_on_regression_only_when_asked(sides, capsys):
    old, new = sides
    code, out, _ = cli(capsys, "diff", old, new)
    assert code == 0 and "2 regressed" in out and "test_big_regression" in out
    code, _, _ = cli(capsys, "diff", old, new, "--fail-on-regression")
    assert code == 1
    code, _, _ = cli(capsys, "diff", old, old, "--fail-on-regression")
    assert code == 0
    code, out, _ = cli(capsys, "diff", old, new, "--fail-on-regression", "--tolerance", "0.6")
    assert code == 0 and "no regression" in out


def test_diff_command_formats(sides, capsys):
    old, new = sides
    code, out, _ = cli(capsys, "diff", old, new, "--json")
    assert code == 0 and json.loads(out)["regressed"] == 2
    code, out, _ = cli(capsys, "diff", old, new, "--format", "markdown", "--all")
    assert code == 0 and out.startswith("## Energy baselines:") and "test_same" in out


def test_diff_command_bad_input_is_one_line(sides, tmp_path, capsys):
    old, new = sides
    code, _, err = cli(capsys, "diff", old)
    assert (
        code == 2
        and err.strip()
        == "llm-energy: error: give OLD and NEW (baselines folders or files), or --git REV [PATH]"
    )
    code, _, err = cli(capsys, "diff", old, tmp_path / "nowhere")
    assert code == 2 and err.startswith("llm-energy: error: ") and "no such baselines folder" in err
    code, _, err = cli(capsys, "diff", old, new, "--tolerance", "5")
    assert code == 2 and "--tolerance: expected a fraction between 0 and 1" in err
    assert "Traceback" not in err


def test_diff_command_against_git(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    code, out, _ = cli(capsys, "diff", "--git", "HEAD", "--fail-on-regression")
    assert code == 1 and out.startswith("HEAD:baselines -> baselines:") and "test_gone" in out
    code, _, err = cli(capsys, "diff", "--git", "nope")
    assert code == 2 and "'nope' is not a commit" in err


def _installed_command() -> str:
    """The console script beside this interpreter: the venv need not be on PATH."""
    beside = Path(sys.executable).parent / "llm-energy"
    return str(beside) if beside.exists() else shutil.which("llm-energy") or "llm-energy"


def test_the_installed_command_runs_diff(repo):
    done = subprocess.run(
        [_installed_command(), "diff", "--git", "HEAD", "--format", "markdown"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| suites/test_chat.py::test_big_regression" in done.stdout


def test_show_command(sides, capsys):
    code, out, _ = cli(capsys, "show", sides[0])
    assert code == 0 and "h100: 5 entries" in out and "test_gone" in out


def _on(uuid, scale):
    return {**entry(scale, gpu=uuid), "measurement": {"devices": [{"index": 0, "uuid": uuid, "name": "NVIDIA H100"}]}}


def test_entries_from_other_gpus_are_noted_and_judged_with_card_noise(tmp_path):
    # one test alone, whose team knows its runs agree within 0.5%: card noise makes the difference
    old = read_baseline_set(write(tmp_path / "old", "h100", {"t.py::test_a": _on("GPU-aaaa", 1.0)}))
    moved = read_baseline_set(write(tmp_path / "new", "h100", {"t.py::test_a": _on("GPU-bbbb", 1.12)}))
    same = read_baseline_set(write(tmp_path / "same", "h100", {"t.py::test_a": _on("GPU-aaaa", 1.12)}))
    ((row,),) = [gpu.rows for gpu in diff_baselines(old, moved, 0.05, prior=Prior(run=0.005, card=0.05)).gpus]
    assert row.verdict == "inconclusive" and "other GPUs: GPU-aaaa -> GPU-bbbb" in row.notes
    ((row,),) = [gpu.rows for gpu in diff_baselines(old, moved, 0.05, prior=Prior(run=0.005, card=0.0)).gpus]
    assert row.verdict == "regressed"
    ((row,),) = [gpu.rows for gpu in diff_baselines(old, same, 0.05, prior=Prior(run=0.005, card=0.05)).gpus]
    assert row.verdict == "regressed" and not any(note.startswith("other GPUs") for note in row.notes)


def test_runs_of_two_cards_with_their_references_are_compared_per_unit_of_it(tmp_path):
    def referenced(gpu, scale, kernels):
        found = _on(gpu, scale)
        found["runs"] = [{**run, "reference": {"gpu": gpu, "compute_joules_per_tflop": kernels,
                                               "memory_joules_per_gb": 0.1 * kernels}}
                         for run in found["runs"]]
        return found

    old = read_baseline_set(write(tmp_path / "old", "h100", {"t.py::test_a": referenced("GPU-aaaa", 1.0, 1.0)}))
    moved = read_baseline_set(write(tmp_path / "new", "h100", {"t.py::test_a": referenced("GPU-bbbb", 1.12, 1.12)}))
    ((row,),) = [gpu.rows for gpu in diff_baselines(old, moved, 0.05, prior=Prior(run=0.005, card=0.0)).gpus]
    assert row.card_adjustment == pytest.approx(1.12) and row.delta == pytest.approx(0.0, abs=0.002)
    assert row.verdict == "unchanged" and any(note.startswith("card-adjusted: ") for note in row.notes)
    assert row.to_dict()["card_adjustment"] == pytest.approx(1.12)


def test_a_re_recorded_entry_s_row_adds_up(tmp_path):
    # Record, commit, record one more run: the new entry holds the old runs and the new one. Its level (the
    # runs' geometric mean) moved a fifth of what the run did, and the row showed 0.002635 -> 0.002477 beside
    # a delta of -26.6%. The row's new J/token is the run that delta judges, so old -> new is the delta.
    old = entry(1.0)
    old["runs"] = old["runs"][:5]
    old["joules_per_token"] = round(float(np.exp(np.mean(np.log([r["median"] for r in old["runs"]])))), 6)
    latest = {**old["runs"][-1], "median": 0.75, "recorded_at": "2026-12-01T00:00:00+00:00"}
    new = {**old, "runs": [*old["runs"], latest], "samples": [0.75 * s for s in STEADY]}
    new["joules_per_token"] = round(float(np.exp(np.mean(np.log([r["median"] for r in new["runs"]])))), 6)
    name = "suites/test_chat.py::test_rerecorded"
    diff = diff_baselines(read_baseline_set(write(tmp_path / "old", "h100", {name: old})),
                          read_baseline_set(write(tmp_path / "new", "h100", {name: new})), tolerance=0.05)
    (row,) = diff.gpus[0].rows
    assert row.new_joules_per_token == 0.75 and row.new_entry_joules_per_token == new["joules_per_token"]
    assert row.delta == pytest.approx(row.new_joules_per_token / row.old_joules_per_token - 1, abs=1e-5)
    assert row.verdict == "improved" and row.card_adjustment is None
    text = render_terminal(diff)
    assert "new J/token: the new entry's latest run, which delta, CI and verdict judge" in text
    assert "0.75 " in text and "-25.0%" in text
    assert json.loads(render_json(diff))["gpus"][0]["rows"][0]["new_entry_joules_per_token"] == new["joules_per_token"]
