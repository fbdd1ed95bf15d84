"""What happens in one pytest run: the meter, backends and baselines in force, and the records collected.

Each process that runs tests (the only one, or each xdist worker) measures and judges its own tests.
Only the controller collects every record (from the test reports) and writes reports and baselines,
once, at the end.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from . import fingerprint as stack
from .baseline import BaselineEntry, BaselineStore, WriteSummary
from .config import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, TestSettings
from .errors import BackendUnavailable, EnergyError, EnergyUsageError
from .gpus import CPU_KEY
from .meters import make_meter
from .meters.base import Meter
from .record import baseline_entry, build_record
from .runner import WorkloadRunner
from .stats import combine_noise, decide
from .workload import Workload


class EnergySession:
    def __init__(self, options: dict[str, Any], gpu_key: str, rootdir: Path, *, is_controller: bool) -> None:
        self.options = options
        self.gpu_key = gpu_key
        self.rootdir = rootdir
        self.is_controller = is_controller
        baselines = Path(options["baselines"])
        self.baselines_root = baselines if baselines.is_absolute() else rootdir / baselines
        self.store = BaselineStore(self.baselines_root, gpu_key)
        self.meter: Meter = make_meter(gpu_key, watts_per_core=options["cpu_watts_per_core"])
        if options["min_window"] is not None:  # the user's minimum also decides what is flagged as short
            self.meter.min_window_s = options["min_window"]
        self.default_model = DEFAULT_CPU_MODEL if gpu_key == CPU_KEY else DEFAULT_GPU_MODEL
        self._runner: WorkloadRunner | None = None
        self._pool = None
        self._idle_measured = False
        self.progress = lambda text: None  # the plugin installs a terminal writer
        self.records: dict[str, dict] = {}  # nodeid -> record (controller: from every process)
        self.outcomes: dict[str, str] = {}  # nodeid -> passed / failed / error / skipped
        self.written: list[WriteSummary] = []
        self.write_error: str | None = None
        self.interrupted = False
        self.started_at = dt.datetime.now(dt.UTC)
        self._clock_start = time.perf_counter()

    # -- facts of the run ----------------------------------------------------------------------------------
    @property
    def update(self) -> bool:
        return bool(self.options["update_baselines"])

    def fingerprint(self) -> dict:
        hardware = self.meter.hardware() if hasattr(self.meter, "hardware") else {}
        return stack.collect(hardware)

    def git_commit(self) -> str | None:
        return stack.git_commit(self.rootdir)

    # -- what tests use ------------------------------------------------------------------------------------
    def ready_meter(self) -> Meter:
        """The meter, with idle power measured once per session before the first window."""
        if not self._idle_measured:
            self._idle_measured = True
            self.meter.idle_watts()
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
        """A loaded backend from the session's pool (one resident at a time); skips if not installed."""
        import pytest

        from .backends import BackendPool
        from .backends.base import BackendOptions
        from .models import resolve_model

        if self._pool is None:
            self._pool = BackendPool()
        spec = resolve_model(model)
        device = "cpu" if self.gpu_key == CPU_KEY else "cuda"
        known = {k: v for k, v in options.items() if k in BackendOptions.__dataclass_fields__}
        known.setdefault("device", device)
        try:
            return self._pool.get(name, spec, BackendOptions(**known), workload.batch_size)
        except BackendUnavailable as error:
            pytest.skip(str(error))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()
        self.meter.close()

    # -- judging one test ------------------------------------------------------------------------------------
    def baseline_entry(self, nodeid: str) -> BaselineEntry | None:
        return self.store.lookup(nodeid)

    def baseline_samples(self, nodeid: str) -> tuple[float, ...] | None:
        entry = self.baseline_entry(nodeid)
        return entry.samples if entry else None

    def other_gpus(self, entry: BaselineEntry | None) -> tuple[str, ...]:
        """The GPUs (UUIDs) a baseline was measured on, when they are not the ones measuring now."""
        if entry is None or self.gpu_key == CPU_KEY:
            return ()
        now = {device.uuid for device in getattr(self.meter, "devices", ())}
        before = entry.gpu_uuids
        return tuple(sorted(before)) if before and now and before != now else ()

    def judged_noise(self, settings: TestSettings, other_gpus: tuple[str, ...]) -> float:
        """The run noise a test is judged with: its own, combined with card-to-card spread on other GPUs."""
        if not other_gpus:
            return settings.run_noise
        try:
            return combine_noise(settings.run_noise, settings.card_noise)
        except ValueError as error:
            raise EnergyUsageError(f"run_noise and card_noise: {error}; lower one of them") from None

    def trial_noise(self, nodeid: str, settings: TestSettings) -> float:
        """The noise adaptive trials plan with: the same as the judge will use."""
        return self.judged_noise(settings, self.other_gpus(self.baseline_entry(nodeid)))

    def judge(self, nodeid: str, settings: TestSettings, fixture) -> dict | None:
        """Compare a test's samples with its baseline; the record says the verdict and why."""
        if not fixture.samples:
            return None
        entry = self.baseline_entry(nodeid)
        current = self.fingerprint()
        changes = stack.changes(entry.fingerprint if entry else None, current)
        hardware = stack.hardware_changed(changes, on_cpu=self.gpu_key == CPU_KEY)
        refused = None
        baseline_samples = entry.samples if entry else None
        if hardware and not self.options["allow_hardware_change"]:
            refused = (
                "baseline was recorded on other hardware (" + "; ".join(map(str, hardware)) + "); not "
                "compared. Record a baseline here with --energy-update-baselines, or compare anyway with "
                "--energy-allow-hardware-change"
            )
        other_gpus = self.other_gpus(entry)
        decision = decide(baseline_samples, fixture.samples, settings.tolerance, confidence=settings.confidence,
                          run_noise=self.judged_noise(settings, other_gpus))
        return build_record(
            nodeid=nodeid, measurements=fixture.measurements, decision=decision,
            baseline_joules_per_token=entry.joules_per_token if entry else None,
            workload=fixture.workload.to_dict() if fixture.workload else None,
            backend=fixture.backend_description, stack_changes=changes, refused=refused,
            meter=self.meter.name, estimated=self.meter.estimated, run_noise=settings.run_noise,
            other_gpus=other_gpus, card_noise=settings.card_noise if other_gpus else 0.0,
        )

    # -- the controller's end of the run ---------------------------------------------------------------------
    def collect(self, nodeid: str, record: dict | None, outcome: str) -> None:
        if record is not None:
            record = {**record, "outcome": outcome}
            self.records[nodeid] = record
        if nodeid in self.records:
            self.records[nodeid]["outcome"] = outcome
        self.outcomes[nodeid] = outcome

    def entries_to_write(self) -> dict[str, dict]:
        """Only tests that passed (or failed only by an energy verdict) are recorded."""
        fingerprint = self.fingerprint()
        commit = self.git_commit()
        recorded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return {
            nodeid: baseline_entry(record, fingerprint, commit, recorded_at)
            for nodeid, record in sorted(self.records.items())
            if record.get("outcome") == "passed"
        }

    def write_baselines(self) -> None:
        entries = self.entries_to_write()
        if not entries:
            return
        try:
            self.written = self.store.write(entries)
        except EnergyError as error:
            self.write_error = str(error)
        except OSError as error:  # a full disk, no permission: said in the summary, never an INTERNALERROR
            self.write_error = (f"could not write baselines ({error}); files already replaced are complete, "
                                "the others are unchanged")
        except KeyboardInterrupt:
            self.write_error = "interrupted while writing baselines; files already renamed are complete"
            raise

    def report_document(self) -> dict:
        from .report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION

        return {
            "schema": REPORT_SCHEMA,
            "schema_version": REPORT_SCHEMA_VERSION,
            "gpu": self.gpu_key,
            "meter": self.meter.name,
            "estimated": self.meter.estimated,
            "meter_description": self.meter.describe(),
            "baselines": str(self.baselines_root),
            "updated_baselines": self.update,
            "fingerprint": self.fingerprint(),
            "git_commit": self.git_commit(),
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "duration_s": time.perf_counter() - self._clock_start,
            "python": sys.version.split()[0],
            "results": [self.records[nodeid] for nodeid in sorted(self.records)],
            "written": [
                {"path": str(w.path), "added": list(w.added), "updated": list(w.updated)} for w in self.written
            ],
        }

