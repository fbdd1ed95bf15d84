"""What happens in one pytest run: the meter, backends and baselines in force, and the records collected.

Each process that runs tests (the only one, or each xdist worker) measures and judges its own tests.
Only the controller collects every record (from the test reports) and writes reports and baselines,
once, at the end.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import fingerprint as stack
from . import judge
from .baseline import BaselineEntry, BaselineStore, WriteSummary, entry_workload
from .config import TestSettings
from .errors import BackendUnavailable, EnergyError
from .gpus import CPU_KEY
from .host import probe_host
from .meters import make_meter
from .meters.base import Meter
from .models import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL
from .reference import card_scale, measure_reference
from .result import TestResult
from .run_report import RunReport, results_by_test
from .runner import WorkloadRunner
from .stats import Evidence, Verdict
from .trials import TrialPlan
from .workload import Workload


class EnergySession:
    def __init__(self, options: dict[str, Any], gpu_key: str, rootdir: Path, *, is_controller: bool,
                 meter: Meter | None = None) -> None:
        self.options = options
        self.gpu_key = gpu_key
        self.rootdir = rootdir
        self.is_controller = is_controller
        baselines = Path(options["baselines"])
        self.baselines_root = baselines if baselines.is_absolute() else rootdir / baselines
        self.store = BaselineStore(self.baselines_root, gpu_key)
        self.meter: Meter = meter or make_meter(gpu_key, watts_per_core=options["cpu_watts_per_core"])
        if options["min_window"] is not None:  # the user's minimum also decides what is flagged as short
            self.meter.min_window_s = options["min_window"]
        self.default_model = DEFAULT_CPU_MODEL if gpu_key == CPU_KEY else DEFAULT_GPU_MODEL
        self._runner: WorkloadRunner | None = None
        self._pool = None
        self._idle_measured = False
        self.reference: dict | None = None  # the reference kernels on this run's GPU (reference.py)
        self.host: dict | None = None  # how fast this run's CPUs ran Python at its start (host.py)
        self._evidence: Evidence | None = None
        self.progress = lambda text: None  # the plugin installs a terminal writer
        self.records: dict[str, TestResult] = {}  # nodeid -> result (controller: from every process)
        self.outcomes: dict[str, str] = {}  # nodeid -> passed / failed / error / skipped
        self.written: list[WriteSummary] = []
        self.write_error: str | None = None
        self.interrupted = False
        self.collected: list[str] = []  # the test ids this run collected (the controller's view)
        self.shared_cpu = 0  # xdist workers sharing the CPU under an estimating meter (0: none)
        self.ab_arm: str | None = None  # in an A/B arm: "A" or "B"
        self.ab_backend_options: dict = {}  # arm A's own backend options (--energy-ab-option)
        self.ab_arms: dict | None = None  # the A/B controller: what each arm is
        self.whole_run = False  # whether its command line asks for whole test files (no -k, -m or node ids)
        self.deselected = False  # a plugin or conftest deselected tests (here, or in an xdist worker)
        self.started_at = dt.datetime.now(dt.UTC)
        self._clock_start = time.perf_counter()

    # -- facts of the run ----------------------------------------------------------------------------------
    @property
    def update(self) -> bool:
        return bool(self.options["update_baselines"])

    @property
    def mode(self) -> str:
        """How this run judges, as reports name it: against stored baselines, or arm B against arm A."""
        return "ab" if self.ab_arms else "baseline"

    def fingerprint(self) -> dict:
        return stack.collect(self.meter.hardware())

    def git_commit(self) -> str | None:
        return stack.git_commit(self.rootdir)

    # -- what tests use ------------------------------------------------------------------------------------
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
            if self.meter.name == "nvml" and not (self.options["no_reference"] or self.options["ab"]):
                self.progress("reference kernels (matmul, copy) on this GPU")
                found = measure_reference(self.meter)
                self.reference = found.to_dict() if found else None
        return self.meter

    @property
    def runner(self) -> WorkloadRunner:
        if self._runner is None:
            self._runner = WorkloadRunner(
                self.meter, min_window_s=self.options["min_window"],
                cooldown_celsius=self.options["cooldown_temp"], progress=self.progress,
            )
        return self._runner

    def backend_for(self, name: str, model: str, options: dict, workload: Workload):
        """A loaded backend from the session's pool (one resident at a time); skips if not installed.

        Keywords that are not BackendOptions fields go to the backend as `extra`, which it checks on
        load: a misspelt option is an error that names it, never dropped.
        """
        import pytest

        from .backends import BackendOptions, BackendPool
        from .models import resolve_model

        if self._pool is None:
            self._pool = BackendPool()
        device = "cpu" if self.gpu_key == CPU_KEY else "cuda"
        backend_options = BackendOptions.from_keywords({**options, **self.ab_backend_options}, device=device)
        try:
            return self._pool.get(name, resolve_model(model), backend_options, workload.batch_size)
        except BackendUnavailable as error:
            pytest.skip(str(error))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()
        self.meter.close()

    # -- judging one test ------------------------------------------------------------------------------------
    @property
    def reads_baselines(self) -> bool:
        return not self.options["ab"]  # A/B: arm A's run is the baseline

    def baseline_entry(self, nodeid: str) -> BaselineEntry | None:
        return self.store.lookup(nodeid) if self.reads_baselines else None

    @property
    def evidence(self) -> Evidence:
        """The scatter of recorded runs over this GPU key's baselines, read once per session."""
        if self._evidence is None:
            self._evidence = self.store.evidence() if self.reads_baselines else Evidence()
        return self._evidence

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
        )
        return replace(plan, settled=settled)

    def judge(self, nodeid: str, settings: TestSettings, fixture) -> TestResult | None:
        """Compare a test's run with its baseline; the result says the verdict and why."""
        if not fixture.samples:
            return None
        judgement = judge.judge_test(
            self.baseline_entry(nodeid), fixture.samples, gpus=self.meter.device_uuids, reference=self.reference,
            workload=fixture.workload, tolerance=settings.tolerance, confidence=settings.confidence,
            prior=settings.prior, evidence=self.evidence, fingerprint=self.fingerprint(),
            on_cpu=self.gpu_key == CPU_KEY, allow_hardware_change=self.options["allow_hardware_change"],
            shared_cpu=self.shared_cpu,
        )
        return TestResult.of(
            nodeid, fixture.measurements, judgement, meter=self.meter.name, estimated=self.meter.estimated,
            workload=fixture.workload.to_dict() if fixture.workload else None, backend=fixture.backend_description,
            reference=self.reference,  # kept with the run it describes (an xdist worker measured its own GPU)
        )

    # -- the controller's end of the run ---------------------------------------------------------------------
    def collect(self, nodeid: str, result: TestResult | None, outcome: str) -> None:
        if result is not None:
            self.records[nodeid] = result
        if nodeid in self.records:
            self.records[nodeid] = self.records[nodeid].with_outcome(outcome)
        self.outcomes[nodeid] = outcome

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
        remove = self.unused_entries() if self.options["prune_baselines"] else []
        if not entries and not remove:
            return
        # A run that showed the energy changed starts its test's history afresh: the old runs no longer
        # describe the workload (accepting a change, as a snapshot update does).
        changed = frozenset(nodeid for nodeid in entries
                            if self.records[nodeid].verdict in (Verdict.REGRESSED, Verdict.IMPROVED))
        try:
            self.written = self.store.write(entries, keep=self.options["history"], fresh=changed, remove=remove)
        except EnergyError as error:
            self.write_error = str(error)
        except OSError as error:  # a full disk, no permission: said in the summary, never an INTERNALERROR
            self.write_error = (f"could not write baselines ({error}); files already replaced are complete, "
                                "the others are unchanged")
        except KeyboardInterrupt:
            self.write_error = "interrupted while writing baselines; files already renamed are complete"
            raise

    def card_scale(self, entry: BaselineEntry | None) -> float | None:
        """This process's reference figure for the work of the entry it is compared with, which makes its card
        comparable with the entry's runs: their workload picks the figure for both sides."""
        return card_scale(self.reference, entry_workload(entry))

    def run_references(self) -> list[dict]:
        """The reference kernels of this run, one per card: this process's own, then (the xdist controller)
        each worker's card as its records reached it; each names its card."""
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
            unused_baseline_entries=tuple(self.unused_entries()), mode=self.mode, arms=self.ab_arms,
            written=tuple(self.written), workers=dict(workers or {}),
        )

    def duration_s(self) -> float:
        return time.perf_counter() - self._clock_start

    @property
    def python_version(self) -> str:
        return sys.version.split()[0]
