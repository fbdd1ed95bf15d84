"""`pytest --help` and `llm-energy --help` with the plugin installed: they exit 0 and show every option's help.

argparse %-formats every option's help string, so a bare `%` in one help text ends `pytest --help` in a
traceback, for this plugin's users and for every other plugin in the same environment. These run the
commands as a user does, in a subprocess, with the plugin loaded from its entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_llm_energy.cli import SUBCOMMANDS
from pytest_llm_energy.plugin.config import OPTIONS

WIDE = {**os.environ, "COLUMNS": "4000"}  # no wrapping: each help text stays on one line


def _run(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=WIDE, cwd=cwd,
                          timeout=120)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_pytest_help_lists_every_option_and_ini_key(tmp_path):
    done = _run("-m", "pytest", "--help", "-p", "no:cacheprovider", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    output = _flat(done.stdout)
    assert "energy of LLM inference (pytest-llm-energy)" in output
    for option in OPTIONS:
        assert option.cli in output, option.cli
        assert f"{option.ini} (string): {_flat(option.help)}" in output, option.ini
        assert _flat(option.help) in output, f"the help of {option.cli} is not shown as written"


def test_a_percent_in_help_is_shown_once(tmp_path):
    shown = [option for option in OPTIONS if "%" in option.help]
    assert shown, "no option help has a % sign: this test would check nothing"
    done = _run("-m", "pytest", "--help", "-p", "no:cacheprovider", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "%%" not in done.stdout


def test_pytest_help_in_the_suites_folder():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = _run("-m", "pytest", "suites/", "--help", "-p", "no:cacheprovider", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--suite-batch-sizes" in done.stdout


@pytest.mark.parametrize("command", [[], *[[name] for name in sorted(SUBCOMMANDS)]],
                         ids=lambda command: " ".join(command) or "llm-energy")
def test_llm_energy_help(command):
    done = _run("-m", "pytest_llm_energy.cli", *command, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: llm-energy"), done.stdout[:200]
    if command:
        assert _flat(SUBCOMMANDS[command[0]].help) in _flat(done.stdout)
    else:
        for name in SUBCOMMANDS:
            assert name in done.stdout


def test_the_documented_marker_keywords_are_the_markers_own(tmp_path):
    """docs/fixture.md's marker table lists exactly the keywords `pytest --markers` says the marker takes."""
    import re
    from pathlib import Path

    markers = _flat(_run("-m", "pytest", "--markers", "-p", "no:cacheprovider", cwd=tmp_path).stdout)
    line = re.search(r"@pytest\.mark\.energy\(\*\*settings\): (.*?)(?: @pytest\.mark\.|$)", markers).group(1)
    # "...settings: tolerance, trials, ...; the workload of energy.run(): input_tokens, ...; backend options: ..."
    taken = {name.strip() for group in line.split(";") for name in group.rsplit(":", 1)[1].split(",")}
    page = (Path(__file__).resolve().parents[1] / "docs" / "fixture.md").read_text(encoding="utf-8")
    table = page.split("### Marker keywords", 1)[1].split("###", 1)[0]
    documented = {cell for row in table.splitlines() if row.startswith("| `")
                  for cell in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented == taken
