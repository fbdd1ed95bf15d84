"""A/B on one GPU in one job: the energy tests run in two arms turn about, and B is judged against A.

    pytest suites/ --energy-ab=/path/to/reference-venv/bin/python [--energy-ab-env=KEY=VALUE ...]

pytest-xdist starts the arms, each a worker with its own loaded backend, and runs every test in both
(`--dist each`): arm A in the interpreter given (another environment, or this one with other settings),
arm B in the current one. The controller lends its meter to them one window at a time, windows alternating
A B B A ... (meters/remote.py), so drifts of the machine hit both arms alike and the comparison needs no
run-to-run allowance: B's i-th trial is judged against A's i-th, two windows close in time. The
arms' records meet here, in the controller, when a test's second report arrives; a regression fails that
test. Arms that measured different work (other token counts, another workload) are an error, not a verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from ..core import fingerprint as stack
from ..core.errors import EnergyError, EnergyUsageError
from ..core.judge import Judgement
from ..core.result import PAIRED, Arm, ArmA, TestResult
from ..core.stats import Run, Verdict, compare, compare_paired
from . import xdist_support
from .backends import backend_class
from .backends.placement import VLLM_MEMORY_SHARE
from .backends.registry import runs_vllm
from .meters.remote import WindowServer
from .outcome import outcome

ADDRESS_KEY, ARM_KEY, OPTIONS_KEY = "energy_ab_address", "energy_ab_arm", "energy_ab_options"
UNPAIRED = "one arm gave no result"


ARM_A_NEEDS = ("pytest", "xdist", "pytest_llm_energy")
# Both arms keep an engine on the one card: each vLLM engine asks for half of vLLM's own share.
ARM_MEMORY_SHARE = VLLM_MEMORY_SHARE / 2


def arm_options(backend: str, options: Mapping, device: str) -> dict:
    """An arm's options for `energy.run`: on a GPU a vLLM engine gets its half of the card unless the
    test gives `gpu_memory_utilization` itself (the first arm's engine would otherwise take 0.9, and the
    second could not start)."""
    if device == "cuda" and runs_vllm(backend):
        return {"gpu_memory_utilization": ARM_MEMORY_SHARE, **options}
    return dict(options)


def arm_a_python(text: str) -> str:
    """The interpreter of arm A, checked: an executable (a path or a name on PATH) that imports what an arm
    runs, so that a wrong environment is a usage error and not a worker crash later."""
    found = shutil.which(text) or (text if os.access(text, os.X_OK) and Path(text).is_file() else None)
    if not found:
        raise EnergyUsageError(f"--energy-ab={text}: no such Python interpreter; give another environment's "
                               "bin/python (it needs pytest-llm-energy and pytest-xdist installed)")
    python = str(Path(found).absolute())
    probe = "import importlib.util as u, sys; sys.stdout.write(' '.join(n for n in sys.argv[1:] if not u.find_spec(n)))"
    try:
        done = subprocess.run([python, "-c", probe, *ARM_A_NEEDS], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EnergyUsageError(f"--energy-ab={text}: could not run it as Python ({error})") from None
    if done.returncode != 0:
        raise EnergyUsageError(f"--energy-ab={text}: not a working Python interpreter "
                               f"({(done.stderr.strip().splitlines() or ['no output'])[-1]})")
    if done.stdout.strip():
        missing = done.stdout.split()
        packages = {"xdist": "pytest-xdist", "pytest_llm_energy": "pytest-llm-energy"}
        raise EnergyUsageError(f"--energy-ab={text}: that environment lacks {', '.join(missing)}; install "
                               f"there: pip install {' '.join(packages.get(name, name) for name in missing)}")
    return python


def configure_arms(config: pytest.Config, options) -> None:
    """--energy-ab: arm A's interpreter checked, and the arms set up as two xdist workers; without
    --energy-ab, arm A's own settings are a usage error."""
    if not options.ab:
        for name in ("ab_env", "ab_option"):
            if options[name]:
                raise EnergyUsageError(f"--energy-{name.replace('_', '-')} sets arm A of an A/B run: "
                                       "add --energy-ab=PYTHON, or drop it")
        return
    config.option.energy_ab_python = arm_a_python(options.ab)
    configure_xdist(config, config.option.energy_ab_python, options.ab_env, options.update_baselines)


def configure_xdist(config: pytest.Config, python: str, environment: tuple[tuple[str, str], ...],
                    update: bool) -> None:
    """Two xdist workers, every test in both: arm A (gw0) in `python` with `environment`, arm B (gw1) here."""
    if not config.pluginmanager.hasplugin("xdist"):
        raise EnergyUsageError("--energy-ab needs pytest-xdist, which starts the two arms: pip install pytest-xdist")
    if config.getoption("numprocesses", None) or config.getoption("tx", None):
        raise EnergyUsageError("--energy-ab starts its own two workers: drop -n / --tx")
    if update:  # from the command line or the ini
        raise EnergyUsageError("--energy-ab compares two arms and records nothing: drop --energy-update-baselines")
    spec = f"popen//python={python}" + "".join(f"//env:{key}={value}" for key, value in environment)
    config.option.tx = [spec, "popen"]
    config.option.dist = "each"
    config.option.maxworkerrestart = 0  # an arm that died stays dead: its pairs are errors, not reruns


class AbHooks:
    """The controller's side: the window server, the arms' settings, and the pairing of their records."""

    def __init__(self, session, python: str, environment, backend_options) -> None:
        self.session = session
        self.python, self.environment = python, tuple(environment)
        self.backend_options = dict(backend_options)
        self.server = WindowServer(session.ready_meter())
        self.halves: dict[str, dict[str, dict]] = {}  # test -> arm -> its record
        self.properties: dict[tuple, list] = {}  # (test, worker) -> the pair's JUnit properties, until teardown

    def pytest_configure_node(self, node) -> None:
        arm = self.arm_of(node)
        if arm == "A":
            # xdist hands a local ('popen') worker the controller's sys.path, which would import arm B's
            # packages into arm A's interpreter; a worker it does not take for local keeps its own.
            node.gateway.spec.popen = None
        node.workerinput.update({ADDRESS_KEY: self.server.address, ARM_KEY: arm,
                                 OPTIONS_KEY: self.backend_options if arm == "A" else {}})
        devices = self.session.meter.devices
        if devices:  # both arms on the one GPU the controller measures
            node.workerinput[xdist_support.GPU_INPUT_KEY] = devices[0].uuid

    def pytest_testnodedown(self, node, error) -> None:
        """An arm whose process ended (or never connected) holds the other back no longer."""
        self.server.turns.gone(self.arm_of(node))

    @staticmethod
    def worker_of(report: pytest.TestReport) -> str | None:
        node = getattr(report, "node", None)
        return node.gateway.id if node is not None else None

    @staticmethod
    def arm_of(node) -> str:
        return "A" if node.gateway.id == "gw0" else "B"

    @pytest.hookimpl(tryfirst=True)  # the pair's outcome is set before pytest writes it
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = self.properties.pop((report.nodeid, self.worker_of(report)), None)
        if report.when == "teardown" and properties is not None:  # JUnit XML reads them from teardown
            report.user_properties = [(key, value) for key, value in report.user_properties
                                      if not key.startswith("energy_")] + properties
        record = getattr(report, "energy_record", None)
        half = TestResult.from_dict(record) if report.when == "call" and record else None
        if half is None or not half.is_arm_half:
            return
        halves = self.halves.setdefault(half.nodeid, {})
        halves[half.arm.name] = half
        if len(halves) < 2:
            return
        paired = pair(halves["A"], halves["B"])
        self.properties[(report.nodeid, self.worker_of(report))] = paired.junit_properties()
        strict = half.arm.strict if half.arm.strict is not None else self.session.options.strict
        failure = outcome(paired, strict=strict)
        if failure is not None:
            report.outcome = "failed"
            report.longrepr = failure
        self.session.records[half.nodeid] = paired.with_outcome(report.outcome)

    def unpaired(self) -> list[str]:
        """Tests one arm measured and the other did not (it died, failed or skipped): said, not judged.
        Returns them: the run asked for a comparison it could not make, so it fails."""
        missing_pairs = []
        for nodeid, halves in self.halves.items():
            if len(halves) == 1:
                missing_pairs.append(nodeid)
                (half,) = halves.values()
                self.session.records[nodeid] = without_pair(half)
        return missing_pairs

    def describe(self) -> dict:
        return {"A": {"python": self.python, "env": dict(self.environment), "options": self.backend_options},
                "B": {"python": "this interpreter"}}

    def close(self) -> None:
        self.server.close()


def without_pair(half: TestResult) -> TestResult:
    """One arm's half whose other arm gave no result: no comparison, and an error of the test."""
    arm = half.arm.name
    missing = "B" if arm == "A" else "A"
    refused = (f"arm {missing} gave no result for this test (its worker died, or the test failed "
               f"or was skipped there): nothing to compare arm {arm}'s with")
    judgement = replace(half.judgement, verdict=Verdict.INCONCLUSIVE, too_noisy=False, detectable=None,
                        refused=refused, refused_note=UNPAIRED)
    return replace(half, judgement=judgement, outcome="error")


def held_memory_gib() -> float | None:
    """GPU memory this arm's process holds (its loaded backend), which it keeps while the other arm runs."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.memory_reserved() / 2**30


def held_memory_line(results: Iterable[TestResult]) -> str | None:
    """The most GPU memory each arm held while it waited, for the summary (None off the GPU)."""
    pairs = [r.arm.memory_gib for r in results if r.arm and isinstance(r.arm.memory_gib, dict)]
    held = {arm: max((memory[arm] for memory in pairs if memory.get(arm) is not None), default=None)
            for arm in ("A", "B")}
    if all(value is None for value in held.values()):
        return None
    amounts = ", ".join(f"arm {arm} {value:.1f} GiB" for arm, value in held.items() if value is not None)
    return f"GPU memory each arm holds while the other runs (its loaded backend, at most): {amounts}"


def unpaired_lines(results: Iterable[TestResult]) -> list[str]:
    """The tests that got no comparison, for the summary (each with why): the run fails for them."""
    return [f"A/B: no comparison for {r.nodeid}: {r.refused}" for r in results
            if r.judgement.refused_note == UNPAIRED]


def mismatch(a: TestResult, b: TestResult) -> str | None:
    """Why the arms' numbers cannot be compared, if they cannot: other work, other tokens per call (a
    server's steady window excepted: it counts the tokens that streamed in it)."""
    if a.workload != b.workload:
        return f"the arms ran different workloads: A {a.workload}, B {b.workload}"
    if _online(a) and _online(b):  # a server's steady window holds as many tokens as stream in it, by design
        return None
    per_call = [result.windows.tokens_per_call for result in (a, b)]
    if per_call[0] != per_call[1]:
        return (f"the arms produced different token counts: A {per_call[0]:g}, B {per_call[1]:g} output tokens "
                "per call; J per token would not be comparable")
    return None


def _online(result: TestResult) -> bool:
    """Whether the result's backend measured a server's steady window (tokens counted as they streamed)."""
    name = (result.backend or {}).get("backend")
    try:
        return name is not None and backend_class(name).online
    except EnergyError:  # a backend this interpreter lacks: judged by its token counts
        return False


def pair(a: TestResult, b: TestResult) -> TestResult:
    """B's result judged against A's: trial i of each arm a pair (their windows adjacent, turn about), with the
    verdict words and tolerance of the stored-baseline mode."""
    fewest = min(len(a.samples), len(b.samples))
    paired = len(a.samples) == len(b.samples) >= 2
    tolerance, confidence = b.decision.tolerance, b.decision.confidence
    if paired:
        decision = compare_paired(a.samples, b.samples, tolerance, confidence=confidence)
    else:  # adaptive trials stopped the arms at different counts: each arm's trials as one run
        decision = compare([Run.of(a.samples)], Run.of(b.samples), tolerance,
                           confidence=confidence, run_to_run=False, against="against the other arm, turn about")
    if fewest < 2:
        refused, refused_note = ("one trial an arm gives no spread to judge a difference by: use "
                                 "--energy-trials=2 or more"), "one trial an arm"
    else:
        refused, refused_note = mismatch(a, b), "the arms measured different work"
    a_stack, b_stack = (a.arm.stack if a.arm else None), (b.arm.stack if b.arm else None)
    changes = stack.changes(a_stack, b_stack)
    notes = (set(b.notes) | {f"arm A: {note}" for note in a.notes}
             | {f"arm A {c.component} {c.baseline} -> arm B {c.current}" for c in changes})
    if not paired and fewest >= 2:
        notes.add(f"arms ran {len(a.samples)} and {len(b.samples)} trials: judged as two runs, not in pairs")
    judgement = replace(
        Judgement.of(decision, b.judgement.run, stack_changes=changes, refused=refused,
                     other_gpus=b.judgement.other_gpus),
        verdict=Verdict.INCONCLUSIVE if refused else decision.verdict, refused_note=refused_note,
        baseline_joules_per_token=a.joules_per_token,
    )
    memory = {"A": a.arm.memory_gib if a.arm else None, "B": b.arm.memory_gib if b.arm else None}
    return replace(
        b, judgement=judgement,
        flags=tuple(dict.fromkeys([*b.flags, *a.flags])),  # either arm's windows'
        notes=tuple(sorted(notes)),
        arm=Arm(PAIRED, b_stack, memory, b.arm.strict if b.arm else None),
        arm_a=ArmA(a.samples, a.joules_per_token, a.windows, a.backend),
    )
