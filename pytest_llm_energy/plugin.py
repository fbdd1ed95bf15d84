"""The pytest face of pytest-llm-energy: options, the `energy` marker and fixture, and the hooks in run order."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from .config import OPTIONS, check_marker_keywords, read_options, test_settings
from .errors import BaselineError, EnergyError, EnergyUsageError
from .fixture import EnergyFixture
from .gpus import CPU_KEY
from .meters import resolve_gpu_key
from .report import failure_message, header_line, markdown, terminal_table, verdict_counts, write_json
from .session import EnergySession

SESSION_KEY = pytest.StashKey[EnergySession]()
MARKER_KEY = pytest.StashKey[dict]()
FIXTURE_KEY = pytest.StashKey[EnergyFixture]()
RECORD_KEY = pytest.StashKey[dict]()

MARKER_HELP = (
    "energy(**settings): per-test energy settings: tolerance, trials, max_trials, time_budget, warmup, "
    "confidence, strict, min_window, model, backend, input_tokens, output_tokens, batch_size, decoding, "
    "seed, and backend options (dtype, compile, static_cache, cuda_graphs, tensor_parallel_size, ...)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-energy", "energy of LLM inference (pytest-llm-energy)")
    for option in OPTIONS:
        dest = "energy_" + option.name
        if option.flag:
            group.addoption(option.cli, action="store_const", const=True, default=None, dest=dest,
                            help=option.help)
        else:
            group.addoption(option.cli, action="store", default=None, dest=dest, help=option.help)
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
    session.store.check()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        options = read_options(lambda name: config.getoption("energy_" + name), config.getini)
        gpu_key = resolve_gpu_key(options["gpu"])
        session = EnergySession(options, gpu_key, Path(config.rootpath), is_controller=not _is_worker(config))
        _check_baselines_folder(config, session)
    except (EnergyUsageError, BaselineError) as error:
        raise pytest.UsageError(str(error)) from None
    except EnergyError as error:
        raise pytest.UsageError(f"pytest-llm-energy: {error}") from None
    config.stash[SESSION_KEY] = session
    if session.is_controller:
        config.pluginmanager.register(ControllerHooks(session), "llm-energy-controller")


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return []
    o = session.options
    mode = "updating" if session.update else "read-only"
    trials = f"{o['trials']}" + (f"..{o['max_trials']}" if o["max_trials"] and o["max_trials"] > o["trials"] else "")
    return [
        f"energy: gpu key {session.gpu_key!r}, meter {session.meter.describe()}",
        f"energy: baselines {session.store.folder} ({mode}), tolerance {o['tolerance']:.0%}, trials {trials}, "
        f"warm-up {o['warmup']}, confidence {o['confidence']:.0%}, backend {o['backend']}, "
        f"model {o['model'] or session.default_model}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every energy marker before anything runs: a typo is an error that names the keyword."""
    problems = []
    for item in items:
        values: dict = {}
        try:
            # Closest marker first: a function's keyword wins over its class's and module's.
            for mark in reversed(list(item.iter_markers("energy"))):
                values.update(check_marker_keywords(item.nodeid, mark.kwargs, mark.args))
        except EnergyUsageError as error:
            problems.append(str(error))
            continue
        item.stash[MARKER_KEY] = values
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Measure energy in a test: `with energy.measure() as m: ...; m.output_tokens = n`, or `energy.run(w)`."""
    session = request.config.stash[SESSION_KEY]
    marker_values = request.node.stash.get(MARKER_KEY, {})
    settings = test_settings(session.options, marker_values, session.default_model)
    fixture = EnergyFixture(request.node.nodeid, settings, session)
    request.node.stash[FIXTURE_KEY] = fixture
    return fixture


def pytest_runtest_setup(item: pytest.Item) -> None:
    session = item.config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.progress = _progress_writer(item.config, item.nodeid)


PROGRESS_AFTER_S = 2.0  # quick tests stay quiet; a progress line appears once a test runs this long


def _progress_writer(config: pytest.Config, nodeid: str):
    """One line per warm-up / trial with the elapsed time, for long tests; quiet under -q and on workers."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    started = time.perf_counter()
    if reporter is None or config.get_verbosity() < 0 or _is_worker(config):
        return lambda text: None

    def write(text: str) -> None:
        elapsed = time.perf_counter() - started
        if elapsed < PROGRESS_AFTER_S:
            return
        line = f"  [energy] {nodeid} {text.replace(nodeid, '').strip()} ({elapsed:.1f} s)"
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    return write


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """With --energy-trials, call a body that measured once again, as pytest-repeat would, minus setup."""
    fixture = pyfuncitem.stash.get(FIXTURE_KEY, None)
    if fixture is None:
        return (yield)
    original = pyfuncitem.obj

    def body(**kwargs):
        result = original(**kwargs)
        fixture.repeat_body(lambda: original(**kwargs))
        return result

    pyfuncitem.obj = body
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After a body that passed: compare with the baseline, and fail the test if energy regressed."""
    result = yield
    fixture = item.stash.get(FIXTURE_KEY, None)
    session = item.config.stash.get(SESSION_KEY, None)
    if fixture is None or session is None:
        return result
    try:
        record = session.judge(item.nodeid, fixture.settings, fixture)
    except EnergyError as error:
        pytest.fail(str(error), pytrace=False)
    if record is None:
        return result
    item.stash[RECORD_KEY] = record
    _attach_properties(item, record)
    if session.update:
        return result  # recording: verdicts are shown, nothing fails on energy
    if record["refused"]:
        pytest.fail(record["refused"], pytrace=False)
    verdict = record["verdict"]
    if verdict == "regressed":
        pytest.fail(failure_message(record), pytrace=False)
    if fixture.settings.strict and verdict in ("new", "inconclusive"):
        reason = f"energy verdict {verdict!r} fails under --energy-strict"
        pytest.fail(failure_message(record, strict_reason=reason), pytrace=False)
    return result


def _attach_properties(item: pytest.Item, record: dict) -> None:
    """JUnit XML properties (they travel with xdist reports), and pytest-benchmark's extra_info."""
    for key in ("joules_per_token", "baseline_joules_per_token", "delta", "verdict", "ci_low", "ci_high",
                "detectable", "meter"):
        value = record.get(key)
        if value is not None:
            item.user_properties.append((f"energy_{key}", value))
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if benchmark is not None and hasattr(benchmark, "extra_info"):
        benchmark.extra_info["energy"] = {
            key: record.get(key) for key in ("joules_per_token", "baseline_joules_per_token", "delta", "verdict",
                                              "samples", "meter", "estimated")
        }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call":
        record = item.stash.get(RECORD_KEY, None)
        if record is not None:
            report.energy_record = record  # serialised with the report, so xdist carries it
    return report


class ControllerHooks:
    """Hooks of the process that reports: it hears of every test, whichever process ran it."""

    def __init__(self, session: EnergySession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "energy_record", None)
        if report.when == "call":
            self.session.collect(report.nodeid, record, "passed" if report.passed else report.outcome)
        elif report.failed:  # an error in setup or teardown: the test's result is not recorded
            self.session.collect(report.nodeid, None, "error")


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while baseline files are replaced, so a run never stops between two files."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    energy_session = session.config.stash.get(SESSION_KEY, None)
    if energy_session is None:
        return
    energy_session.close()
    if not energy_session.is_controller:
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    energy_session.interrupted = interrupted
    if energy_session.update and not interrupted:
        with _sigint_deferred():
            energy_session.write_baselines()
    if not energy_session.records:
        return
    document = energy_session.report_document()
    options = energy_session.options
    try:
        if options["json"]:
            write_json(Path(options["json"]), document)
        if options["md"]:
            Path(options["md"]).write_text(markdown(document), encoding="utf-8")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown(document))
    except OSError as error:
        energy_session.write_error = f"could not write a report: {error}"
    if energy_session.write_error and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.is_controller:
        return
    records = [session.records[nodeid] for nodeid in sorted(session.records)]
    if not records and not session.write_error:
        return
    tr = terminalreporter
    tr.section("energy")
    document = {"gpu": session.gpu_key, "meter": session.meter.name, "estimated": session.meter.estimated,
                "baselines": str(session.store.folder)}
    tr.write_line(header_line(document))
    if session.meter.estimated:
        tr.write_line("ESTIMATED: no energy counter here; " + session.meter.describe(), yellow=True)
    if records:
        tr.write_line(terminal_table(records))
        tr.write_line(f"{len(records)} tests: {verdict_counts(records)}")
    if session.written:
        for written in session.written:
            tr.write_line(f"baselines written: {written.path} (+{len(written.added)} new, "
                          f"{len(written.updated)} updated)", green=True)
    elif session.update and session.interrupted:
        tr.write_line("baselines NOT written: the run was interrupted", red=True)
    elif not session.update and any(r["verdict"] in ("new", "improved") for r in records):
        tr.write_line("baselines unchanged; record new or improved results with --energy-update-baselines")
    if session.write_error:
        tr.write_line(f"energy: {session.write_error}", red=True)
    if session.gpu_key == CPU_KEY and session.meter.estimated and records:
        tr.write_line("note: CPU numbers are estimates for trying the plugin out; guard energy on a GPU runner")
