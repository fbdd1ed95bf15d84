"""Safety: JSON-only reading, no shell, test ids kept inside the baselines folder, a loopback-only vLLM server.

And strings from a baseline file are printed as they are: never executed, never used as a format string.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

import pytest_llm_energy
from pytest_llm_energy.core.baseline import read_file

PACKAGE = Path(pytest_llm_energy.__file__).parent
QUIET = ("-p", "no:cacheprovider", "-p", "no:randomly")
ARGS = ("--energy-gpu=cpu", "--energy-trials=2", "--energy-min-window=0.05", *QUIET)

# Modules that turn bytes into objects by running code (pickle's opcodes), YAML loaders that build any object
# a tag names (yaml.safe_load is fine), and calls that run text or a shell.
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "UnsafeLoader", "FullLoader"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__", "torch.load", "numpy.load", "np.load", "os.system",
                "os.popen", "os.spawnl", "os.spawnlp", "os.spawnv", "os.spawnvp", "subprocess.getoutput",
                "subprocess.getstatusoutput", "pty.spawn", *(f"yaml.{name}" for name in UNSAFE_YAML)}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """Each import of an unsafe module, call that runs text, shell=True, or command given as one string."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.module == "yaml":
            found += [f"{where}: from yaml import {a.name}" for a in node.names if a.name in UNSAFE_YAML]
        elif isinstance(node, ast.Attribute) and _dotted(node) in {f"yaml.{name}" for name in UNSAFE_YAML}:
            if _dotted(node).endswith("Loader"):  # yaml.load(text, Loader=yaml.Loader) and the like
                found.append(f"{where}: {_dotted(node)}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS:
                found.append(f"{where}: {name}()")
            for keyword in node.keywords:
                shell_off = isinstance(keyword.value, ast.Constant) and not keyword.value.value
                if keyword.arg == "shell" and not shell_off:
                    found.append(f"{where}: {name}(shell=...)")
            is_process = name.split(".")[-1] in ("Popen", "run", "call", "check_call", "check_output")
            if is_process and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(f"{where}: {name}() with the command as one string")
    return found


def test_the_scan_finds_what_it_looks_for():
    """So that an empty result below means a clean package, not a blind scan."""
    source = textwrap.dedent("""
        import pickle, os, yaml
        from yaml import load, safe_load
        import subprocess as sp
        pickle.loads(b"")
        yaml.safe_load("a: 1")
        yaml.load("a: 1", Loader=yaml.UnsafeLoader)
        eval("1")
        os.system("ls")
        sp.run(["ls"], shell=True)
        subprocess.Popen(f"git {x}")
        torch.load("w.pt")
        subprocess.run(["git", "status"], shell=False)
    """)
    assert {use.split(": ", 1)[1] for use in unsafe_uses(source)} == {
        "import pickle", "from yaml import load", "yaml.load()", "yaml.UnsafeLoader", "eval()", "os.system()",
        "sp.run(shell=...)",
        "subprocess.Popen() with the command as one string", "torch.load()",
    }


def test_the_package_reads_data_as_json_and_starts_no_shell():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the whole package, not an empty glob
    found = [use for path in files for use in unsafe_uses(path.read_text(encoding="utf-8"), str(path))]
    assert found == []


# --- test ids -> file names --------------------------------------------------------------------------------

ODD_IDS = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3], ids=["../../x", "..\\\\..\\\\y", "/etc/passwd"])
def test_p(energy, n):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10
"""


def test_test_ids_never_name_a_file_outside_the_baselines_folder(pytester):
    root = pytester.path / "root"
    pytester.makefile(".ini", **{"root/pytest": "[pytest]\n"})
    pytester.makepyfile(**{"root/sub/test_x": ODD_IDS, "outside/test_o": ODD_IDS})
    before = {p for p in pytester.path.rglob("*") if p.is_file()}
    result = pytester.runpytest(*ARGS, "--energy-update-baselines", "--rootdir=root", "-c", "root/pytest.ini",
                                "root/sub", "outside")
    result.assert_outcomes(passed=6)
    written = {p.relative_to(pytester.path).as_posix() for p in pytester.path.rglob("*")
               if p.is_file() and p not in before}
    assert written == {"root/baselines/cpu/sub/test_x.json",
                       "root/baselines/cpu/test_o.json"}
    ids = set(read_file(root / "baselines/cpu/sub/test_x.json"))
    assert ids == {"sub/test_x.py::test_p[../../x]", "sub/test_x.py::test_p[..\\\\..\\\\y]",
                   "sub/test_x.py::test_p[/etc/passwd]"}  # the ids themselves are kept as they are


# --- the vLLM server listens on loopback only ---------------------------------------------------------------


class RecordedServer:
    """Stands in for ServerProcess: keeps the command instead of starting it."""

    commands: list[list[str]] = []

    def __init__(self, command, *, env=None, name="server") -> None:
        self.command, self.pid, self.log_path = list(command), 4242, None
        RecordedServer.commands.append(self.command)

    def start(self) -> None:
        pass

    def wait_healthy(self, url: str, timeout_s: float) -> float:
        self.health_url = url
        return 0.0

    def stop(self) -> None:
        pass


def _flag_values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == flag]


@pytest.mark.parametrize("extra", [(), (("host", "0.0.0.0"),)], ids=["default", "engine-option-asks-0.0.0.0"])
def test_the_vllm_server_is_started_listening_on_loopback_only(monkeypatch, extra):
    from pytest_llm_energy.core.backend_options import BackendOptions
    from pytest_llm_energy.core.models import resolve_model
    from pytest_llm_energy.plugin.backends import vllm_server

    monkeypatch.setattr(vllm_server, "ServerProcess", RecordedServer)
    monkeypatch.setattr(RecordedServer, "commands", [])
    backend = vllm_server.VLLMServerBackend(resolve_model("tiny-llama"),
                                            dataclasses.replace(BackendOptions(device="cpu"), extra=extra))
    backend.load()
    (command,) = RecordedServer.commands
    assert "--uds" not in command and "0.0.0.0" not in _flag_values(command, "--host")[-1:]
    # vLLM's argument parser keeps the last value of a repeated flag: that is the one the server binds to.
    assert _flag_values(command, "--host")[-1] == "127.0.0.1"
    assert backend.base_url.startswith("http://127.0.0.1:") and backend._server.health_url.startswith(
        "http://127.0.0.1:")
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)  # an argv, no shell


# --- strings from a baseline file are data -------------------------------------------------------------------

# Format fields (str.format, %-formatting, f-string-like), attribute walks and code: printed as they are.
TRAPS = "{} %s {__class__} {0.__class__.__mro__} %(x)s {nodeid!r:>10} __import__('os').system('touch pwned')"
SHORT_TRAP = "%s{}{x}"  # `show` prints the first 12 characters of a commit


def _trapped_entry(current_cpu: str, *, same_cpu: bool) -> dict:
    from pytest_llm_energy.core import fingerprint

    stack = fingerprint.collect({"gpu_name": None, "gpu_count": 0, "driver": None, "power_limit_watts": None})
    stack.update(torch=f"torch {TRAPS}", python=f"python {TRAPS}")
    stack["cpu"] = current_cpu if same_cpu else f"cpu {TRAPS}"  # another CPU: refused as other hardware
    return {"joules_per_token": 1e-9, "samples": [1e-9, 1.1e-9, 0.9e-9, 1.05e-9, 0.95e-9], "meter": f"cpu-time {TRAPS}",
            "recorded_at": f"recorded {TRAPS}", "git_commit": SHORT_TRAP, "fingerprint": stack,
            "workload": {"label": TRAPS}, "backend": {"backend": TRAPS}, TRAPS: TRAPS}


def test_strings_in_a_baseline_reach_every_report_untouched_and_run_nothing(pytester, capsys):
    from pytest_llm_energy.cli import main
    from pytest_llm_energy.core import fingerprint

    pytester.makepyfile(test_traps="""
        def work(energy):
            with energy.measure() as m:
                sum(i * i for i in range(100000))
                m.output_tokens = 10

        def test_compared(energy):
            work(energy)

        def test_refused(energy):
            work(energy)
    """)
    cpu = fingerprint.cpu_model()
    path = pytester.path / "baselines/cpu/test_traps.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "schema": "pytest-llm-energy/baseline", "schema_version": 1, "gpu": "cpu",
        "entries": {"test_traps.py::test_compared": _trapped_entry(cpu, same_cpu=True),
                    "test_traps.py::test_refused": _trapped_entry(cpu, same_cpu=False)}}))
    # Five trials against five: enough for a significant verdict, so the failure lists the stack changes.
    result = pytester.runpytest(*ARGS, "--energy-trials=5", "--energy-json=report.json", "--energy-md=report.md")
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(["*energy regressed*", "*baseline was recorded on other hardware*"])
    assert f"torch torch {TRAPS} -> " in text  # the failure message's stack changes
    assert f"cpu cpu {TRAPS} -> {cpu}" in text  # the refusal
    records = {r["nodeid"]: r for r in json.loads((pytester.path / "report.json").read_text())["results"]}
    changes = {c["component"]: c["baseline"] for c in records["test_traps.py::test_compared"]["stack_changes"]}
    assert changes["torch"] == f"torch {TRAPS}" and changes["python"] == f"python {TRAPS}"
    assert f"torch {TRAPS}->" in (pytester.path / "report.md").read_text()
    for fmt in ("terminal", "markdown"):
        assert main(["show", str(path), "--format", fmt]) == 0
        shown = capsys.readouterr().out
        assert f"cpu-time {TRAPS}" in shown and f"recorded {TRAPS}" in shown and SHORT_TRAP in shown
    assert main(["show", str(path), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)["gpus"]["cpu"]["test_traps.py::test_compared"]
    assert shown[TRAPS] == TRAPS and shown["meter"] == f"cpu-time {TRAPS}"
    assert not list(pytester.path.rglob("pwned"))
