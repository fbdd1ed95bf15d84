"""Every command in README.md and docs/*.md runs as written: extracted at run time, run in a scratch copy of the
repository.

The README, then each page of docs/ in name order, is read when the tests are collected, so the commands they
show are the ones tested. Rules:

1. Only ```bash blocks hold commands (```python and plain ``` blocks are snippets and output). Each non-empty
   line is one command (a line starting with `#` is a comment); a trailing comment after two or more spaces
   and `#` is stripped; `&&` chains parts, run in order, the chain stopping at the first failing part.
2. `pip install` parts are not run (CI installs the package itself, `.ci/run`), but every extra they name
   (`.[cpu]`) must exist under [project.optional-dependencies] in pyproject.toml.
3. The README's test command, found as `.ci/run` finds it (second line of the first fenced block), is the
   command running this very test: its extras are checked, the rest is skipped.
4. A part naming a GPU key (`--energy-gpu=` other than cpu or auto) cannot measure on this CPU-only machine:
   it must stop with pytest's usage error (exit 4) naming the key and the missing GPU/NVML. An A/B interpreter
   named inside the scratch layout (`--energy-ab=../ref/bin/python`) is made this environment first (`../ref`
   a link to this venv, else the path a link to this Python), so a part stops for the GPU and not for a
   missing path or package. Where a GPU is visible these cases skip.
5. Every other part must exit 0. `pytest` and `python` run with this interpreter (`sys.executable`), the
   package's console scripts ([project.scripts], `llm-energy`) from beside it; other programs run as written
   (through bash where a part uses shell syntax), with this interpreter's bin folder first on PATH.
6. The scratch copy holds the tracked files, committed once with `refs/remotes/origin/main` at that commit
   (for `llm-energy diff --git origin/main`). A `*.json` argument that no earlier command wrote (other than
   `--energy-json`'s output) gets a copy of one real JSON report, made once by a CPU run of the smallest
   suite: `suites/test_cpu_profile.py --energy-gpu=cpu --suite-top-bins=1 --suite-batch-sizes=1` (1 test).
7. Everything the commands write lands in the scratch copy; the environment loses PYTEST_*, GIT_* and
   GITHUB_STEP_SUMMARY, so an outer pytest, xdist worker or CI job does not leak into the commands.
8. One test case per command; a failure names the command, its exit status and the last 40 lines of its
   output. One module fixture runs all commands in README order once and records each outcome; under xdist
   the workers share that one run (a file lock in the session's shared temp folder), so the order holds and
   nothing runs twice.

Cost: the quickstart `pytest suites/ --energy-gpu=cpu` runs the whole CPU profile (6 tests: 40 s to 3 min on
2 cores) and dominates; the CPU report takes ~10 s and the other commands 1-2 s each. No assertion is on time:
the timeout (20 min per part) is a safety net only.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

PART_TIMEOUT_S = 1200  # a safety net for a full suite run on a loaded 2-core box, not a budget
OUTPUT_LINES = 40
GPU_FREE_KEYS = ("cpu", "auto")
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR
GPU_MISSING = re.compile(r"no (NVIDIA )?GPU|NVML (is )?(unavailable|not available)", re.IGNORECASE)
SHELL_SYNTAX = re.compile(r"[|<>;$`*?]|^\w+=")
REPORT_RUN = ("suites/test_cpu_profile.py", "--energy-gpu=cpu", "--suite-top-bins=1", "--suite-batch-sizes=1",
              "-p", "no:cacheprovider", "-q")


# --- reading the README ---------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*```\s*([\w+-]*)")
TRAILING_COMMENT = re.compile(r"\s{2,}#.*$")


@dataclass(frozen=True)
class Command:
    line: str  # as written, trailing comment stripped
    parts: tuple[str, ...]  # the line split on &&


def readme_commands(text: str) -> list[Command]:
    """The commands of the ```bash blocks, in README order (fences may be indented, as in a list item)."""
    commands, language = [], None  # language is None outside a block
    for raw in text.splitlines():
        fence = FENCE.match(raw)
        if fence:
            language = fence.group(1).lower() if language is None else None
            continue
        line = TRAILING_COMMENT.sub("", raw).strip()
        if language != "bash" or not line or line.startswith("#"):
            continue
        commands.append(Command(line, tuple(part.strip() for part in re.split(r"\s*&&\s*", line))))
    return commands


def ci_test_command(text: str) -> str | None:
    """The README's test command as `.ci/run` reads it: the second line of the first ``` block (awk + sed)."""
    fences, block = 0, []
    for line in text.splitlines():
        if line.startswith("```"):
            fences += 1
        elif fences == 1:
            block.append(line)
    return TRAILING_COMMENT.sub("", block[1]).strip() if len(block) > 1 else None


# --- what a part asks for -------------------------------------------------------------------------------


def words(part: str) -> list[str]:
    """The words of a part, leading VAR=value assignments dropped."""
    argv = shlex.split(part)
    while argv and re.match(r"^\w+=", argv[0]):
        argv.pop(0)
    return argv


def option_values(argv: list[str], name: str) -> list[str]:
    """Values of `--name=value` and `--name value` in argv."""
    values = []
    for index, word in enumerate(argv):
        if word.startswith(name + "="):
            values.append(word.split("=", 1)[1])
        elif word == name and index + 1 < len(argv):
            values.append(argv[index + 1])
    return values


def is_pip_install(argv: list[str]) -> bool:
    if argv[:2] in (["pip", "install"], ["pip3", "install"]):
        return True
    return len(argv) > 3 and argv[0].startswith("python") and argv[1:4] == ["-m", "pip", "install"]


def pip_extras(argv: list[str]) -> list[str]:
    """The extras a `pip install` names: `.[cpu]`, `-e ".[test,hf]"`, `pytest-llm-energy[plots]`."""
    extras = []
    for word in argv:
        found = re.search(r"\[([^\]]*)\]$", word)
        if found and not word.startswith("-"):
            extras += [extra.strip() for extra in found.group(1).split(",") if extra.strip()]
    return extras


def normalized(extra: str) -> str:
    return re.sub(r"[-_.]+", "-", extra).lower()  # PEP 685


def gpu_key(argv: list[str]) -> str | None:
    """The GPU key a part asks to measure on, or None for cpu, auto and no key."""
    keys = [key for key in option_values(argv, "--energy-gpu") if key not in GPU_FREE_KEYS]
    return keys[-1] if keys else None


def json_inputs(argv: list[str]) -> list[str]:
    """The `*.json` arguments a part reads (the value of --energy-json is what it writes)."""
    written = set(option_values(argv, "--energy-json"))
    found = []
    for word in argv[1:]:
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if value.endswith(".json") and value not in written:
            found.append(value)
    return found


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


# --- running them in a scratch copy ---------------------------------------------------------------------


def scratch_repository(target: Path) -> Path:
    """The tracked files, committed once, with origin/main at that commit."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.exists() or source.is_symlink():  # a tracked file deleted in the working tree is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@example.invalid",
           "-c", "commit.gpgsign=false"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "scratch copy"],
                 ["update-ref", "refs/remotes/origin/main", "HEAD"]):
        subprocess.run([*git, *step], cwd=target, env=command_environment(), check=True, capture_output=True)
    return target


def command_environment() -> dict[str, str]:
    """This environment without the outer pytest's, git's and the CI job's variables; this Python first."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "GIT_")) and key != "GITHUB_STEP_SUMMARY"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def runnable(part: str, argv: list[str], scripts: dict[str, str]) -> list[str]:
    if SHELL_SYNTAX.search(part):
        return ["bash", "-c", part]
    name, rest = argv[0], argv[1:]
    if name in ("pytest", "py.test"):
        return [sys.executable, "-m", "pytest", *rest]
    if name in ("python", "python3"):
        return [sys.executable, *rest]
    if name in scripts:
        script = Path(sys.executable).parent / name
        if script.exists():
            return [str(script), *rest]
        return [sys.executable, "-m", scripts[name].split(":")[0], *rest]
    return argv


def run(args: list[str], cwd: Path) -> tuple[int | None, str]:
    """Exit status (None on timeout) and stdout + stderr of one part."""
    process = subprocess.Popen(args, cwd=cwd, env=command_environment(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=PART_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the part and whatever it started
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def failed(command: Command, part: str, status: int | None, expected: str, output: str,
           note: str = "") -> dict:
    """The outcome of a command that did not end as expected: what ran, how it ended, its output's tail."""
    tail = "\n".join(output.splitlines()[-OUTPUT_LINES:])
    ended = "ran past the timeout" if status is None else f"exited {status}"
    which = "" if part == command.line else f" (its part `{part}`)"
    detail = (f"README command `{command.line}`{which} {ended}, expected {expected}{note}\n"
              f"--- last {OUTPUT_LINES} lines of its output ---\n{tail}")
    return {"status": "failed", "detail": detail}


def gpu_visible() -> bool:
    from pytest_llm_energy.core.errors import EnergyUsageError
    from pytest_llm_energy.plugin.meters import detect_gpu_key

    try:
        return detect_gpu_key()[0] != "cpu"
    except EnergyUsageError:  # GPUs of different kinds: visible all the same
        return True


class Runner:
    """Runs README commands in order in one scratch copy, making the CPU report at most once."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.scripts = project().get("scripts", {})
        self.gpu_here = gpu_visible()
        self.report: Path | None = None
        self.supplied: set[str] = set()  # JSON inputs copied from the CPU report

    def cpu_report(self) -> tuple[Path | None, int | None, str]:
        if self.report is None:
            target = self.scratch.parent / "cpu-report.json"
            status, output = run([sys.executable, "-m", "pytest", *REPORT_RUN, f"--energy-json={target}"],
                                 self.scratch)
            if status != 0 or not target.exists():
                return None, status, output
            self.report = target
        return self.report, 0, ""

    def arm_a_environment(self, python: str) -> None:
        """Make an A/B interpreter named inside the scratch layout (`../ref/bin/python`) this environment.

        The plugin checks that arm A's Python imports pytest-xdist and the plugin, and a bare link to a venv's
        python runs without the venv; so where the path is ENV/bin/python, ENV becomes a link to this venv.
        """
        path = self.scratch / python
        if Path(python).is_absolute() or path.exists() or path.is_symlink():
            return
        if not path.resolve().is_relative_to(self.scratch.parent.resolve()):
            return  # outside the scratch layout: left as the README has it
        environment = path.parent.parent
        if path.parent.name == "bin" and sys.prefix != sys.base_prefix and not environment.exists():
            environment.parent.mkdir(parents=True, exist_ok=True)
            environment.symlink_to(sys.prefix, target_is_directory=True)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(sys.executable)

    def prepare(self, command: Command, part: str, argv: list[str], key: str | None) -> dict | None:
        """Give the part what it reads; an outcome when that fails."""
        for python in option_values(argv, "--energy-ab"):
            self.arm_a_environment(python)
        if key is not None:
            return None  # stops at the GPU check: reads nothing
        for name in json_inputs(argv):
            path = self.scratch / name
            if path.exists():  # written by an earlier command, or committed
                continue
            report, status, output = self.cpu_report()
            if report is None:
                return failed(command, f"pytest {' '.join(REPORT_RUN)}", status,
                              f"0: it makes the JSON report {name} this command reads", output)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report, path)
            self.supplied.add(name)
        return None

    def outcome(self, command: Command) -> dict:
        for part in command.parts:
            argv = words(part)
            if not argv or is_pip_install(argv):
                continue
            key = gpu_key(argv)
            if key is not None and self.gpu_here:
                return {"status": "skipped", "detail": f"a GPU is visible here: `{part}` would measure on it"}
            problem = self.prepare(command, part, argv, key)
            if problem:
                return problem
            status, output = run(runnable(part, argv, self.scripts), self.scratch)
            if key is None and status != 0:
                supplied = [name for name in json_inputs(argv) if name in self.supplied]
                note = (f"; no earlier README command writes {', '.join(supplied)}, so the test gave it "
                        f"a CPU report (`pytest {' '.join(REPORT_RUN)}`)") if supplied else ""
                return failed(command, part, status, "0", output, note)
            if key is not None:
                if status != USAGE_ERROR or key not in output or not GPU_MISSING.search(output):
                    return failed(command, part, status, f"{USAGE_ERROR} (usage error) naming {key} and "
                                  "the missing GPU (this machine has none)", output)
                break  # the shell stops a && chain at the part that failed
        return {"status": "passed", "detail": ""}


# --- the tests ------------------------------------------------------------------------------------------

README_TEXT = README.read_text(encoding="utf-8") if README.exists() else ""
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
COMMANDS = readme_commands(README_TEXT) + [command for page in DOC_PAGES
                                           for command in readme_commands(page.read_text(encoding="utf-8"))]
CI_COMMAND = ci_test_command(README_TEXT)


def short(line: str, width: int = 60) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


@pytest.fixture(scope="module")
def readme_outcomes(tmp_path_factory) -> dict[str, dict]:
    """Each command's outcome, keyed by its index; all run once, in README order, shared by xdist workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.mktemp("readme-outcomes")
    recorded = shared / "readme-commands.json"
    with open(shared / "readme-commands.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for the one run
        if not recorded.exists():
            runner = Runner(scratch_repository(tmp_path_factory.mktemp("readme") / "repo"))
            outcomes = {}
            for index, command in enumerate(COMMANDS):
                if command.line == CI_COMMAND:
                    outcomes[str(index)] = {"status": "skipped", "detail": "CI's test command (.ci/run)"}
                else:
                    outcomes[str(index)] = runner.outcome(command)
            recorded.write_text(json.dumps(outcomes), encoding="utf-8")
        return json.loads(recorded.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("index", "command"),
    [pytest.param(index, command, id=f"{index}:{short(command.line)}")
     for index, command in enumerate(COMMANDS)],
)
def test_readme_command(index, command, request):
    extras = {normalized(name) for name in project().get("optional-dependencies", {})}
    for part in command.parts:
        argv = words(part)
        if argv and is_pip_install(argv):
            missing = [extra for extra in pip_extras(argv) if normalized(extra) not in extras]
            assert not missing, (f"README command `{command.line}` installs extras {missing} that "
                                 f"pyproject.toml does not define (it has: {', '.join(sorted(extras))})")
    if command.line == CI_COMMAND:
        pytest.skip("CI's test command (.ci/run runs it, and it runs this test)")
    if all(is_pip_install(words(part)) for part in command.parts if words(part)):
        return  # nothing but installs
    outcome = request.getfixturevalue("readme_outcomes")[str(index)]
    if outcome["status"] == "skipped":
        pytest.skip(outcome["detail"])
    if outcome["status"] != "passed":
        pytest.fail(outcome["detail"], pytrace=False)


EXAMPLE_README = textwrap.dedent(
    """\
    # example

    ```bash
    pip install -e ".[cpu]" && pytest suites/ --energy-gpu=cpu --energy-json=report.json
    pip install -e ".[test]" && pytest tests/
    ```

    ```python
    energy.run(workload)  # a snippet, not a command
    ```

    ```
    energy: output, not a command
    ```

    - a list item:

      ```bash
      # a comment line
      pytest suites/ --energy-gpu=h100 --energy-ab=../ref/bin/python   # the GPU runner's A/B

      llm-energy estimate --trace azure-conv --results report.json a.json --energy-json=out.json
      ```
    """
)


def test_extraction_keeps_bash_commands_only():
    commands = readme_commands(EXAMPLE_README)
    assert [command.line for command in commands] == [
        'pip install -e ".[cpu]" && pytest suites/ --energy-gpu=cpu --energy-json=report.json',
        'pip install -e ".[test]" && pytest tests/',
        "pytest suites/ --energy-gpu=h100 --energy-ab=../ref/bin/python",
        "llm-energy estimate --trace azure-conv --results report.json a.json --energy-json=out.json",
    ]
    assert commands[0].parts == ('pip install -e ".[cpu]"',
                                 "pytest suites/ --energy-gpu=cpu --energy-json=report.json")
    assert commands[2].parts == (commands[2].line,)
    assert ci_test_command(EXAMPLE_README) == 'pip install -e ".[test]" && pytest tests/'
    assert readme_commands("```python\nimport os\n```\n") == [] and ci_test_command("no code") is None


def test_parts_say_what_they_need():
    install, quickstart = (words(part) for part in readme_commands(EXAMPLE_README)[0].parts)
    ab, estimate = (words(command.line) for command in readme_commands(EXAMPLE_README)[2:])
    assert is_pip_install(install) and pip_extras(install) == ["cpu"] and not is_pip_install(quickstart)
    both = words('python -m pip install ".[test, hf]" pytest-llm-energy[plots]')
    assert is_pip_install(both) and pip_extras(both) == ["test", "hf", "plots"]
    assert gpu_key(quickstart) is None and gpu_key(ab) == "h100"
    assert gpu_key(words("pytest --energy-gpu auto")) is None
    assert option_values(ab, "--energy-ab") == ["../ref/bin/python"]
    assert json_inputs(quickstart) == [] and json_inputs(estimate) == ["report.json", "a.json"]
    assert json_inputs(words("pytest suites/ --energy-json results/run.json")) == []


def test_a_failure_names_the_command_its_status_and_the_output_tail():
    command = readme_commands(EXAMPLE_README)[0]
    output = "\n".join(f"line {number}" for number in range(100))
    detail = failed(command, command.parts[1], 2, "0", output)["detail"]
    assert command.line in detail and f"(its part `{command.parts[1]}`)" in detail and "exited 2" in detail
    assert "line 60" in detail and "line 59" not in detail  # the last 40 lines


def test_arm_a_interpreter_is_made_inside_the_scratch_layout_only(tmp_path):
    scratch = tmp_path / "repo"
    scratch.mkdir()
    runner = Runner(scratch)
    runner.arm_a_environment("../ref/bin/python")
    runner.arm_a_environment("../../elsewhere/bin/python")
    made = tmp_path / "ref" / "bin" / "python"
    assert made.exists() and made.resolve() == Path(sys.executable).resolve()
    assert not (tmp_path.parent / "elsewhere").exists()
