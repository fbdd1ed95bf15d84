"""The pytest face of pytest-llm-energy: options, the `energy` marker and fixture, and the hooks in run order."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from . import ab, xdist_support
from .config import OPTIONS, check_marker_keywords, marker_help, read_options, test_settings
from .errors import BaselineError, EnergyError, EnergyUsageError
from .files import clean_for_json, display_path
from .fixture import EnergyFixture
from .gpus import CPU_KEY
from .meters import make_meter, resolve_gpu_key
from .models import resolve_model
from .outcome import outcome
from .progress import ProgressLine
from .report import write_run_reports
from .result import Arm, TestResult
from .run_report import RunReport, results_by_test
from .session import EnergySession
from .stats import Verdict
from .summary import (
    ab_against,
    header_line,
    host_line,
    reference_line,
    terminal_table,
    tests_text,
    verdict_counts,
    written_counts,
)

SESSION_KEY = pytest.StashKey[EnergySession]()
MARKER_KEY = pytest.StashKey[dict]()
MARKER_ERROR_KEY = pytest.StashKey[str]()
FIXTURE_KEY = pytest.StashKey[EnergyFixture]()
RESULT_KEY = pytest.StashKey[TestResult]()

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-energy", "energy of LLM inference (pytest-llm-energy)")
    for option in OPTIONS:
        dest = "energy_" + option.name
        if option.flag:
            group.addoption(option.cli, action="store_const", const=True, default=None, dest=dest,
                            help=option.cli_help)
        else:
            group.addoption(option.cli, action="append" if option.repeat else "store", default=None, dest=dest,
                            help=option.cli_help)
        parser.addini(option.ini, option.help, default=None)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _check_baselines_folder(config: pytest.Config, session: EnergySession) -> None:
    root = session.baselines_root
    explicit = config.getoption("energy_baselines") is not None or config.getini("energy_baselines")
    if root.exists() and not root.is_dir():
        raise EnergyUsageError(f"--energy-baselines: {root} is not a folder")
    if not root.exists():
        if explicit and not session.update:
            raise EnergyUsageError(
                f"--energy-baselines: {root} does not exist; create it, fix the path, or record baselines "
                "there with --energy-update-baselines"
            )
        return
    if not os.access(root, os.R_OK | os.X_OK):
        raise EnergyUsageError(f"--energy-baselines: {root} is not readable")
    folder = session.store.folder
    if folder.exists() and not folder.is_dir():  # else its baselines are silently absent, and writing fails
        raise EnergyUsageError(f"--energy-baselines: {folder} is not a folder; move that file away")


def _check_writable(session: EnergySession) -> None:
    """Updating: the folder the baselines go to must be writable, known before a run that would write it."""
    if not session.update:
        return
    existing = session.store.folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EnergyUsageError(f"--energy-update-baselines: cannot write baselines under {existing} "
                               "(permission denied); make it writable or choose --energy-baselines")


def _check_prune(config: pytest.Config, options: dict) -> None:
    """Entries are removed only on purpose, by a run that can tell a test that is gone from one left out. Asked on
    the command line, a run that cannot is refused; set in the ini, it is a standing choice that applies to
    updates of whole files only (every other run leaves the files alone anyway)."""
    if not config.getoption("energy_prune_baselines"):
        return
    if options["ab"]:
        raise EnergyUsageError("--energy-ab compares two arms and records nothing: drop --energy-prune-baselines")
    if not options["update_baselines"]:
        raise EnergyUsageError("--energy-prune-baselines removes entries as it records: add --energy-update-baselines")
    if not whole_run(config):
        raise EnergyUsageError("--energy-prune-baselines needs a run of whole test files: with -k, -m, --deselect, "
                               "--lf or node ids it cannot tell a test that is gone from one left out")


@pytest.hookimpl(tryfirst=True)  # before other plugins' configure: nothing may start CUDA on an unpinned worker
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker_help())
    config.addinivalue_line("markers", "energy_weight(share, trace, by): the share of a trace that a case "
                                       "generated by bin_params stands for")
    try:
        xdist_support.pin_worker(config)  # first: the meter below must see this worker's GPU only
        options = read_options(lambda name: config.getoption("energy_" + name), config.getini)
        _check_prune(config, options)
        if options["plots"]:
            from .plots import require_matplotlib

            require_matplotlib()
        gpu_key = resolve_gpu_key(options["gpu"])
        session = EnergySession(options, gpu_key, Path(config.rootpath), is_controller=not _is_worker(config),
                                meter=_arm_meter(config, gpu_key, options))
        if session.reads_baselines:
            _check_baselines_folder(config, session)
            _check_writable(session)
        if options["model"]:
            resolve_model(options["model"])  # a misspelt model stops the run here, not in every test
        assignment = None
        if session.is_controller:
            assignment = _one_gpu_for_arms(session) if options["ab"] else _plan_gpus(config, session)
    except (EnergyUsageError, BaselineError) as error:
        raise pytest.UsageError(str(error)) from None
    except EnergyError as error:
        raise pytest.UsageError(f"pytest-llm-energy: {error}") from None
    config.stash[SESSION_KEY] = session
    session.progress = ProgressLine(config)
    workerinput = getattr(config, "workerinput", None) or {}
    if workerinput.get("workercount", 0) > 1 and session.meter.estimated and not options["ab"]:
        session.shared_cpu = workerinput["workercount"]  # each record says its estimate is inflated
    session.ab_arm = workerinput.get(ab.ARM_KEY)
    session.ab_backend_options = workerinput.get(ab.OPTIONS_KEY) or {}
    if session.is_controller:
        hooks = ControllerHooks(session, assignment)
        config.pluginmanager.register(hooks, "llm-energy-controller")
        if options["ab"]:
            ab_hooks = ab.AbHooks(session, config.option.energy_ab_python, options["ab_env"], options["ab_option"])
            session.ab_arms = ab_hooks.describe()
            config.pluginmanager.register(ab_hooks, "llm-energy-ab")
        if xdist_support.has_xdist(config):
            if xdist_support.worker_count(config):  # workers leave their progress here for the controller
                hooks.progress_dir = Path(tempfile.mkdtemp(prefix="llm-energy-progress-"))
            config.pluginmanager.register(xdist_support.XdistHooks(assignment, hooks.progress_dir),
                                          "llm-energy-xdist")


@pytest.hookimpl(tryfirst=True)  # before xdist reads -n and --tx
def pytest_cmdline_main(config: pytest.Config) -> None:
    """--energy-ab: the two arms are two xdist workers, every test in both (see ab.py)."""
    if _is_worker(config):  # the arms themselves run their tests, they start no arms
        return
    try:
        options = read_options(lambda name: config.getoption("energy_" + name), config.getini)  # ini too
        if not options["ab"]:
            for name in ("ab_env", "ab_option"):
                if options[name]:
                    raise EnergyUsageError(f"--energy-{name.replace('_', '-')} sets arm A of an A/B run: "
                                           "add --energy-ab=PYTHON, or drop it")
            return
        config.option.energy_ab_python = ab.arm_a_python(options["ab"])
        ab.configure_xdist(config, config.option.energy_ab_python, options["ab_env"], options["update_baselines"])
    except EnergyUsageError as error:
        raise pytest.UsageError(str(error)) from None


def _arm_meter(config: pytest.Config, gpu_key: str, options: dict):
    """In an A/B arm: the controller's meter, lent window by window; elsewhere None (the session makes one)."""
    address = (getattr(config, "workerinput", None) or {}).get(ab.ADDRESS_KEY)
    if not address:
        return None
    from .meters.remote import RemoteMeter

    return RemoteMeter(address, config.workerinput[ab.ARM_KEY],
                       local=lambda: make_meter(gpu_key, watts_per_core=options["cpu_watts_per_core"]))


def _plan_gpus(config: pytest.Config, session: EnergySession) -> xdist_support.GpuAssignment | None:
    """Under `-n N` on GPUs: one GPU per worker (see xdist_support); None when nothing is pinned."""
    workers = xdist_support.worker_count(config)
    devices = list(session.meter.devices)
    if not workers or session.gpu_key == CPU_KEY or not devices:
        return None
    xdist_support.check_worker_count(workers, [d.uuid for d in devices], session.gpu_key,
                                     auto=xdist_support.asked_for_auto(config))
    # The controller measures nothing, but its meter describes the hardware stored with every baseline:
    # make it one worker's view (one GPU), so a baseline's gpu_count matches what a worker measures.
    _meter_of_first_gpu(session)
    return xdist_support.GpuAssignment([d.uuid for d in devices])


def _one_gpu_for_arms(session: EnergySession) -> None:
    """A/B: both arms run on the first visible GPU, and the controller's meter measures that one alone."""
    if len(session.meter.devices) > 1:
        _meter_of_first_gpu(session)


def _meter_of_first_gpu(session: EnergySession) -> None:
    from .meters.nvml import NvmlMeter

    first, min_window_s = list(session.meter.devices)[:1], session.meter.min_window_s  # with --energy-min-window
    session.meter.close()
    session.meter = NvmlMeter(devices=first)
    session.meter.min_window_s = min_window_s


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return []
    o = session.options
    mode = "updating" if session.update else "not updating"
    trials = f"{o['trials']}" + (f"..{o['max_trials']}" if o["max_trials"] and o["max_trials"] > o["trials"] else "")
    against = (f"{ab_against(session.ab_arms)}; no baselines read or written" if session.ab_arms
               else f"baselines {session.store.folder} ({mode})")
    lines = [
        f"energy: gpu key {session.gpu_key!r}, meter {session.meter.describe()}",
        f"energy: {against}, tolerance {o['tolerance']:.0%}, trials {trials}, "
        f"warm-up {o['warmup']}, confidence {o['confidence']:.0%}, backend {o['backend']}, "
        f"model {o['model'] or session.default_model}",
    ]
    if session.ab_arms:  # the two workers are the arms, taking turns: none of the -n caveats below holds
        return lines
    hooks = config.pluginmanager.get_plugin("llm-energy-controller")
    if hooks is not None and hooks.assignment is not None:
        pins = hooks.assignment.planned(xdist_support.worker_count(config))
        lines.append("energy: one GPU per xdist worker: " + ", ".join(f"{p.worker} -> {p.uuid}" for p in pins))
    workers = xdist_support.worker_count(config)
    if workers > 1 and session.meter.name == "rapl":
        lines.append(f"energy: RAPL counts the whole CPU package: with {workers} xdist workers, each test's "
                     "number includes the other workers' work")
    elif workers > 1 and session.meter.estimated:
        lines.append(f"energy: ESTIMATES INFLATED: {workers} xdist workers share the CPU, and each worker's CPU "
                     "time grows with the contention; compare only with runs of the same -n, or run without -n")
    return lines


@pytest.hookimpl(tryfirst=True)  # before xdist's worker renames grouped tests (see xdist_support)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every energy marker before anything runs: a typo is an error that names the keyword."""
    problems = []
    for item in items:
        values: dict = {}
        try:
            # Closest marker first: a function's keyword wins over its class's and module's.
            for mark in reversed(list(item.iter_markers("energy"))):
                values.update(check_marker_keywords(item.nodeid, mark.kwargs, mark.args))
            if "model" in values:
                _check_model(item.nodeid, values["model"])
        except EnergyUsageError as error:
            problems.append(str(error))
            item.stash[MARKER_ERROR_KEY] = str(error)
            continue
        item.stash[MARKER_KEY] = values
        xdist_support.group_by_model(item, values.get("model"))
    # An xdist worker that stops at collection crashes without the message, so there each bad test errors
    # with it instead (pytest_runtest_setup below); a serial run stops before any test.
    if problems and xdist_support.worker_id(config) is None:
        raise pytest.UsageError("\n".join(problems))


def _check_model(nodeid: str, model: str) -> None:
    try:
        resolve_model(model)
    except EnergyUsageError as error:
        raise EnergyUsageError(f"{nodeid}: @pytest.mark.energy(model=...): {error}") from None


def _baseline_problems(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The baseline files of the collected tests, read before any runs: a broken one is named now."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.reads_baselines:
        return []
    try:
        session.store.check(xdist_support.plain_nodeid(item) for item in items)
    except BaselineError as error:
        return [str(error)]
    return []


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Measure energy in a test: `with energy.measure() as m: ...; m.output_tokens = n`, or `energy.run(w)`."""
    session = request.config.stash[SESSION_KEY]
    marker_values = request.node.stash.get(MARKER_KEY, {})
    settings = test_settings(session.options, marker_values, session.default_model)
    fixture = EnergyFixture(xdist_support.plain_nodeid(request.node), settings, session)
    request.node.stash[FIXTURE_KEY] = fixture
    return fixture


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker_error = item.stash.get(MARKER_ERROR_KEY, None)
    if marker_error is not None:  # only on xdist workers: see pytest_collection_modifyitems
        pytest.fail(marker_error, pytrace=False)
    session = item.config.stash.get(SESSION_KEY, None)
    if session is not None and isinstance(session.progress, ProgressLine):
        session.progress.start(xdist_support.plain_nodeid(item))
    if session is not None and session.ab_arm:  # A/B: the device is this arm's from setup (model loading) on
        session.meter.enter(xdist_support.plain_nodeid(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    try:
        return (yield)
    finally:
        session = item.config.stash.get(SESSION_KEY, None)
        if session is not None and session.ab_arm:  # A/B: after teardown the other arm may use the device
            session.meter.leave(xdist_support.plain_nodeid(item))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """With --energy-trials, call a body that measured once again, as pytest-repeat would, minus setup."""
    fixture = pyfuncitem.stash.get(FIXTURE_KEY, None)
    if fixture is None:
        return (yield)
    original = pyfuncitem.obj

    def body(**kwargs):
        result = original(**kwargs)
        if "benchmark" in kwargs and _would_repeat(fixture):
            pytest.fail(BENCHMARK_REPEAT, pytrace=False)
        fixture.repeat_body(lambda: original(**kwargs))
        return result

    pyfuncitem.obj = body
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


BENCHMARK_REPEAT = (
    "this test uses pytest-benchmark's `benchmark`, which runs once per test, and measures energy once, "
    "so its body cannot be repeated for energy trials: measure in a loop instead, "
    "`for trial in energy.trials(): with energy.measure() as m: ...`, outside the benchmark() call"
)


def _would_repeat(fixture: EnergyFixture) -> bool:
    """Whether repeat_body would call the body again (a body that measured once, and more windows wanted)."""
    settings = fixture.settings
    return (not fixture.drives_own_trials and len(fixture.measurements) == 1
            and settings.warmup + settings.trials > 1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After a body that passed: compare with the baseline, and fail the test if energy regressed.

    A body that raised one of the plugin's errors fails with its one line.
    """
    try:
        result = yield
    except EnergyError as error:
        # Asked for the traceback; or xfail(raises=BackendError), which must see the error's own type.
        if _wants_traceback(item.config) or item.get_closest_marker("xfail"):
            raise
        raised = str(error)
    else:
        raised = None
    if raised is not None:
        # Raised on purpose in the body (an unknown model, a backend out of memory, NVML failing): the
        # message says what and what to do; a traceback, or its chain of causes, would only bury it.
        pytest.fail(raised, pytrace=False)
    fixture = item.stash.get(FIXTURE_KEY, None)
    session = item.config.stash.get(SESSION_KEY, None)
    if fixture is None or session is None:
        return result
    try:
        energy = session.judge(fixture.nodeid, fixture.settings, fixture)
    except EnergyError as error:
        failure = str(error)  # failed outside the except block, so pytest does not print it twice, chained
    else:
        failure = None
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if energy is None:
        return result
    worker = xdist_support.worker_id(item.config)
    if worker is not None:  # which worker measured it; measurement.devices says which GPU
        energy = replace(energy, worker=worker)
    if session.ab_arm:  # A/B: the controller pairs the arms' results and judges them
        energy = replace(energy, arm=Arm(session.ab_arm, session.fingerprint(), ab.held_memory_gib(),
                                         fixture.settings.strict))
    item.stash[RESULT_KEY] = energy
    _attach_properties(item, energy)
    if session.ab_arm:
        return result  # one arm's half: the controller judges the pair (ab.AbHooks)
    if session.update:
        return result  # recording: verdicts are shown, nothing fails on energy
    failure = outcome(energy, strict=fixture.settings.strict,
                      accept=_accept_command(item.config, session, fixture.nodeid))
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return result


def _accept_command(config: pytest.Config, session: EnergySession, nodeid: str) -> str:
    """The command that records this test's run as its baseline (as syrupy's --snapshot-update hint)."""
    words = ["pytest", shlex.quote(nodeid), f"--energy-gpu={session.gpu_key}"]
    if config.getoption("energy_baselines") is not None:
        words.append(f"--energy-baselines={shlex.quote(session.options['baselines'])}")
    return " ".join([*words, "--energy-update-baselines"])


def _wants_traceback(config: pytest.Config) -> bool:
    """--tb=long, --tb=native or --full-trace: show the traceback behind an energy error as well."""
    return config.getoption("fulltrace", False) or config.getoption("tbstyle", "auto") in ("long", "native")


def _attach_properties(item: pytest.Item, energy: TestResult) -> None:
    """JUnit XML properties (they travel with xdist reports), and pytest-benchmark's extra_info."""
    item.user_properties.extend(energy.junit_properties())
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if benchmark is not None and hasattr(benchmark, "extra_info"):
        benchmark.extra_info["energy"] = {
            "joules_per_token": energy.joules_per_token, "baseline_joules_per_token": energy.baseline_joules_per_token,
            "delta": energy.decision.delta, "verdict": str(energy.verdict), "samples": list(energy.samples),
            "meter": energy.meter, "estimated": energy.estimated,
        }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call":
        energy = item.stash.get(RESULT_KEY, None)
        if energy is not None:
            # Serialised with the report, so xdist carries it: plain values only.
            report.energy_record = clean_for_json(energy.to_dict(), round_floats=False)
    return report


def pytest_collection_finish(session: pytest.Session) -> None:
    """The controller of a serial run learns which tests this run covers (xdist: ControllerHooks below)."""
    energy_session = session.config.stash.get(SESSION_KEY, None)
    if energy_session is not None and energy_session.ab_arm:  # A/B: the turns follow both arms' orders
        energy_session.meter.collected([xdist_support.plain_nodeid(item) for item in session.items])
    if energy_session is not None and energy_session.is_controller and not _is_worker(session.config):
        energy_session.collected = [xdist_support.plain_nodeid(item) for item in session.items]
        energy_session.whole_run = whole_run(session.config)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Tests deselected by -k, -m or any plugin or conftest: this run does not cover whole files (an xdist
    worker tells the controller as it goes down)."""
    energy_session = items[0].config.stash.get(SESSION_KEY, None) if items else None
    if energy_session is not None:
        energy_session.deselected = True


# Options that pick a subset of the collected tests: a run with any of them does not cover whole test files.
# (--ff only reorders, and --lfnf acts only with --lf.)
SELECTING_OPTIONS = ("keyword", "markexpr", "deselect", "lf", "stepwise")


def whole_run(config: pytest.Config) -> bool:
    """Whether this run covers whole test files: no -k, -m, --deselect, --lf or node ids on the command line."""
    if any("::" in str(argument) for argument in config.args):
        return False
    return not any(getattr(config.option, name, None) not in (None, "", False, [], "all")
                   for name in SELECTING_OPTIONS)


class ControllerHooks:
    """Hooks of the process that reports: it hears of every test, whichever process ran it."""

    def __init__(self, session: EnergySession, assignment: xdist_support.GpuAssignment | None = None) -> None:
        self.session = session
        self.assignment = assignment  # which worker measures which GPU, under xdist on GPUs
        self._test_ids: dict[str, str] = {}  # report node id -> the record's (xdist may add "@group")
        self.plots: list[Path] = []  # PNG files written at the end (--energy-plots)
        self.progress_dir: Path | None = None  # under xdist: where workers leave their progress lines

    @pytest.hookimpl(trylast=True)  # after pytest has written the test's own result
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.progress.relay(self.progress_dir)
        if report.when == "teardown":
            self.session.progress.clear()
        self._collect(report)

    def _collect(self, report: pytest.TestReport) -> None:
        record = getattr(report, "energy_record", None)
        energy = TestResult.from_dict(record) if record is not None else None
        if energy is not None and energy.is_arm_half:  # one arm's half: ab.AbHooks pairs it
            energy = None
        if energy is not None:
            self._test_ids[report.nodeid] = energy.nodeid
        nodeid = self._test_ids.get(report.nodeid, report.nodeid)
        if report.when == "call":
            self.session.collect(nodeid, energy, "passed" if report.passed else report.outcome)
        elif report.failed:  # an error in setup or teardown: the test's result is not recorded
            self.session.collect(nodeid, None, "error")

    @pytest.hookimpl(trylast=True)  # after -k and -m have deselected: the files of the tests that will run
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """A serial run reads the baseline files of its tests before any runs: a broken one is named now."""
        if xdist_support.worker_id(config) is None:
            problems = _baseline_problems(config, items)
            if problems:
                raise pytest.UsageError("\n".join(problems))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: each worker tells it what it collected."""
        seen = set(self.session.collected)
        self.session.collected += [xdist_support.strip_group(nodeid, node.config) for nodeid in ids
                                   if xdist_support.strip_group(nodeid, node.config) not in seen]
        self.session.whole_run = whole_run(node.config)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """A worker whose plugins or conftests deselected tests: this run does not cover whole files."""
        if (getattr(node, "workeroutput", None) or {}).get(xdist_support.DESELECTED_KEY):
            self.session.deselected = True

    def pins(self) -> dict[str, str]:
        if self.assignment is None:
            return {}
        return {worker: pin.uuid for worker, pin in sorted(self.assignment.pins.items())}


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while baseline files are replaced, so a run never stops between two files.

    Yields a list that holds the signal if one came. A handler, not a signal mask: numpy and torch start
    threads, the kernel hands a SIGINT blocked in this thread to one of them, and Python then raises
    KeyboardInterrupt in this thread all the same.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield held  # only the main thread may set a handler; None: one set outside Python, left alone
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    energy_session = session.config.stash.get(SESSION_KEY, None)
    if energy_session is None:
        return
    if energy_session.ab_arm:  # A/B: this arm's teardown (backends freed) overlaps none of the other's tests
        energy_session.meter.finish()
    energy_session.close()
    if not energy_session.is_controller:
        if energy_session.deselected and hasattr(session.config, "workeroutput"):
            session.config.workeroutput[xdist_support.DESELECTED_KEY] = True  # the controller cannot see it
        return
    hooks = session.config.pluginmanager.get_plugin("llm-energy-controller")
    if hooks is not None and hooks.progress_dir is not None:
        shutil.rmtree(hooks.progress_dir, ignore_errors=True)
    ab_hooks = session.config.pluginmanager.get_plugin("llm-energy-ab")
    if ab_hooks is not None:
        if ab_hooks.unpaired() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a comparison asked for and not made
        ab_hooks.close()
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    energy_session.interrupted = interrupted
    if energy_session.update and not interrupted:
        with _sigint_deferred() as held:
            energy_session.write_baselines()
        if held:  # the files are complete; now stop as Ctrl-C asked
            energy_session.interrupted = True
            session.exitstatus = pytest.ExitCode.INTERRUPTED
    options = energy_session.options
    if energy_session.records or options["json"] or options["md"]:  # a file asked for is always written
        hooks = session.config.pluginmanager.get_plugin("llm-energy-controller")
        hooks.plots, error = write_run_reports(energy_session.report(hooks.pins()), json_path=options["json"],
                                               md_path=options["md"], plots_folder=options["plots"])
        energy_session.write_error = energy_session.write_error or error
    if energy_session.write_error and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _unused_lines(tr, session: EnergySession) -> None:
    """Baseline entries of tests this run did not collect: removed (an update of whole files), or listed."""
    removed = {nodeid for written in session.written for nodeid in written.removed}
    unused = [nodeid for nodeid in session.unused_entries() if nodeid not in removed]
    if removed:
        tr.write_line(f"baseline entries removed ({len(removed)}), of tests that are gone: "
                      + ", ".join(sorted(removed)), yellow=True)
    if unused:
        why = ("the update did not complete" if session.update and session.options["prune_baselines"]
               else "if those tests are gone, --energy-update-baselines --energy-prune-baselines removes them")
        tr.write_line(f"unused baseline entries ({len(unused)}), of tests this run did not collect: "
                      + ", ".join(unused) + f"; {why}", yellow=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.is_controller:
        return
    records = results_by_test(session.records)
    if not records and not session.write_error and not session.written and not session.unused_entries():
        return
    tr = terminalreporter
    tr.section("energy")
    tr.write_line(header_line(RunReport(gpu=session.gpu_key, meter=session.meter.name, estimated=session.meter.estimated,
                                        baselines_folder=str(session.store.folder), mode=session.mode,
                                        arms=session.ab_arms)))
    if session.meter.estimated:
        tr.write_line("ESTIMATED: no energy counter here; " + session.meter.describe(), yellow=True)
    for reference in session.run_references():
        tr.write_line(reference_line(reference))
    if session.host:
        tr.write_line(host_line(session.host))
    if records:
        tr.write_line(terminal_table(records))
        tr.write_line(f"{tests_text(len(records))}: {verdict_counts(records)}")
    if session.written:
        for written in session.written:
            counts = written_counts(written)
            tr.write_line(f"baselines written: {written.path} ({counts})", green=True)
        if session.interrupted:
            tr.write_line("interrupted while baselines were written: held until every file was complete",
                          red=True)
    elif session.update and session.interrupted:
        tr.write_line("baselines NOT written: the run was interrupted", red=True)
    elif session.ab_arms:
        tr.write_line("A/B: each test ran in both arms (xdist counts it twice); B judged against A pair by pair "
                      "(delta: each B trial over the A trial beside it, averaged)")
        held = ab.held_memory_line(records)
        if held:
            tr.write_line(held)
        for line in ab.unpaired_lines(records):
            tr.write_line(line, red=True)
    elif not session.update and any(r.verdict in (Verdict.NEW, Verdict.IMPROVED) for r in records):
        tr.write_line("baselines unchanged; record new or improved results with --energy-update-baselines")
    _unused_lines(tr, session)
    hooks = config.pluginmanager.get_plugin("llm-energy-controller")
    if hooks is not None and hooks.pins():
        tr.write_line("one GPU per xdist worker: " + ", ".join(f"{w} {uuid}" for w, uuid in hooks.pins().items()))
    if hooks is not None and hooks.plots:
        tr.write_line(f"energy plots: {len(hooks.plots)} PNG files in {display_path(hooks.plots[0].parent)}")
    if session.write_error:
        tr.write_line(f"energy: {session.write_error}", red=True)
    if session.gpu_key == CPU_KEY and session.meter.estimated and records:
        tr.write_line("note: CPU numbers are estimates for trying the plugin out; guard energy on a GPU runner")
