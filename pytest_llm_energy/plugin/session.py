"""What happens in one pytest run: the meter, backends and baselines in force, and the results collected.

Each process that runs tests (the only one, or each xdist worker) measures and judges its own tests.
Only the controller collects every result (from the test reports) and writes reports and baselines,
once, at the end. The plugin's hooks tell the session each event of the run, in the order pytest calls
them (`configure`, `test_started`, `test_called`, `test_reported`, `finish`, ...); the session keeps its
own books.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from ..core import fingerprint as stack
from ..core import judge
from ..core.baseline import BaselineEntry, BaselineStore, WriteSummary, entry_workload
from ..core.errors import BackendUnavailable, EnergyError
from ..core.files import clean_for_json
from ..core.gpus import CPU_KEY
from ..core.models import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL
from ..core.reference import card_scale
from ..core.result import Arm, TestResult
from ..core.run_report import RunReport, results_by_test
from ..core.stats import Evidence, Verdict
from ..core.workload import Workload
from . import ab, checks, xdist_support
from .config import Options, TestSettings, test_settings
from .fixture import FIXTURE_KEY, EnergyFixture
from .host import probe_host
from .meters import make_meter, resolve_gpu_key
from .meters.base import Meter
from .outcome import outcome
from .progress import ProgressLine
from .reference_kernels import measure_reference
from .report import write_run_reports
from .runner import WorkloadRunner
from .summary import UNMEASURED
from .trials import TrialPlan

RESULT_KEY = pytest.StashKey[TestResult]()  # the result of an item's call, until its report carries it
UNMEASURED_KEY = pytest.StashKey[bool]()  # the item took the energy fixture and measured nothing


class EnergySession:
    """One pytest process's run: what is in force, what it measured, and (the controller) every result."""

    def __init__(self, options: Options, gpu_key: str, rootdir: Path, *, is_controller: bool,
                 meter: Meter | None = None, progress: ProgressLine | None = None, worker: str | None = None,
                 xdist_workers: int = 0, ab_arm: str | None = None, ab_backend_options: Mapping | None = None,
                 shared_cpu: int = 0, baselines_given: bool = False, baselines_option: bool = False) -> None:
        self.options = options
        self.gpu_key = gpu_key
        self.rootdir = rootdir
        self.is_controller = is_controller
        baselines = Path(options.baselines)
        self.baselines_root = baselines if baselines.is_absolute() else rootdir / baselines
        self.baselines_given = baselines_given  # named by option or ini, not left at the default
        self.baselines_option = baselines_option  # named on the command line, which an accept command repeats
        self.store = BaselineStore(self.baselines_root, gpu_key)
        self.meter: Meter = self._with_min_window(meter or make_meter(gpu_key, watts_per_core=options.cpu_watts_per_core))
        self.default_model = DEFAULT_CPU_MODEL if gpu_key == CPU_KEY else DEFAULT_GPU_MODEL
        self.progress = progress or (lambda text: None)
        self.worker = worker  # the xdist worker id of this process, if it is one
        self.xdist_workers = xdist_workers  # how many the controller starts (-n)
        self.shared_cpu = shared_cpu  # xdist workers sharing the CPU under an estimating meter (0: none)
        self.ab_arm = ab_arm  # in an A/B arm: "A" or "B"
        self.ab_backend_options = dict(ab_backend_options or {})  # arm A's own backend options (--energy-ab-option)
        self.ab: ab.AbHooks | None = None  # the A/B controller: the window server and the pairing
        self.ab_arms: dict | None = None  # the A/B controller: what each arm is
        self.gpus: xdist_support.GpuAssignment | None = None  # which worker measures which GPU (-n on GPUs)
        self.progress_dir: Path | None = None  # under xdist: where workers leave their progress lines
        self._runner: WorkloadRunner | None = None
        self._pool = None
        self._idle_measured = False
        self.reference: dict | None = None  # the reference kernels on this run's GPU (reference.py)
        self.host: dict | None = None  # how fast this run's CPUs ran Python at its start (host.py)
        self._evidence: Evidence | None = None
        self.records: dict[str, TestResult] = {}  # nodeid -> result (controller: from every process)
        self.outcomes: dict[str, str] = {}  # nodeid -> passed / failed / error / skipped
        self.unmeasured: list[str] = []  # tests that took the fixture and measured nothing (the controller's)
        self._test_ids: dict[str, str] = {}  # report node id -> the result's (xdist may add "@group")
        self.written: list[WriteSummary] = []
        self.write_error: str | None = None
        self.plots: list[Path] = []  # PNG files written at the end (--energy-plots)
        self.interrupted = False  # Ctrl-C while tests ran: nothing recorded
        self.held_interrupt = False  # Ctrl-C while the files were written: held until they were complete
        self.collected: list[str] = []  # the test ids this run collected (the controller's view)
        self.whole_run = False  # whether its command line asks for whole test files (no -k, -m or node ids)
        self.deselected = False  # a plugin or conftest deselected tests (here, or in an xdist worker)
        self.started_at = dt.datetime.now(dt.UTC)
        self._clock_start = time.perf_counter()

    # -- the start of the run ------------------------------------------------------------------------------
    @classmethod
    def configure(cls, config: pytest.Config, options: Options) -> EnergySession:
        """The session of this process, with every check that can stop the run before its first test."""
        checks.check_prune(config, options)
        if options.plots:
            from ..core.plots import require_matplotlib

            require_matplotlib()
        gpu_key = resolve_gpu_key(options.gpu)
        workerinput = getattr(config, "workerinput", None) or {}
        workers_share_cpu = workerinput.get("workercount", 0) > 1 and not options.ab
        session = cls(
            options, gpu_key, Path(config.rootpath), is_controller=not hasattr(config, "workerinput"),
            meter=_arm_meter(workerinput, gpu_key, options), progress=ProgressLine(config),
            worker=xdist_support.worker_id(config), xdist_workers=xdist_support.worker_count(config),
            ab_arm=workerinput.get(ab.ARM_KEY), ab_backend_options=workerinput.get(ab.OPTIONS_KEY),
            baselines_given=checks.baselines_given(config),
            baselines_option=config.getoption("energy_baselines") is not None,
        )
        if workers_share_cpu and session.meter.estimated:
            session.shared_cpu = workerinput["workercount"]  # each result says its estimate is inflated
        if session.reads_baselines:
            checks.check_baselines_folder(session.store, given=session.baselines_given, update=session.update)
            if session.update:
                checks.check_writable(session.store.folder)
        if options.model:
            checks.check_model(options.model)
        if session.is_controller:
            checks.check_report_paths(options)
            if options.ab:
                session._measure_one_gpu_for_arms()
            else:
                session._plan_gpus(config)
        return session

    def register(self, config: pytest.Config) -> None:
        """The controller's hooks: it hears of every test, and (A/B, xdist) starts and serves the workers."""
        if not self.is_controller:
            return
        config.pluginmanager.register(ControllerHooks(self), "llm-energy-controller")
        if self.options.ab:
            self.ab = ab.AbHooks(self, config.option.energy_ab_python, self.options.ab_env, self.options.ab_option)
            self.ab_arms = self.ab.describe()
            config.pluginmanager.register(self.ab, "llm-energy-ab")
        if xdist_support.has_xdist(config):
            if self.xdist_workers:  # workers leave their progress here for the controller
                self.progress_dir = Path(tempfile.mkdtemp(prefix="llm-energy-progress-"))
            config.pluginmanager.register(xdist_support.XdistHooks(self.gpus, self.progress_dir), "llm-energy-xdist")

    def _with_min_window(self, meter: Meter) -> Meter:
        if self.options.min_window is not None:  # the user's minimum also decides what is flagged as short
            meter.min_window_s = self.options.min_window
        return meter

    def _plan_gpus(self, config: pytest.Config) -> None:
        """Under `-n N` on GPUs: one GPU per worker (see xdist_support); none pinned otherwise."""
        devices = list(self.meter.devices)
        if not self.xdist_workers or self.gpu_key == CPU_KEY or not devices:
            return
        xdist_support.check_worker_count(self.xdist_workers, [d.uuid for d in devices], self.gpu_key,
                                         auto=xdist_support.asked_for_auto(config))
        # The controller measures nothing, but its meter describes the hardware stored with every baseline:
        # make it one worker's view (one GPU), so a baseline's gpu_count matches what a worker measures.
        self._measure_first_gpu_only()
        self.gpus = xdist_support.GpuAssignment([d.uuid for d in devices])

    def _measure_one_gpu_for_arms(self) -> None:
        """A/B: both arms run on the first visible GPU, and the controller's meter measures that one alone."""
        if len(self.meter.devices) > 1:
            self._measure_first_gpu_only()

    def _measure_first_gpu_only(self) -> None:
        from .meters.nvml import NvmlMeter

        first = list(self.meter.devices)[:1]
        self.meter.close()
        self.meter = self._with_min_window(NvmlMeter(devices=first))

    # -- facts of the run ----------------------------------------------------------------------------------
    @property
    def update(self) -> bool:
        return bool(self.options.update_baselines)

    @property
    def mode(self) -> str:
        """How this run judges, as reports name it: against stored baselines, or arm B against arm A."""
        return "ab" if self.ab_arms else "baseline"

    def fingerprint(self) -> dict:
        return stack.collect(self.meter.hardware())

    def git_commit(self) -> str | None:
        return stack.git_commit(self.rootdir)

    def pins(self) -> dict[str, str]:
        """Under xdist on GPUs: each worker id and the UUID of the GPU it measures."""
        if self.gpus is None:
            return {}
        return {worker: pin.uuid for worker, pin in sorted(self.gpus.pins.items())}

    def accept_command(self, nodeid: str) -> str:
        """The command that records this test's run as its baseline (as syrupy's --snapshot-update hint)."""
        words = ["pytest", shlex.quote(nodeid), f"--energy-gpu={self.gpu_key}"]
        if self.baselines_option:
            words.append(f"--energy-baselines={shlex.quote(self.options.baselines)}")
        return " ".join([*words, "--energy-update-baselines"])

    # -- what tests use ------------------------------------------------------------------------------------
    def fixture_for(self, item: pytest.Item) -> EnergyFixture:
        """The `energy` fixture of one test, with its settings (marker over options over ini over defaults)."""
        settings = test_settings(self.options, item.stash.get(checks.MARKER_KEY, {}), self.default_model)
        fixture = EnergyFixture(xdist_support.plain_nodeid(item), settings, self)
        item.stash[FIXTURE_KEY] = fixture
        return fixture

    def ready_meter(self) -> Meter:
        """The meter, with idle power measured once per session before the first window."""
        if not self._idle_measured:
            self._idle_measured = True
            self.meter.idle_watts()
            # Not in xdist workers, which would read each other's load as the host's (an A/B controller
            # probes before its arms start).
            if self.meter.name == "nvml" and self.is_controller:
                self.progress("host probe: a fixed Python loop on each CPU")
                probe = probe_host()
                self.host = probe.to_dict() if probe else None
            if self.meter.name == "nvml" and not (self.options.no_reference or self.options.ab):
                self.progress("reference kernels (matmul, copy) on this GPU")
                found = measure_reference(self.meter)
                self.reference = found.to_dict() if found else None
        return self.meter

    @property
    def runner(self) -> WorkloadRunner:
        if self._runner is None:
            self._runner = WorkloadRunner(self.meter, cooldown_celsius=self.options.cooldown_temp,
                                          progress=self.progress)
        return self._runner

    def backend_for(self, name: str, model: str, options: dict, workload: Workload):
        """A loaded backend from the session's pool (one resident at a time); skips if not installed.

        Keywords that are not BackendOptions fields go to the backend as `extra`, which it checks on
        load: a misspelt option is an error that names it, never dropped.
        """
        from ..core.models import resolve_model
        from .backends import BackendOptions, BackendPool

        if self._pool is None:
            self._pool = BackendPool()
        device = "cpu" if self.gpu_key == CPU_KEY else "cuda"
        keywords = {**options, **self.ab_backend_options}
        if self.ab_arm:
            keywords = ab.arm_options(name, keywords, device)
        backend_options = BackendOptions.from_keywords(keywords, device=device)
        try:
            return self._pool.get(name, resolve_model(model), backend_options, workload.batch_size)
        except BackendUnavailable as error:
            pytest.skip(str(error))

    # -- one test, in the process that runs it -------------------------------------------------------------
    def test_started(self, nodeid: str) -> None:
        self.progress.start(nodeid)
        if self.ab_arm:  # A/B: the device is this arm's from setup (model loading) on
            self.meter.enter(nodeid)

    def test_finished(self, nodeid: str) -> None:
        if self.ab_arm:  # A/B: after teardown the other arm may use the device
            self.meter.leave(nodeid)

    def test_called(self, item: pytest.Item, fixture: EnergyFixture) -> str | None:
        """After a body that passed: the test's result, kept for its report; returns what the test fails with
        on its energy, or None. An arm's half and a recording run fail nothing on energy."""
        try:
            result = self.judge(fixture.nodeid, fixture.settings, fixture)
        except EnergyError as error:
            return str(error)
        if result is None:
            item.stash[UNMEASURED_KEY] = True
            if fixture.settings.strict and not self.ab_arm:
                return f"energy: this test {UNMEASURED} (fails under --energy-strict)"
            return None
        if self.worker is not None:  # which worker measured it; the windows' devices say which GPU
            result = replace(result, worker=self.worker)
        if self.ab_arm:  # A/B: the controller pairs the arms' results and judges them (ab.AbHooks)
            result = replace(result, arm=Arm(self.ab_arm, self.fingerprint(), ab.held_memory_gib(),
                                             fixture.settings.strict))
        item.stash[RESULT_KEY] = result
        _attach_properties(item, result)
        if self.ab_arm or self.update:  # recording: verdicts are shown, nothing fails on energy
            return None
        return outcome(result, strict=fixture.settings.strict, accept=self.accept_command(fixture.nodeid))

    def plan_for(self, nodeid: str, settings: TestSettings) -> TrialPlan:
        """The trials of one test; adaptive ones ask the judge's rule when the samples decide."""
        plan = TrialPlan(settings.warmup, settings.trials, settings.max_trials, settings.time_budget)
        if not settings.adaptive:
            return plan
        entry = self.baseline_entry(nodeid)
        settled = judge.settled(
            entry, tolerance=settings.tolerance, prior=settings.prior,
            evidence=self.evidence, gpus=self.meter.device_uuids, card_scale=self.card_scale(entry),
            min_trials=settings.trials, max_trials=plan.cap, confidence=settings.confidence,
            on_cpu=self.gpu_key == CPU_KEY,
        )
        return replace(plan, settled=settled)

    @property
    def reads_baselines(self) -> bool:
        return not self.options.ab  # A/B: arm A's run is the baseline

    def baseline_entry(self, nodeid: str) -> BaselineEntry | None:
        return self.store.lookup(nodeid) if self.reads_baselines else None

    @property
    def evidence(self) -> Evidence:
        """The scatter of recorded runs over this GPU key's baselines, read once per session."""
        if self._evidence is None:
            self._evidence = self.store.evidence() if self.reads_baselines else Evidence()
        return self._evidence

    def judge(self, nodeid: str, settings: TestSettings, fixture: EnergyFixture) -> TestResult | None:
        """Compare a test's run with its baseline; the result says the verdict and why."""
        if not fixture.samples:
            return None
        judgement = judge.judge_test(
            self.baseline_entry(nodeid), fixture.samples, gpus=self.meter.device_uuids, reference=self.reference,
            workload=fixture.workload, tolerance=settings.tolerance, confidence=settings.confidence,
            prior=settings.prior, evidence=self.evidence, fingerprint=self.fingerprint(),
            on_cpu=self.gpu_key == CPU_KEY, allow_hardware_change=self.options.allow_hardware_change,
            shared_cpu=self.shared_cpu,
        )
        return TestResult.of(
            nodeid, fixture.measurements, judgement, meter=self.meter.name, estimated=self.meter.estimated,
            workload=fixture.workload.to_dict() if fixture.workload else None, backend=fixture.backend_description,
            reference=self.reference,  # kept with the run it describes (an xdist worker measured its own GPU)
        )

    def card_scale(self, entry: BaselineEntry | None) -> float | None:
        """This process's reference figure for the work of the entry it is compared with, which makes its card
        comparable with the entry's runs: their workload picks the figure for both sides."""
        return card_scale(self.reference, entry_workload(entry))

    # -- what the controller hears ---------------------------------------------------------------------------
    def collection_finished(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """This process collected its tests: an A/B arm's turns follow them; a serial run's controller learns
        which tests the run covers (under xdist each worker tells it: `worker_collected`)."""
        nodeids = [xdist_support.plain_nodeid(item) for item in items]
        if self.ab_arm:
            self.meter.collected(nodeids)
        if self.is_controller:
            self.collected = nodeids
            self.whole_run = checks.whole_run(config)

    def worker_collected(self, config: pytest.Config, ids: list[str]) -> None:
        seen = set(self.collected)
        self.collected += [xdist_support.strip_group(nodeid, config) for nodeid in ids
                           if xdist_support.strip_group(nodeid, config) not in seen]
        self.whole_run = checks.whole_run(config)

    def tests_deselected(self) -> None:
        """Tests deselected by -k, -m or any plugin or conftest: this run does not cover whole files."""
        self.deselected = True

    def worker_down(self, workeroutput: Mapping | None) -> None:
        """A worker whose plugins or conftests deselected tests: this run does not cover whole files."""
        if (workeroutput or {}).get(xdist_support.DESELECTED_KEY):
            self.deselected = True

    def check_baseline_files(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """A serial run reads the baseline files of its tests before any runs: a broken one is named now."""
        if xdist_support.worker_id(config) is None and self.reads_baselines:
            checks.check_baseline_files(self.store, items, update=self.update)

    def test_reported(self, report: pytest.TestReport) -> None:
        """A test's report, from whichever process ran it: its result (an arm's half is ab.AbHooks')."""
        self.progress.relay(self.progress_dir)
        if report.when == "teardown":
            self.progress.clear()
        record = getattr(report, "energy_record", None)
        result = TestResult.from_dict(record) if record is not None else None
        if result is not None and result.is_arm_half:
            result = None
        if result is not None:
            self._test_ids[report.nodeid] = result.nodeid
        nodeid = self._test_ids.get(report.nodeid, report.nodeid)
        if report.when == "call":
            self.collect(nodeid, result, "passed" if report.passed else report.outcome)
            if getattr(report, "energy_unmeasured", False) and nodeid not in self.unmeasured:
                self.unmeasured.append(nodeid)
        elif report.failed:  # an error in setup or teardown: the test's result is not recorded
            self.collect(nodeid, None, "error")

    def collect(self, nodeid: str, result: TestResult | None, outcome: str) -> None:
        if result is not None:
            self.records[nodeid] = result
        if nodeid in self.records:
            self.records[nodeid] = self.records[nodeid].with_outcome(outcome)
        self.outcomes[nodeid] = outcome

    # -- the end of the run -----------------------------------------------------------------------------------
    def finish(self, pytest_session: pytest.Session, exitstatus: int) -> None:
        """Close what the run holds; the controller writes baselines and reports, once, and fails the run
        where it could not (never masking a test's own failure)."""
        if self.ab_arm:  # A/B: this arm's teardown (backends freed) overlaps none of the other's tests
            self.meter.finish()
        self.close()
        if not self.is_controller:
            if self.deselected and hasattr(pytest_session.config, "workeroutput"):
                pytest_session.config.workeroutput[xdist_support.DESELECTED_KEY] = True  # the controller cannot see it
            return
        if self.progress_dir is not None:
            shutil.rmtree(self.progress_dir, ignore_errors=True)
        if self.ab is not None:
            if self.ab.unpaired() and pytest_session.exitstatus == pytest.ExitCode.OK:
                pytest_session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a comparison asked for and not made
            self.ab.close()
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        # Ctrl-C from here on is held until every baseline and report file is complete, then obeyed: in the
        # last second of a run it had raised inside the report writing (a long traceback, no summary).
        with _sigint_deferred() as held:
            self._write_files()
        if held:
            self.held_interrupt = True
            pytest_session.exitstatus = pytest.ExitCode.INTERRUPTED
        if self.write_error and pytest_session.exitstatus == pytest.ExitCode.OK:
            pytest_session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_files(self) -> None:
        """The baselines (an update that was not interrupted during its tests), then the reports asked for."""
        if self.update and not self.interrupted:
            self.write_baselines()
        options = self.options
        if self.records or options.json or options.md:  # a file asked for is always written
            self.plots, error = write_run_reports(self.report(self.pins()), json_path=options.json,
                                                  md_path=options.md, plots_folder=options.plots)
            self.write_error = self.write_error or error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()
        self.meter.close()

    def entries_to_write(self) -> dict[str, dict]:
        """Only tests that passed (or failed only by an energy verdict) are recorded."""
        fingerprint = self.fingerprint()
        commit = self.git_commit()
        recorded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return {
            nodeid: result.baseline_entry(fingerprint, commit, recorded_at)
            for nodeid, result in sorted(self.records.items())
            if result.outcome == "passed"
        }

    def unused_entries(self) -> list[str]:
        """Entries of the collected tests' baseline files that no collected test has (renamed, removed).

        Only a run of whole files can tell: under -k, -m, node ids or a conftest's deselection the tests left
        out still exist."""
        if not (self.collected and self.reads_baselines and self.whole_run and not self.deselected):
            return []
        return self.store.unused(self.collected)

    def write_baselines(self) -> None:
        entries = self.entries_to_write()
        # Entries of tests that are gone go only when asked: a run of whole files still cannot tell a test
        # that is gone from one that its options parametrize away (`--suite-batch-sizes=128` collects no
        # batch-32 case), and those entries hold runs recorded on several cards.
        remove = self.unused_entries() if self.options.prune_baselines else []
        if not entries and not remove:
            return
        # A run that showed the energy changed starts its test's history afresh: the old runs no longer
        # describe the workload (accepting a change, as a snapshot update does).
        changed = frozenset(nodeid for nodeid in entries
                            if self.records[nodeid].verdict in (Verdict.REGRESSED, Verdict.IMPROVED))
        try:
            self.written = self.store.write(entries, keep=self.options.history, fresh=changed, remove=remove)
        except EnergyError as error:
            self.write_error = str(error)
        except OSError as error:  # a full disk, no permission: said in the summary, never an INTERNALERROR
            self.write_error = (f"could not write baselines ({error}); files already replaced are complete, "
                                "the others are unchanged")
        except KeyboardInterrupt:
            self.write_error = "interrupted while writing baselines; files already renamed are complete"
            raise

    def run_references(self) -> list[dict]:
        """The reference kernels of this run, one per card: this process's own, then (the xdist controller)
        each worker's card as its results reached it; each names its card."""
        found = [self.reference] if self.reference else []
        for result in self.records.values():
            reference = result.reference
            if reference and all(reference.get("gpu") != seen.get("gpu") for seen in found):
                found.append(reference)
        return found

    def report(self, workers: Mapping[str, str] | None = None) -> RunReport:
        """The report of this run: what was in force, the stack, and one result per test."""
        meter = self.meter
        return RunReport(
            gpu=self.gpu_key, meter=meter.name, estimated=meter.estimated, results=results_by_test(self.records),
            meter_description=meter.describe(), baselines=str(self.baselines_root),
            baselines_folder=str(self.store.folder), updated_baselines=self.update,
            fingerprint=self.fingerprint(), git_commit=self.git_commit(),
            started_at=self.started_at.isoformat(timespec="seconds"), duration_s=self.duration_s(),
            python=self.python_version, references=tuple(self.run_references()), host=self.host,
            unused_baseline_entries=tuple(self.unused_entries()), unmeasured_tests=tuple(sorted(self.unmeasured)),
            mode=self.mode, arms=self.ab_arms,
            written=tuple(self.written), workers=dict(workers or {}),
        )

    def duration_s(self) -> float:
        return time.perf_counter() - self._clock_start

    @property
    def python_version(self) -> str:
        return sys.version.split()[0]


class ControllerHooks:
    """Hooks of the process that reports: it hears of every test, whichever process ran it."""

    def __init__(self, session: EnergySession) -> None:
        self.session = session

    @pytest.hookimpl(trylast=True)  # after pytest has written the test's own result
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.session.test_reported(report)

    @pytest.hookimpl(trylast=True)  # after -k and -m have deselected: the files of the tests that will run
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        self.session.check_baseline_files(config, items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: each worker tells it what it collected."""
        self.session.worker_collected(node.config, ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        self.session.worker_down(getattr(node, "workeroutput", None))


def _arm_meter(workerinput: Mapping, gpu_key: str, options: Options) -> Meter | None:
    """In an A/B arm: the controller's meter, lent window by window; elsewhere None (the session makes one)."""
    address = workerinput.get(ab.ADDRESS_KEY)
    if not address:
        return None
    from .meters.remote import RemoteMeter

    return RemoteMeter(address, workerinput[ab.ARM_KEY],
                       local=lambda: make_meter(gpu_key, watts_per_core=options.cpu_watts_per_core))


def _attach_properties(item: pytest.Item, result: TestResult) -> None:
    """JUnit XML properties (they travel with xdist reports), and pytest-benchmark's extra_info."""
    item.user_properties.extend(result.junit_properties())
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if benchmark is not None and hasattr(benchmark, "extra_info"):
        benchmark.extra_info["energy"] = {
            "joules_per_token": result.joules_per_token, "baseline_joules_per_token": result.baseline_joules_per_token,
            "delta": result.decision.delta, "verdict": str(result.verdict), "samples": list(result.samples),
            "meter": result.meter, "estimated": result.estimated,
        }


def unmeasured(item: pytest.Item) -> bool:
    return item.stash.get(UNMEASURED_KEY, False)


def record_of(item: pytest.Item) -> dict | None:
    """The result of an item's call as its report carries it to the controller: plain JSON values."""
    result = item.stash.get(RESULT_KEY, None)
    return clean_for_json(result.to_dict(), round_floats=False) if result is not None else None


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C while baseline and report files are written, so a run never stops between two files.

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
